# SPDX-License-Identifier: Apache-2.0
# make demo   set up everything, boot the test guest, enforce policies/ in a Kata-like pod
# make test   set up everything, then lint and run every test (the guest tests included)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BPF_OBJECT := bpf/lsm/.output/kadapter.bpf.o
GUEST := build/testguest
# agent.proto: the host-guest contract; kubearmor.proto: KubeArmor's log feed, served to its own tools
PROTOS := agent kubearmor cri
PROTO_OUT := $(foreach p,$(PROTOS),kadapter_api/$(p)_pb2.py kadapter_api/$(p)_pb2_grpc.py)

.PHONY: all deps venv proto bpf guest credentials build demo test lint bench clean
.DELETE_ON_ERROR:

all: build

deps:
	scripts/install-deps.sh

$(VENV)/.installed: pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

kadapter_api/%_pb2.py kadapter_api/%_pb2_grpc.py: kadapter_api/%.proto $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. $<

proto: $(PROTO_OUT)

bpf: deps
	$(MAKE) -C bpf/lsm

$(BPF_OBJECT): $(wildcard bpf/lsm/*.c bpf/lsm/*.h bpf/lsm/Makefile) | deps
	$(MAKE) -C bpf/lsm

$(GUEST)/vmlinuz: images/testguest/build.sh images/testguest/init images/testguest/modules.order | deps
	rm -rf $(GUEST)
	images/testguest/build.sh $(GUEST)

guest: $(GUEST)/vmlinuz

# Kadapter's Kata guest image (images/guest/build.sh): a root disk and the osbuilder tarball. The test
# variant adds what the tests drive it with (tests/guest/test_guest_image.py).
GUEST_IMAGE_INPUTS := $(wildcard images/guest/* images/guest/test/*) images/testguest/testctl.py \
	images/testguest/control-network.sh $(BPF_OBJECT) $(PROTO_OUT) \
	$(wildcard guest_agent/*.py kadapter_api/*.py)
build/guest-image/kadapter-guest.img: $(GUEST_IMAGE_INPUTS) | deps
	rm -rf build/guest-image
	images/guest/build.sh build/guest-image
build/guest-image-test/kadapter-guest.img: $(GUEST_IMAGE_INPUTS) build/tls/adapter/tls.key | deps
	rm -rf build/guest-image-test
	images/guest/build.sh build/guest-image-test --test

# A small Kata-like guest kernel with BTF and the BPF LSM from Debian's kernel source (guest_kernel/build.sh).
build/guest-kernel/vmlinuz: $(wildcard guest_kernel/*) | deps
	guest_kernel/build.sh build/guest-kernel

.PHONY: guest-image guest-image-test guest-kernel
guest-kernel: build/guest-kernel/vmlinuz
guest-image: build/guest-image/kadapter-guest.img
guest-image-test: build/guest-image-test/kadapter-guest.img

# The adapter's and the agents' credentials for the test guest, tests and demo (kadapter credentials).
build/tls/adapter/tls.key: | $(VENV)/.installed
	rm -rf build/tls
	$(PY) -m adapter.cli credentials build/tls

credentials: build/tls/adapter/tls.key

build: venv proto bpf guest credentials guest-image-test

demo: build
	$(PY) -m images.testguest.demo

# Instruction-counted overhead of the BPF-LSM programs (bench/overhead.py); not part of the tests.
bench: build
	$(PY) -m bench.overhead

# The node daemon's propagation latency and footprint (bench/propagation.py): no VM, a few minutes; not a test.
.PHONY: bench-daemon
bench-daemon: venv proto
	$(PY) -m bench.propagation

lint: venv proto
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

test: build lint
	$(VENV)/bin/pytest

clean:
	rm -rf build $(VENV) bpf/lsm/.output $(PROTO_OUT) $(PROTO_OUT:_pb2.py=_pb2.pyi)
