# SPDX-License-Identifier: Apache-2.0
"""The credentials every test uses: the pair `make` writes to build/tls, which the test guest's agent serves with.

Host-side tests that run without `make` write the pair themselves on first use. An impostor's identity
(a fresh self-signed pair claiming the adapter's and the agent's names, pinned by nobody) is for the
tests that check it is refused.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from adapter.credentials import write_credentials
from kadapter_api.channel_security import KEY, Identity

TLS_DIR = Path(__file__).resolve().parents[1] / "build" / "tls"
ADAPTER_DIR = TLS_DIR / "adapter"
GUEST_DIR = TLS_DIR / "guest"


@functools.cache
def adapter_identity() -> Identity:
    """Return the adapter's identity, the one the test guest's agent pins."""
    _ensure_written()
    return Identity.load(ADAPTER_DIR)


@functools.cache
def guest_identity() -> Identity:
    """Return the agents' identity, the one the adapter's identity pins."""
    _ensure_written()
    return Identity.load(GUEST_DIR)


@functools.cache
def impostor_identities() -> tuple[Identity, Identity]:
    """Return a second pair (adapter, guest) pinned by nobody but each other."""
    with tempfile.TemporaryDirectory() as directory:
        places = write_credentials(Path(directory))
        return Identity.load(places["adapter"]), Identity.load(places["guest"])


def _ensure_written() -> None:
    if not (ADAPTER_DIR / KEY).exists():
        write_credentials(TLS_DIR)
