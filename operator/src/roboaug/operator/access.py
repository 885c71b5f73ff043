"""Each worker's own identity: a ServiceAccount, a Role and a RoleBinding per AugmentationJob.

The worker's one write is `status.progress` of its own AugmentationJob (worker/progress.py: a merge
patch; hub.py talks to the Hub only). A shared worker Role would let any worker, or anything that
steals its token, write the progress of every job in the namespace, so each job's pods run under
a ServiceAccount of their own whose Role names that one CR (`resourceNames`) and grants `patch` on
its status subresource and nothing else.

The three objects are named as the Job (`jobs.job_name`: deterministic, so a restarted operator
finds them, HTTP 409, and adopts them when they are ours) and owned by the CR, so they go with it.
The operator may grant that Role without `escalate` or `bind`: the apiserver lets anyone create a
Role, and a RoleBinding to it, whose rules it holds itself, and the operator holds get/patch on
`augmentationjobs/status` wherever it works.
"""

from __future__ import annotations

from roboaug.api.models import GROUP, KIND, PLURAL, VERSION

from .jobs import LABEL_MANAGED_BY, LABEL_NAME, MANAGED_BY, job_name

RBAC = "rbac.authorization.k8s.io"
KINDS: tuple[str, ...] = ("ServiceAccount", "Role", "RoleBinding")
"""What `worker_access` renders. All exist before the Job (the pod needs its ServiceAccount); the
controller creates the ServiceAccount and Role at once and the RoleBinding only once both are
known to be its own (`Controller._create_first`), so a name clash never binds another's
identity or rules."""


def account_name(cr_name: str) -> str:
    """The worker's ServiceAccount (and its Role and RoleBinding): the Job's name."""
    return job_name(cr_name)


def worker_rules(cr_name: str) -> list[dict]:
    """All the worker may do: patch the status of its own AugmentationJob."""
    return [{"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "resourceNames": [cr_name],
             "verbs": ["patch"]}]


def owner_reference(cr: dict) -> dict:
    """The CR as controller: the garbage collector deletes the object with it. No
    blockOwnerDeletion: nothing waits for these objects before the CR goes."""
    meta = cr["metadata"]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": meta["name"], "uid": meta["uid"],
            "controller": True}


def worker_access(cr: dict) -> list[dict]:
    """The ServiceAccount, Role and RoleBinding of the worker of CR `cr` (metadata name,
    namespace, uid), in `KINDS` order."""
    meta = cr["metadata"]
    name, ns = account_name(meta["name"]), meta["namespace"]

    def obj(api_version: str, kind: str, **body) -> dict:
        return {"apiVersion": api_version, "kind": kind,
                "metadata": {"name": name, "namespace": ns,
                             "labels": {LABEL_NAME: "roboaug-worker", LABEL_MANAGED_BY: MANAGED_BY},
                             "ownerReferences": [owner_reference(cr)]},
                **body}

    return [
        obj("v1", "ServiceAccount"),
        obj(f"{RBAC}/v1", "Role", rules=worker_rules(meta["name"])),
        obj(f"{RBAC}/v1", "RoleBinding",
            roleRef={"apiGroup": RBAC, "kind": "Role", "name": name},
            subjects=[{"kind": "ServiceAccount", "name": name, "namespace": ns}]),
    ]


__all__ = ["KINDS", "account_name", "owner_reference", "worker_access", "worker_rules"]
