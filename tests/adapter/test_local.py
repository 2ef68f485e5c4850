# SPDX-License-Identifier: Apache-2.0
"""Local mode's plan: each Kata pod's postures, from the global default and its namespace's annotations."""

from __future__ import annotations

import shutil
from pathlib import Path

from adapter.local import ANY_POD, plan
from adapter.pods import Postures
from adapter.transport import parse_agent_url

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = """\
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: kata}
handler: kata-qemu
---
apiVersion: v1
kind: Namespace
metadata:
  name: web
  annotations: {kubearmor-network-posture: block, kubearmor-capabilities-posture: block}
---
apiVersion: v1
kind: Namespace
metadata: {name: plain}
---
apiVersion: v1
kind: Pod
metadata: {name: front, namespace: web}
spec: {runtimeClassName: kata, containers: [{name: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: back, namespace: plain}
spec: {runtimeClassName: kata, containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: lone, namespace: undeclared}
spec: {runtimeClassName: kata, containers: [{name: app}]}
"""


def test_each_pod_gets_the_default_posture_but_where_its_namespace_sets_one(tmp_path: Path) -> None:
    """--default-posture covers every category; a namespace annotation overrides its category only."""
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "pods.yaml").write_text(MANIFESTS)
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    plans = plan(
        policies_dir=tmp_path / "policies",
        manifests_dir=tmp_path / "manifests",
        agents={ANY_POD: parse_agent_url("tcp://127.0.0.1:9")},
        default_posture="audit",
    )
    assert {pod_plan.pod.ref: pod_plan.postures for pod_plan in plans} == {
        "web/front": Postures(file="audit", network="block", capabilities="block"),
        "plain/back": Postures.everywhere("audit"),
        "undeclared/lone": Postures.everywhere("audit"),
    }
