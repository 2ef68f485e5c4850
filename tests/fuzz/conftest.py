# SPDX-License-Identifier: Apache-2.0
"""The hypothesis profile of the fuzz tests: bounded so tests/fuzz runs in well under a minute in CI.

KADAPTER_FUZZ_EXAMPLES raises the number of examples per test for a longer local run; every
test scales its own count from it. Hypothesis prints the seed and the failing example on failure.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

settings.register_profile(
    "kadapter-fuzz",
    max_examples=int(os.environ.get("KADAPTER_FUZZ_EXAMPLES", "60")),
    # Past this an example fails as too slow; tests/fuzz/limits.py interrupts one that never ends.
    deadline=timedelta(seconds=10),
    derandomize=False,
    print_blob=True,
    # Some examples are huge on purpose (long lists, deep nesting, megabyte strings).
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
settings.load_profile("kadapter-fuzz")
