# SPDX-License-Identifier: Apache-2.0
"""Write the adapter's and the agents' credentials: two keys, two self-signed certificates, each pinning the other.

`kadapter credentials DIR` writes DIR/adapter (for the node daemon's Secret) and DIR/guest (for the guest
image). Each holds its own key and certificate, and the other side's certificate as the only peer it
trusts (kadapter_api/channel_security.py). The agents of every VM built from one image share the guest
identity: a workload that broke out into its guest's root and stole that key could only pose as an
agent, which the host reaches by CID (it cannot redirect the adapter to itself), never as the adapter.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kadapter_api.channel_security import ADAPTER_NAME, AGENT_NAME, CERTIFICATE, KEY, PEERS, VALIDITY_DAYS

ROLES = {
    "adapter": (ADAPTER_NAME, ExtendedKeyUsageOID.CLIENT_AUTH),
    "guest": (AGENT_NAME, ExtendedKeyUsageOID.SERVER_AUTH),
}


def write_credentials(directory: Path, *, days: int = VALIDITY_DAYS) -> dict[str, Path]:
    """Write a fresh pair under directory/adapter and directory/guest; refuse to replace existing keys."""
    places = {role: directory / role for role in ROLES}
    for place in places.values():
        if (place / KEY).exists():
            raise FileExistsError(f"{place / KEY} exists: remove the directory to start over, or keep it")
    made = {role: _self_signed(name, usage, days) for role, (name, usage) in ROLES.items()}
    for role, peer in (("adapter", "guest"), ("guest", "adapter")):
        key, certificate = made[role]
        places[role].mkdir(parents=True, exist_ok=True)
        _write(places[role] / KEY, key, mode=0o600)
        _write(places[role] / CERTIFICATE, certificate, mode=0o644)
        _write(places[role] / PEERS, made[peer][1], mode=0o644)
    return places


def _self_signed(name: str, usage: x509.ObjectIdentifier, days: int) -> tuple[bytes, bytes]:
    """Make a P-256 key and a self-signed end-entity certificate for name (no CA: it can sign nothing else)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # a guest clock a little behind the host's
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem_key, certificate.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, *, mode: int) -> None:
    """Create path with mode from the start (a key is never readable by others, not even for a moment)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    os.chmod(path, mode)  # O_CREAT's mode passes through the umask; an existing file keeps its own
