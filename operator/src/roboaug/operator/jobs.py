"""Renders the batch/v1 Job that runs the worker for one AugmentationJob.

The Job is a pure function of the CR and the operator configuration: the same inputs always give
the same manifest and, above all, the same name, so a restarted operator finds (HTTP 409) and
adopts the Job it created before instead of starting the work twice.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

from roboaug.api.contract import (
    JOB_SUFFIXES,
    PERMANENT_EXIT_CODES,
    SPEC_ANNOTATION,
    WORKER_SERVICE_ACCOUNT,
    ExitCode,
    Stage,
    job_attempt_fields,
    render_env,
    spec_volume,
)
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

from .config import OperatorConfig, Pool
from .kueue import LABEL_QUEUE_NAME
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
# An Indexed Job's pods are named `<job-name>-<index>-<5 random>`, so 10,000 shards need five
# digits more: 61 characters leaves the pod names (and host names `<job-name>-<index>`) legal.
_NAME_LIMIT = 61
_SUFFIX, FINALIZE_SUFFIX, CLEANUP_SUFFIX = JOB_SUFFIXES
LABEL_STAGE = f"{GROUP}/stage"
"""The worker stage a Job runs (contract.Stage): single, shard, finalize or cleanup."""


def job_name(cr_name: str, suffix: str = _SUFFIX) -> str:
    """`<cr-name>-worker` (or another `suffix`: `-finalize`, `-cleanup`), or a truncated name
    plus a hash of the full one when that is too long.

    Deterministic (restart safety) and at most 61 characters (the job controller copies it into
    a label value and, with `-0`, into the pods' host name).
    """
    name = f"{cr_name}{suffix}"
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(cr_name.encode()).hexdigest()[:8]
    keep = _NAME_LIMIT - len(suffix) - len(digest) - 1
    return f"{cr_name[:keep].rstrip('-.')}-{digest}{suffix}"


def finalize_name(cr_name: str) -> str:
    """The Job that merges a sharded job's shards and publishes them (`<cr-name>-finalize`)."""
    return job_name(cr_name, FINALIZE_SUFFIX)


def cleanup_name(cr_name: str) -> str:
    """The Job that drops a failed or cancelled sharded job's staging area (`<cr-name>-cleanup`)."""
    return job_name(cr_name, CLEANUP_SUFFIX)


def output_dataset_id(spec: AugmentationJobSpec, job_id: str) -> str:
    """Where the result goes: the spec's override, else the naming rule."""
    return spec.output_dataset_id or default_output_dataset_id(spec.dataset_id, job_id)


def worker_spec_json(spec: AugmentationJobSpec, job_id: str) -> str:
    """The spec as the worker receives it (its pod's annotation, `contract.spec_volume`), with
    `output_dataset_id` filled in: the worker writes where the operator says (and reports) the
    result is. UTF-8 as it is: the spec's bounds are counted in characters (models.spec).

    It holds no secret: the Hub token is only ever a Secret *reference* in the spec, and the
    value reaches the container through `HF_TOKEN`'s secretKeyRef.
    """
    data = spec.model_dump(mode="json", exclude={"cancel_requested"})
    data["output_dataset_id"] = output_dataset_id(spec, job_id)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def owner_reference(cr: dict) -> dict:
    """The CR as controller of an object that may outlive its Jobs (a log archive): the garbage
    collector deletes it with the CR. No blockOwnerDeletion: nothing waits for it before the CR
    goes."""
    meta = cr["metadata"]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": meta["name"], "uid": meta["uid"],
            "controller": True}


def _owner(cr: dict) -> dict:
    """The CR as controller of its Jobs: with blockOwnerDeletion, a foreground deletion of the CR
    waits for them."""
    return {**owner_reference(cr), "blockOwnerDeletion": True}


