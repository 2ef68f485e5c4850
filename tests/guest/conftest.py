"""Fixtures for tests that need the Kata-like test guest: one VM per session, real containers inside."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from images.testguest.containers import GuestContainers
from images.testguest.vm import TestGuest
from tests.guest.support import BUSYBOX, NGINX, Boot, PolicyApplier

REPO = Path(__file__).resolve().parents[2]
# The test guest's kernel and initramfs; KADAPTER_TEST_GUEST names another directory holding both
# (e.g. `make guest-kernel`'s vmlinuz beside the same initramfs) to run the suite on another kernel.
IMAGE = Path(os.environ.get("KADAPTER_TEST_GUEST", REPO / "build" / "testguest"))


@pytest.fixture(scope="session")
def guest(request: pytest.FixtureRequest) -> Iterator[TestGuest]:
    """Boot the test guest once; `make test` builds its image first.

    A test may ask for a guest of its own (parametrize "guest" indirectly with a Boot): pytest then stops the
    running guest and boots that one, so such tests run last (pytest_collection_modifyitems).
    """
    boot: Boot = getattr(request, "param", Boot())
    for needed in (IMAGE / "vmlinuz", boot.root_disk):
        if needed is not None and not needed.exists():
            pytest.fail(f"no {needed}: run `make test` (it builds it)")
    console = REPO / "build" / ("test-console.log" if boot == Boot() else "test-console-own.log")
    with TestGuest(
        repo=REPO,
        image_dir=IMAGE,
        console_log=console,
        kernel_args=boot.kernel_args,
        root_disk=boot.root_disk,
    ) as running:
        yield running


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the tests that boot a differently configured guest to the end: every other test shares one boot."""
    here = Path(__file__).parent

    def boots_its_own(item: pytest.Item) -> bool:
        params = getattr(getattr(item, "callspec", None), "params", {})
        return item.path.is_relative_to(here) and "guest" in params

    items.sort(key=boots_its_own)


@pytest.fixture(scope="session")
def containers(guest: TestGuest) -> GuestContainers:
    """Drive containers in the guest."""
    return GuestContainers(guest)


@pytest.fixture(scope="session")
def pods(containers: GuestContainers) -> dict[str, str]:
    """Start one long-running container in each demo pod; return container ids by pod name."""
    ids = {"nginx-1": "nginx-main", "busybox-1": "busybox-main"}
    containers.start(ids["nginx-1"], NGINX)
    containers.start(ids["busybox-1"], BUSYBOX)
    return ids


@pytest.fixture
def policies(guest: TestGuest, tmp_path: Path) -> PolicyApplier:
    """Apply policy files to the guest's pods."""
    return PolicyApplier(guest, tmp_path / "policies")
