# SPDX-License-Identifier: Apache-2.0
"""The agent's alerts, fanned out to every host stream without letting a slow one stall the kernel reader.

Each stream gets a bounded queue (kadapter_api/fanout.py); when it is full the alert is dropped for that
stream and counted, and the count is reported in the status.
"""

from __future__ import annotations

from kadapter_api import agent_pb2
from kadapter_api.fanout import Fanout

QUEUE_DEPTH = 4096


class AlertHub(Fanout[agent_pb2.Alert]):
    """Publish alerts to any number of streaming subscribers."""

    def __init__(self) -> None:
        super().__init__(depth=QUEUE_DEPTH)
