"""The Kata-like test guest: image build, QEMU launcher, containers, demo."""
