# SPDX-License-Identifier: Apache-2.0
"""The one error bad user input raises on the host side: file, field and reason.

A policy Kadapter misreads is a policy it does not enforce, so input is
refused loudly and precisely; adapter/yaml_reader.py raises this for every
problem it finds while reading policies and manifests.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: names the file, the field (dotted path) and the reason."""

    def __init__(self, *, file: str, field: str, reason: str, line: int | None = None) -> None:
        """Keep the parts apart for callers and join them for people."""
        self.file = file
        self.field = field
        self.reason = reason
        self.line = line
        where = f"{file}: {field}: " if field else f"{file}: "
        super().__init__(where + reason + (f" (line {line})" if line else ""))
