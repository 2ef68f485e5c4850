# SPDX-License-Identifier: Apache-2.0
"""What a DNS rule's domain may be: the names the guest kernel can compare with a query's question.

The kernel reads a query's name in lower case, labels joined by dots, and
compares it and each domain above it byte for byte (bpf/lsm/dns.bpf.h).
A rule whose domain has another shape (upper case, a trailing dot, a
wildcard) would never match, so both sides refuse it.
"""

import re

DOMAIN_MAX = 253  # a name's longest text form: 255 bytes on the wire, less its first length byte and final zero
_DOMAIN = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")


def is_domain(name: str) -> bool:
    """Tell whether a name is lower case letters, digits, '-' and '_' in labels of 1 to 63, 253 bytes at most."""
    return len(name) <= DOMAIN_MAX and _DOMAIN.fullmatch(name) is not None
