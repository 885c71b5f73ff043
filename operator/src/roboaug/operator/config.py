"""Operator configuration: the YAML file at $ROBOAUG_OPERATOR_CONFIG.

The Helm chart renders its values into a ConfigMap mounted as that file. Every field has a
default matching docs/architecture.md, so an empty file (or none at all) gives the documented
`cpu` and `gpu` pools. Unknown keys are rejected so a typo in the values fails at start-up with
the key's name instead of being silently ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from roboaug.api.contract import RESERVED_ENV
from roboaug.api.models import AugmentationType, SecretKeyRef
from roboaug.api.models.project import QUEUE_NAME_PATTERN
from roboaug.api.models.unbound import JobsWithoutProject

CONFIG_ENV = "ROBOAUG_OPERATOR_CONFIG"
DEFAULT_IMAGE = "ghcr.io/roboaug/worker:0.1.0"
GPU_RESOURCE = "nvidia.com/gpu"
# The built-in pools' Job deadlines (the chart's values say the same): far above any job seen,
# low enough that a worker stuck or restarted without end is stopped within a day.
CPU_DEADLINE_SECONDS = 12 * 3600
GPU_DEADLINE_SECONDS = 24 * 3600
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# worker_env may not override what the operator sets itself (RESERVED_ENV, the worker contract's),
# and HF_TOKEN must only ever come from a Secret reference.


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Toleration(_Strict):
    key: Optional[str] = None
    operator: str = Field("Equal", pattern=r"^(Equal|Exists)$")
    value: Optional[str] = None
    effect: Optional[str] = Field(None, pattern=r"^(NoSchedule|PreferNoSchedule|NoExecute)$")
    tolerationSeconds: Optional[int] = None


class Resources(_Strict):
    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)

    @field_validator("requests", "limits", mode="before")
    @classmethod
    def _quantities_as_str(cls, value: Any) -> Any:
        # YAML reads `cpu: 2` as an int; Kubernetes quantities are strings.
        if isinstance(value, dict):
            return {k: str(v) for k, v in value.items()}
        return value


class Pool(_Strict):
    """Where one kind of work runs: a node selection plus the worker's image and resources."""

    instance_type: Optional[str] = Field(None, description="Expected instance type (informational; the node's label wins).")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    image: str = DEFAULT_IMAGE
    image_pull_policy: str = Field("IfNotPresent", pattern=r"^(Always|IfNotPresent|Never)$")
    pod_labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on the worker pods.")
    pod_annotations: dict[str, str] = Field(default_factory=dict, description="Extra annotations on the worker pods.")
    priority_class_name: Optional[str] = None
    active_deadline_seconds: Optional[int] = Field(
        None, ge=1,
        description="Hard time limit of this pool's worker Jobs (the whole Job: pending time and every "
                    "attempt), so retries end; unset = the top-level active_deadline_seconds.")
    max_parallelism: int = Field(
        16, ge=1, le=1000,
        description="Most shard pods of one sharded job running at once on this pool (the Indexed Job's "
                    "parallelism is the least of this, the job's max_parallelism and its shard count).")
    frames_per_shard: Optional[int] = Field(
        None, ge=1,
        description="The automatic plan's threshold on this pool: a job whose spec leaves shards unset runs "
                    "as one shard per this many augmented frames (unset: contract.DEFAULT_FRAMES_PER_SHARD, "
                    "250,000); small values shard small datasets (tests, pools of small nodes).")
    kueue_queue: Optional[str] = Field(
        None, max_length=63, pattern=QUEUE_NAME_PATTERN,
        description="A Kueue LocalQueue (in each job's namespace) that admits this pool's Jobs: they "
                    "carry kueue.x-k8s.io/queue-name and are created suspended, and a job stays queued "
                    "with Kueue's reason, never failing on the pending timeout, until Kueue admits it. "
                    "A project's own kueue_queue (AugmentationProject spec) wins over it. Unset = no Kueue "
                    "(unless the project names a queue).")

    @property
    def gpus(self) -> int:
        return int(self.resources.limits.get(GPU_RESOURCE, self.resources.requests.get(GPU_RESOURCE, 0)))


