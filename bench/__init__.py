# SPDX-License-Identifier: Apache-2.0
"""Benchmarks of Kadapter's kernel-side cost, run in the test guest (see overhead.py)."""
