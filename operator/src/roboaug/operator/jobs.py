"""Renders the batch/v1 Job that runs the worker for one AugmentationJob.

The Job is a pure function of the CR and the operator configuration: the same inputs always give
the same manifest and, above all, the same name, so a restarted operator finds (HTTP 409) and
adopts the Job it created before instead of starting the work twice.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

from roboaug.api.contract import SPEC_KEY, PERMANENT_EXIT_CODES, job_attempt_fields, render_env, spec_volume
from roboaug.api.models import (
    GROUP,
    KIND,
    LABEL_JOB_ID,
    LABEL_PROJECT_ID,
    VERSION,
    AugmentationJobSpec,
    SecretKeyRef,
    default_output_dataset_id,
)

from .config import OperatorConfig
from .pools import PoolChoice

CONTAINER = "worker"
MANAGED_BY = "roboaug-operator"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_POOL = f"{GROUP}/pool"
ANNOTATION_CR_NAME = f"{GROUP}/cr-name"
SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
"""Label selector of every Job and Pod the operator creates (its server-side watch filter)."""
SCRATCH_PATH = "/scratch"
# A Job's name becomes its pods' `job-name` label value (63 characters at most), and an Indexed
# Job's pods are named by host name `<job-name>-0` (a DNS label: 63 again).
_NAME_LIMIT = 61
_SUFFIX = "-worker"


def job_name(cr_name: str) -> str:
    """`<cr-name>-worker`, or a truncated name plus a hash of the full one when that is too long.

    Deterministic (restart safety) and at most 61 characters (the job controller copies it into
    a label value and, with `-0`, into the pods' host name).
    """
    name = f"{cr_name}{_SUFFIX}"
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(cr_name.encode()).hexdigest()[:8]
    keep = _NAME_LIMIT - len(_SUFFIX) - len(digest) - 1
    return f"{cr_name[:keep].rstrip('-.')}-{digest}{_SUFFIX}"


def output_dataset_id(spec: AugmentationJobSpec, job_id: str) -> str:
    """Where the result goes: the spec's override, else the naming rule."""
    return spec.output_dataset_id or default_output_dataset_id(spec.dataset_id, job_id)


def worker_spec_json(spec: AugmentationJobSpec, job_id: str) -> str:
    """The spec as the worker receives it (the file of its ConfigMap, `spec_config_map`), with
    `output_dataset_id` filled in: the worker writes where the operator says (and reports) the
    result is. UTF-8 as it is: the spec's bounds are counted in characters (models.spec).

    It holds no secret: the Hub token is only ever a Secret *reference* in the spec, and the
    value reaches the container through `HF_TOKEN`'s secretKeyRef.
    """
    data = spec.model_dump(mode="json", exclude={"cancel_requested"})
    data["output_dataset_id"] = output_dataset_id(spec, job_id)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _owner(cr: dict) -> dict:
    meta = cr["metadata"]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def spec_config_map_name(cr: dict) -> str:
    """`<job name>-spec-<8 hex of the CR's uid>`: a CR created again under the same name gets its
    own ConfigMap, never the one of its predecessor still waiting for garbage collection."""
    return f"{job_name(cr['metadata']['name'])}-spec-{cr['metadata']['uid'].replace('-', '')[:8]}"


def spec_config_map(cr: dict, spec: AugmentationJobSpec, job_id: str) -> dict:
    """The ConfigMap the worker's pod mounts its spec from (contract.spec_volume). Owned by the
    AugmentationJob, so it goes with it; immutable, as the spec is once accepted."""
    meta = cr["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": spec_config_map_name(cr), "namespace": meta["namespace"],
                     "labels": {LABEL_NAME: "roboaug-worker", LABEL_MANAGED_BY: MANAGED_BY, LABEL_JOB_ID: job_id},
                     "annotations": {ANNOTATION_CR_NAME: meta["name"]},
                     "ownerReferences": [_owner(cr)]},
        "immutable": True,
        "data": {SPEC_KEY: worker_spec_json(spec, job_id)},
    }


