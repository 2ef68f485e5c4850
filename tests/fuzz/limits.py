# SPDX-License-Identifier: Apache-2.0
"""A bound on one fuzz example's time, so that a hang fails the test instead of stalling CI.

Hypothesis's deadline only judges an example once it has returned; this interrupts one that
does not return, with an exception hypothesis then shrinks and reports like any other failure.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

EXAMPLE_SECONDS = 30.0


class HangError(Exception):
    """An example ran past its time limit: a hang, or work growing much faster than its input."""


@contextmanager
def time_limit(seconds: float = EXAMPLE_SECONDS) -> Iterator[None]:
    """Raise HangError in the block once it has run for ``seconds`` (SIGALRM: main thread only)."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise HangError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)  # again each second: a callback may swallow one
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