def _default_pools() -> dict[str, Pool]:
    return {
        "cpu": Pool(
            instance_type="c7i.4xlarge",
            node_selector={"roboaug.dev/pool": "cpu"},
            active_deadline_seconds=CPU_DEADLINE_SECONDS,
            resources=Resources(requests={"cpu": "2", "memory": "4Gi"},
                                limits={"cpu": "4", "memory": "8Gi"}),
        ),
        "gpu": Pool(
            instance_type="g6e.2xlarge",
            node_selector={"roboaug.dev/pool": "gpu"},
            active_deadline_seconds=GPU_DEADLINE_SECONDS,
            tolerations=[Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")],
            resources=Resources(requests={"cpu": "4", "memory": "32Gi", GPU_RESOURCE: "1"},
                                limits={"memory": "48Gi", GPU_RESOURCE: "1"}),
        ),
    }


class LeaderElection(_Strict):
    """One active replica at a time, through a coordination.k8s.io Lease (see `leader`)."""

    enabled: bool = True
    lease_name: str = "roboaug-operator"
    lease_namespace: Optional[str] = Field(None, description="Default: the pod's namespace, else `default`.")
    lease_duration_seconds: float = Field(15, gt=0)
    renew_period_seconds: float = Field(5, gt=0)
    renew_deadline_seconds: Optional[float] = Field(
        None, gt=0,
        description="A leader that has not renewed its Lease for this long stops (exits) while the Lease "
                    "is still its own; unset = halfway between renew_period_seconds and "
                    "lease_duration_seconds (10 s for 5 s and 15 s, as client-go).")

    @property
    def renew_deadline(self) -> float:
        if self.renew_deadline_seconds is not None:
            return self.renew_deadline_seconds
        return (self.renew_period_seconds + self.lease_duration_seconds) / 2

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> "LeaderElection":
        if self.renew_period_seconds >= self.lease_duration_seconds:
            raise ValueError("leader_election.renew_period_seconds must be < lease_duration_seconds")
        # A leader must stop before another may take over: the deadline lies inside the lease.
        if not self.renew_period_seconds < self.renew_deadline < self.lease_duration_seconds:
            raise ValueError(
                f"leader_election.renew_deadline_seconds ({self.renew_deadline:g}) must be above "
                f"renew_period_seconds ({self.renew_period_seconds:g}) and below lease_duration_seconds "
                f"({self.lease_duration_seconds:g}): a leader that cannot renew stops before its Lease ends")
        return self


class WebhookConfig(_Strict):
    """Signed webhooks to each job's notify_url (`webhooks.py`; chart values `webhooks.*`)."""

    enabled: bool = True
    allow_http_hosts: list[str] = Field(
        default_factory=list, max_length=64,
        description="Hosts a notify_url may reach over plain http (and on a loopback address); every "
                    "other must be https. For tests and in-cluster receivers without TLS.")
    secret_names: Optional[list[str]] = Field(
        None, description="The Secret names the operator's RBAC lets it read (the chart's "
                          "webhooks.secretNames); a notify_secret naming another is refused with that reason. "
                          "null = not known here (the RBAC decides).")
    max_attempts: int = Field(8, ge=1, le=50, description="POSTs per delivery before it is abandoned.")
    backoff_seconds: float = Field(10, gt=0, description="Wait after the first failed attempt; doubles each time.")
    max_backoff_seconds: float = Field(3600, gt=0, description="Longest wait between two attempts.")
    timeout_seconds: float = Field(10, gt=0, le=60, description="Connect and answer timeout of one POST.")


class OperatorConfig(_Strict):
    namespaces: list[str] = Field(default_factory=list, description="Namespaces to watch; empty = cluster-wide.")
    pools: dict[str, Pool] = Field(default_factory=_default_pools)
    routing: dict[AugmentationType, str] = Field(
        default_factory=lambda: {AugmentationType.deterministic: "cpu", AugmentationType.generative: "gpu"},
        description="augmentation_type -> pool name.",
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list,
        description="Secrets (names, in the job's namespace) the kubelet pulls worker images with. Each "
                    "worker runs under its own ServiceAccount (access.py), so they go on the pod.")
    backoff_limit: int = Field(3, ge=0, le=20)
    max_evictions: int = Field(
        3, ge=0, le=100,
        description="Evictions (node pressure) and other node disruptions of a job's worker pod that are "
                    "restarted without costing a retry; one more fails the job.")
    pending_timeout_seconds: int = Field(600, ge=1)
    shard_progress_writes_per_second: float = Field(
        1.0, gt=0, le=100,
        description="Most status writes per second per sharded job carrying only its shards' summed progress "
                    "and count of shards done, whatever the shard count (phase moves, the last shard done, "
                    "a shard failed for good and the end go at once).")
    ttl_seconds_after_finished: Optional[int] = Field(86400, ge=0)
    active_deadline_seconds: Optional[int] = Field(
        None, ge=1, description="Job deadline of the pools that set none (pools.<name>.active_deadline_seconds).")
    hub_token_secret: Optional[SecretKeyRef] = Field(
        SecretKeyRef(name="roboaug-hf-token", key="token"),
        description="Default Secret holding the Hub token, when the CR names none. null = no token.",
    )
    # Unset keeps the behaviour from before projects (`allow`); the chart renders `refuse` unless told otherwise.
    jobs_without_project: JobsWithoutProject = Field(
        default_factory=JobsWithoutProject,
        description="Jobs whose project_id names no AugmentationProject: refuse, run under default_project, or allow.")
    worker_env: dict[str, str] = Field(default_factory=dict, description="Extra (non-secret) env for the worker.")
    scratch_size_limit: Optional[str] = "100Gi"
    leader_election: LeaderElection = Field(default_factory=LeaderElection)
    webhooks: WebhookConfig = Field(default_factory=WebhookConfig)
    health_port: Optional[int] = Field(8080, ge=0, le=65535, description="kopf liveness endpoint /healthz; null = off.")
    metrics_port: Optional[int] = Field(9090, ge=0, le=65535, description="Prometheus /metrics; null = off.")
    resync_seconds: float = Field(30, gt=0, description="How often every unfinished job is looked at anyway.")
    api_concurrency: int = Field(16, ge=1, le=256, description="Parallel Kubernetes API calls.")
    watch_initial_streaming: Literal["auto", "on", "off"] = Field(
        "auto",
        description="How each watch starts: `on` = the apiserver's streamed initial events "
                    "(sendInitialEvents, WatchList: objects arrive one by one, measured 222 MB instead of "
                    "422 MB peak with 5,000 jobs), `off` = one LIST, `auto` = streamed when one probe at "
                    "start-up finds the apiserver supports it, else LIST. true/false are read as on/off.")
    api_timeout_seconds: float = Field(
        10, gt=0, le=300,
        description="Timeout of one Kubernetes API call; with leader election, below its lease duration.")
    status_yield_seconds: float = Field(
        5.0, ge=0, le=60,
        description="Under a burst of new jobs, status writes and Events wait (at most this long) "
                    "while Job creations are in flight, so new jobs start sooner. 0 = never wait.")
    log_format: str = Field("json", pattern=r"^(json|text)$")
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("watch_initial_streaming", mode="before")
    @classmethod
    def _streaming_bools(cls, value: Any) -> Any:
        # configs from before `auto` said true/false; YAML 1.1 also reads a bare on/off as a bool
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return "on" if value.lower() == "true" else "off"
        return value

    @field_validator("worker_env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"worker_env: {name!r} is not a valid environment variable name")
            if name in RESERVED_ENV:
                raise ValueError(f"worker_env: {name!r} is set by the operator and cannot be overridden")
        return value

    @model_validator(mode="after")
    def _calls_end_within_the_lease(self) -> "OperatorConfig":
        # A call still waiting when the leadership it was made under has ended must not be able
        # to land afterwards, long after the new leader acted.
        le = self.leader_election
        if le.enabled and self.api_timeout_seconds >= le.lease_duration_seconds:
            raise ValueError(f"api_timeout_seconds ({self.api_timeout_seconds:g}) must be below "
                             f"leader_election.lease_duration_seconds ({le.lease_duration_seconds:g})")
        return self

    @model_validator(mode="after")
    def _routing_targets_exist(self) -> "OperatorConfig":
        for kind, pool in self.routing.items():
            if pool not in self.pools:
                name = kind.value if isinstance(kind, AugmentationType) else kind
                raise ValueError(
                    f"routing.{name}: pool {pool!r} is not defined in pools ({', '.join(sorted(self.pools)) or 'none'})"
                )
        return self


def parse_config(data: Optional[dict]) -> OperatorConfig:
    """Validate a configuration mapping; errors name the offending field (`pools.cpu.image: ...`)."""
    try:
        return OperatorConfig.model_validate(data or {})
    except ValidationError as e:
        lines = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"{where}: {err['msg']}")
        raise ConfigError("invalid operator configuration: " + "; ".join(lines)) from None


def load_config(path: Optional[str | os.PathLike] = None) -> OperatorConfig:
    """Read the file at `path` (default: $ROBOAUG_OPERATOR_CONFIG); no path at all = defaults."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return parse_config({})
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read operator configuration {p}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"operator configuration {p} is not valid YAML: {e}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"operator configuration {p}: top level must be a mapping, got {type(data).__name__}")
    return parse_config(data)
