"""The workers' identity: one ServiceAccount, Role and RoleBinding per namespace.

The worker's one write is `status.progress` of its own AugmentationJob (worker/progress.py: a merge
patch; hub.py talks to the Hub only). The Role grants `patch` on AugmentationJob status in the
namespace; what narrows it to the worker's own job is the worker policy
(api/admission.py `build_worker_policy`, installed with the CRDs): the apiserver admits a status
write by this ServiceAccount only when the pod its token is bound to is named after that CR
(`<cr-name>-worker|finalize|cleanup-<index>-<random>`). A token not bound to a pod is refused.

Why not one identity per job (what this module made before): three more objects per job, two of
them one round after the other before the Job could be created, were most of the time between a
CR and its Job under a burst (bench/bench_operator.py --n 500: p95 3.97 s with them, docs/
architecture.md). Here they are made once per namespace and checked again now and then.

Made by the operator, not the chart: with `watchNamespaces` empty it works in namespaces no chart
value lists. The operator may create the Role and its binding without `escalate` or `bind`: the
apiserver lets anyone create a Role, and a RoleBinding to it, whose rules it holds itself, and
the operator holds get/patch on `augmentationjobs/status` wherever it works. Nothing owns them
(they serve every job of the namespace) and the operator never deletes them.
"""

from __future__ import annotations

from roboaug.api.contract import WORKER_SERVICE_ACCOUNT
from roboaug.api.models import GROUP, PLURAL

from .jobs import LABEL_MANAGED_BY, LABEL_NAME, MANAGED_BY

RBAC = "rbac.authorization.k8s.io"
KINDS: tuple[str, ...] = ("ServiceAccount", "Role", "RoleBinding")
"""What `worker_identity` renders. The controller creates the ServiceAccount and Role at once and
the RoleBinding only once both are known to be as rendered (`Controller._ensure_identity`), so
a name clash never binds another's identity or rules."""


def worker_rules() -> list[dict]:
    """All a worker may do: patch AugmentationJob status in its namespace (the worker policy
    narrows it to its own job)."""
    return [{"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["patch"]}]


def worker_identity(namespace: str) -> list[dict]:
    """The ServiceAccount, Role and RoleBinding of the workers of `namespace`, in `KINDS` order,
    all named `contract.WORKER_SERVICE_ACCOUNT`."""
    name = WORKER_SERVICE_ACCOUNT

    def obj(api_version: str, kind: str, **body) -> dict:
        return {"apiVersion": api_version, "kind": kind,
                "metadata": {"name": name, "namespace": namespace,
                             "labels": {LABEL_NAME: "roboaug-worker", LABEL_MANAGED_BY: MANAGED_BY}},
                **body}

    return [
        obj("v1", "ServiceAccount"),
        obj(f"{RBAC}/v1", "Role", rules=worker_rules()),
        obj(f"{RBAC}/v1", "RoleBinding",
            roleRef={"apiGroup": RBAC, "kind": "Role", "name": name},
            subjects=[{"kind": "ServiceAccount", "name": name, "namespace": namespace}]),
    ]


__all__ = ["KINDS", "worker_identity", "worker_rules"]
