# SPDX-License-Identifier: Apache-2.0
"""Mutual TLS between the node's adapter and each guest agent: only the adapter may change a guest's policy.

Each side holds a key and a self-signed certificate of its own, and pins the other side's certificate:
the agent accepts a client only if it presents a certificate listed in its peer file, the adapter talks
only to a server presenting one listed in its own. No certificate authority is involved, so no other
certificate can ever chain to what a side trusts; rotation is by listing the old and the new certificate
in the peer file until every side has the new one. The handshake is gRPC's own (BoringSSL); this module
only reads the files and says clearly which one is wrong.

A directory of credentials holds KEY, CERTIFICATE and PEERS (the file names of a Kubernetes TLS Secret,
plus the pinned peers). `kadapter credentials` writes one for each side.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import grpc

DEFAULT_DIRECTORY = Path("/etc/kadapter/tls")
VALIDITY_DAYS = 825  # how long `kadapter credentials` makes a pair last; pin a new pair before it ends
KEY = "tls.key"
CERTIFICATE = "tls.crt"
PEERS = "peer.crt"  # the other side's certificate(s), PEM, concatenated
AGENT_NAME = "kadapter-agent"  # the name in every agent's certificate, which the adapter checks
ADAPTER_NAME = "kadapter-adapter"
CHANNEL_OPTIONS = (("grpc.ssl_target_name_override", AGENT_NAME),)  # agents are reached by CID, not by name


class CredentialsError(Exception):
    """A credentials directory that cannot be used, naming the file and the reason."""


@dataclass(frozen=True)
class Identity:
    """One side's key and certificate, and the certificates of the peers it accepts (all PEM)."""

    key: bytes
    certificate: bytes
    peers: bytes

    @classmethod
    def load(cls, directory: Path) -> Identity:
        """Read a credentials directory; the key must be readable by its owner only."""
        key_path = directory / KEY
        try:
            mode = key_path.stat().st_mode
        except OSError as error:
            raise CredentialsError(f"{key_path}: {error.strerror} (write one with `kadapter credentials`)") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CredentialsError(f"{key_path}: readable by others (mode {stat.S_IMODE(mode):04o}); want 0600 or 0400")
        return cls(
            key=_read_pem(key_path, "PRIVATE KEY"),
            certificate=_read_pem(directory / CERTIFICATE, "CERTIFICATE"),
            peers=_read_pem(directory / PEERS, "CERTIFICATE"),
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        """Serve with this identity, requiring every client to present a pinned certificate."""
        return grpc.ssl_server_credentials(
            [(self.key, self.certificate)], root_certificates=self.peers, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Dial with this identity, accepting only a server that presents a pinned certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.peers, private_key=self.key, certificate_chain=self.certificate
        )


def _read_pem(path: Path, label: str) -> bytes:
    """Read a PEM file, checking that it holds the kind of block it should."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CredentialsError(f"{path}: {error.strerror}") from None
    if f"{label}-----".encode() not in data:  # "PRIVATE KEY-----" also ends "EC PRIVATE KEY-----" (older encoding)
        raise CredentialsError(f"{path}: no PEM {label} in it")
    return data
