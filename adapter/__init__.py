# SPDX-License-Identifier: Apache-2.0
"""Kadapter's host side: reads KubeArmor policies and pods, decides what each Kata VM enforces."""