def pod_failure_policy() -> dict:
    """Permanent worker failures fail the Job at once; node disruptions cost no retry."""
    return {
        "rules": [
            {"action": "FailJob",
             "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                             "values": sorted(int(c) for c in PERMANENT_EXIT_CODES)}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


def _env(cr: dict, job_id: str, config: OperatorConfig,
         token: Optional[SecretKeyRef], max_frames: Optional[int]) -> list[dict]:
    meta = cr["metadata"]
    return render_env(job_id=job_id, cr_name=meta["name"],
                      cr_namespace=meta["namespace"], hub_token=token,
                      library={"HF_HOME": f"{SCRATCH_PATH}/hf", "TMPDIR": "/tmp"}, extra=config.worker_env,
                      max_frames=max_frames)


def render_job(cr: dict, spec: AugmentationJobSpec, job_id: str, config: OperatorConfig,
               choice: PoolChoice, project_token: Optional[SecretKeyRef] = None,
               max_frames: Optional[int] = None) -> dict:
    """The worker Job for CR `cr` (a dict with metadata name/namespace/uid) on pool `choice`.

    The Hub token mounted is the project's (`project_token`, its AugmentationProject's
    hub_token_secret) when it has one: project-scoped credentials win over whatever Secret a
    CR names (a kubectl user could name another team's) and over the deployment's default.
    `max_frames` is the project's limits.max_frames_per_job: only the worker learns the source's
    size, so it enforces the limit (ROBOAUG_MAX_FRAMES).

    The spec is not in it: the pod mounts it from `spec_config_map(cr, spec, job_id)`, which the
    operator creates first."""
    meta = cr["metadata"]
    pool = choice.pool
    labels = {
        LABEL_NAME: "roboaug-worker",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_JOB_ID: job_id,
        LABEL_PROJECT_ID: str(spec.project_id),
        LABEL_POOL: choice.name,
    }
    annotations = {ANNOTATION_CR_NAME: meta["name"]}
    token = project_token or spec.hub_token_secret or config.hub_token_secret
    resources: dict[str, Any] = {}
    if pool.resources.requests:
        resources["requests"] = dict(pool.resources.requests)
    if pool.resources.limits:
        resources["limits"] = dict(pool.resources.limits)
    volumes = [
        {"name": "scratch", "emptyDir": ({"sizeLimit": config.scratch_size_limit}
                                         if config.scratch_size_limit else {})},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    spec_vol, spec_mount = spec_volume(spec_config_map_name(cr))
    volumes.append(spec_vol)
    container = {
        "name": CONTAINER,
        "image": pool.image,
        "imagePullPolicy": pool.image_pull_policy,
        "command": ["python", "-m", "roboaug.worker"],
        "env": _env(cr, job_id, config, token, max_frames),
        "resources": resources,
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH_PATH},
                         {"name": "tmp", "mountPath": "/tmp"}, spec_mount],
        "workingDir": SCRATCH_PATH,
        # The worker's last line (`roboaug-worker: error[...]`) becomes status.error.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec: dict[str, Any] = {
        # the job's own ServiceAccount, whose Role reaches only this CR (access.py)
        "serviceAccountName": job_name(meta["name"]),
        "restartPolicy": "Never",
        "nodeSelector": dict(pool.node_selector),
        "tolerations": [t.model_dump(exclude_none=True) for t in pool.tolerations],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if pool.priority_class_name:
        pod_spec["priorityClassName"] = pool.priority_class_name
    if config.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in config.image_pull_secrets]
    job_spec: dict[str, Any] = {
        "backoffLimit": config.backoff_limit,
        # so that each pod learns its attempt number (the worker contract's ROBOAUG_ATTEMPT)
        **job_attempt_fields(config.backoff_limit),
        "podFailurePolicy": pod_failure_policy(),
        "template": {
            "metadata": {"labels": {**pool.pod_labels, **labels},
                         "annotations": {**pool.pod_annotations, **annotations}},
            "spec": pod_spec,
        },
    }
    if config.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = config.ttl_seconds_after_finished
    deadline = pool.active_deadline_seconds or config.active_deadline_seconds
    if deadline is not None:
        job_spec["activeDeadlineSeconds"] = deadline
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [_owner(cr)],
        },
        "spec": job_spec,
    }