def pod_failure_policy(stage: str = Stage.SINGLE) -> dict:
    """Permanent worker failures fail the Job at once; node disruptions cost no retry.

    A single stage's SHARD_PLAN exit ends its Job at once too (the plan is not a failure, but
    running it again would only plan again). In an Indexed Job of shards a permanent code fails
    that index (FailIndex; with maxFailedIndexes 0 the job controller then stops the others):
    each index keeps its own retries (backoffLimitPerIndex) for every other code."""
    codes = set(int(c) for c in PERMANENT_EXIT_CODES)
    if stage == Stage.SINGLE:
        codes.add(int(ExitCode.SHARD_PLAN))
    return {
        "rules": [
            {"action": "FailIndex" if stage == Stage.SHARD else "FailJob",
             "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": sorted(codes)}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


def parallelism(shards: int, spec: AugmentationJobSpec, choice: PoolChoice,
                project_limit: Optional[int] = None) -> int:
    """Shard pods running at once: the least of the shard count, the job's max_parallelism, its
    project's limits.max_parallelism and the pool's bound."""
    return max(1, min(shards, spec.max_parallelism or shards, project_limit or shards,
                      choice.pool.max_parallelism))


def stage_fields(stage: str, shards: Optional[int], spec: AugmentationJobSpec, choice: PoolChoice,
                 backoff_limit: int, project_limit: Optional[int] = None) -> dict:
    """The Job spec fields that make it run `stage`: every Job is Indexed (so each pod learns its
    attempt, `job_attempt_fields`); the shard stage's has one index per shard, each with its own
    retries, and fails as soon as one index has failed for good (maxFailedIndexes 0)."""
    if stage != Stage.SHARD:
        return {"backoffLimit": backoff_limit, **job_attempt_fields(backoff_limit)}
    return {"completionMode": "Indexed", "completions": shards,
            "parallelism": parallelism(shards, spec, choice, project_limit),
            "backoffLimitPerIndex": backoff_limit, "maxFailedIndexes": 0}


def _env(cr: dict, job_id: str, config: OperatorConfig,
         token: Optional[SecretKeyRef], max_frames: Optional[int],
         stage: str = Stage.SINGLE, shards: Optional[int] = None,
         max_shards: Optional[int] = None, frames_per_shard: Optional[int] = None) -> list[dict]:
    meta = cr["metadata"]
    return render_env(job_id=job_id, cr_name=meta["name"],
                      cr_namespace=meta["namespace"], hub_token=token,
                      library={"HF_HOME": f"{SCRATCH_PATH}/hf", "TMPDIR": "/tmp"}, extra=config.worker_env,
                      max_frames=max_frames, stage=stage, shards=shards, max_shards=max_shards,
                      frames_per_shard=frames_per_shard)


def job_queue(pool: Pool, project_queue: Optional[str]) -> Optional[str]:
    """The Kueue LocalQueue a job's Jobs go to (kueue.py): its project's `kueue_queue`, else its
    pool's; None = no Kueue. The project wins: its queue is the team's quota, and a pool is
    shared by every team. The one rule: `render_job` labels each Job with it, and everything
    after reads the queue back from that label (`JobView.queue`)."""
    return project_queue or pool.kueue_queue


def render_job(cr: dict, spec: AugmentationJobSpec, job_id: str, config: OperatorConfig,
               choice: PoolChoice, project_token: Optional[SecretKeyRef] = None,
               max_frames: Optional[int] = None, *, stage: str = Stage.SINGLE,
               shards: Optional[int] = None, max_parallelism: Optional[int] = None,
               max_shards: Optional[int] = None, project_queue: Optional[str] = None) -> dict:
    """The worker Job for CR `cr` (a dict with metadata name/namespace/uid) on pool `choice`.

    The Hub token mounted is the project's (`project_token`, its AugmentationProject's
    hub_token_secret) when it has one: project-scoped credentials win over whatever Secret a
    CR names (a kubectl user could name another team's) and over the deployment's default.
    `max_frames` is the project's limits.max_frames_per_job: only the worker learns the source's
    size, so it enforces the limit (ROBOAUG_MAX_FRAMES).

    The spec rides in the pod template's SPEC_ANNOTATION, which the pod mounts as its spec file
    (`contract.spec_volume`): the Job is the one object a job start makes.

    `stage` (contract.Stage) and `shards`: a single stage (`shards` None: it plans itself, and
    may exit SHARD_PLAN) is `<cr>-worker` with one pod, as is the shard stage with one index
    per shard (`stage_fields`); finalize and cleanup are `<cr>-finalize` / `<cr>-cleanup`, one
    pod each, same image, identity and Hub token. `max_parallelism`: the project's
    limits.max_parallelism (a ceiling on the shards running at once). `max_shards`: the project's
    limits.max_shards, the cap of a single stage's automatic plan (ROBOAUG_MAX_SHARDS); the pool's
    frames_per_shard is that plan's threshold (ROBOAUG_FRAMES_PER_SHARD). `project_queue`: the
    project's kueue_queue, which wins over the pool's (`job_queue`)."""
    meta = cr["metadata"]
    pool = choice.pool
    labels = {
        LABEL_NAME: "roboaug-worker",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_JOB_ID: job_id,
        LABEL_PROJECT_ID: str(spec.project_id),
        LABEL_POOL: choice.name,
    }
    if stage != Stage.SINGLE or shards is not None:
        labels[LABEL_STAGE] = stage
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
    spec_vol, spec_mount = spec_volume()
    volumes.append(spec_vol)
    container = {
        "name": CONTAINER,
        "image": pool.image,
        "imagePullPolicy": pool.image_pull_policy,
        "command": ["python", "-m", "roboaug.worker"],
        "env": _env(cr, job_id, config, token, max_frames, stage, shards, max_shards, pool.frames_per_shard),
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
        # the namespace's worker identity (access.py); the worker policy lets this pod write the
        # status of this CR only, known from the pod's name
        "serviceAccountName": WORKER_SERVICE_ACCOUNT,
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
        # so that each pod learns its attempt number (the worker contract's ROBOAUG_ATTEMPT)
        **stage_fields(stage, shards, spec, choice, config.backoff_limit, max_parallelism),
        "podFailurePolicy": pod_failure_policy(stage),
        "template": {
            "metadata": {"labels": {**pool.pod_labels, **labels},
                         "annotations": {**pool.pod_annotations, **annotations,
                                         SPEC_ANNOTATION: worker_spec_json(spec, job_id)}},
            "spec": pod_spec,
        },
    }
    if config.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = config.ttl_seconds_after_finished
    deadline = pool.active_deadline_seconds or config.active_deadline_seconds
    if deadline is not None:
        job_spec["activeDeadlineSeconds"] = deadline
    job_labels = dict(labels)
    queue = job_queue(pool, project_queue)
    if queue:
        # Kueue admits it: created suspended, so no pod starts before its Workload is admitted
        # (Kueue unsuspends it then); the label names the LocalQueue (kueue.py).
        job_labels[LABEL_QUEUE_NAME] = queue
        job_spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": {Stage.FINALIZE: finalize_name, Stage.CLEANUP: cleanup_name}.get(stage, job_name)(meta["name"]),
            "namespace": meta["namespace"],
            "labels": job_labels,
            "annotations": annotations,
            "ownerReferences": [_owner(cr)],
        },
        "spec": job_spec,
    }
