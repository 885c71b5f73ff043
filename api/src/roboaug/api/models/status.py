"""Status of an AugmentationJob: the status response (AugmentationStatusResponse of the user's API
document, shared/seeds/001_*), field for field.

The same model is the CR's `status` (plus `progress`, `attempt`, `job_name`, `conditions`,
`observedGeneration` and the printer-column fields, which only the cluster side needs) and the
REST GET response. The operator is the only writer of the phase list; the worker writes
`progress` alone. `status.progress` of the CR is the worker's report (`Progress`); `progress` of
the REST answer is `JobProgress`, made from that report by `roboaug.api.progress`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .project import SpecSource
from .spec import AugmentationJobCreateRequest
from .webhook import WebhookDelivery


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"



class PhaseStatus(str, Enum):
    pending = "pending"
    in_progress = "in_progress"
    completed = "completed"
    failed = "failed"


class PhaseName(str, Enum):
    """Phases in the order a successful job passes them; failed / cancelled end a job early."""

    queued = "queued"
    scheduling = "scheduling"
    downloading = "downloading"
    augmenting = "augmenting"
    uploading = "uploading"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


# Everything below derives from the two enums: a phase added to PhaseName lands in the right set.
PHASE_ORDER: tuple[str, ...] = tuple(p.value for p in PhaseName)[: list(PhaseName).index(PhaseName.completed) + 1]
"""The phases of a successful job, in order."""
TERMINAL_PHASES: tuple[str, ...] = (PhaseName.completed.value, PhaseName.failed.value, PhaseName.cancelled.value)
"""A job in one of these phases is finished; its `status` is the same word."""
TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(JobStatus(p) for p in TERMINAL_PHASES)
QUEUED_PHASES: tuple[str, ...] = (PhaseName.queued.value, PhaseName.scheduling.value)
"""Before a worker runs: `status` is `queued`."""
WORKER_PHASES: tuple[str, ...] = tuple(p for p in PHASE_ORDER if p not in QUEUED_PHASES + TERMINAL_PHASES)
"""The phases the worker reports in `status.progress.phase`: `status` is `running`."""


class PhaseEvent(BaseModel):
    """A single event within a phase."""

    model_config = ConfigDict(use_enum_values=True)
    status: Optional[str] = Field(..., description="Event status (for example started, progress, retry, failed).")
    message: Optional[str] = Field(None, description="Human-readable message.")
    error: Optional[str] = Field(None, description="Error text, when the event reports one.")
    timestamp: datetime = Field(description="Event timestamp (UTC, RFC 3339).")
    retry_attempt: int = Field(0, ge=0, description="Retry attempt number (0 = first attempt).")
    data: Optional[dict[str, Any]] = Field(None, description="Structured details (progress counts, exit code, node).")


class Phase(BaseModel):
    """A phase with its events."""

    model_config = ConfigDict(use_enum_values=True)
    name: str = Field(description="Phase name: queued, scheduling, downloading, augmenting, uploading, completed, failed, cancelled.")
    status: PhaseStatus = Field(description="Phase status: pending, in_progress, completed, failed.")
    started_at: Optional[datetime] = Field(None, description="When the phase started.")
    completed_at: Optional[datetime] = Field(None, description="When the phase ended.")
    events: list[PhaseEvent] = Field(default_factory=list, description="Events in this phase.")


class JobProgress(BaseModel):
    """How far the job is, for people and progress bars (the REST GET answer's `progress`); made
    from the worker's last report and its phase times by `roboaug.api.progress.job_progress`,
    the one place percent and ETA are computed."""

    phase: str = Field(description="The worker phase the counts were reported in (downloading, augmenting, "
                                   "uploading); once the job has ended, its final phase.")
    frames_done: int = Field(0, ge=0, description="Frames augmented so far (all copies).")
    frames_total: int = Field(0, ge=0, description="Frames the job augments in all (0 until the worker knows).")
    episodes_done: int = Field(0, ge=0, description="Episodes (image datasets: rows) written so far.")
    episodes_total: int = Field(0, ge=0, description="Episodes (rows) the job writes in all (0 until known).")
    percent: Optional[float] = Field(
        None, ge=0, le=100, description="Percent of the frames augmented (episodes when no frame count is "
                                        "known); 0 while downloading, 100 once completed; null when unknown. "
                                        "Upload time is not counted.")
    eta_seconds: Optional[float] = Field(
        None, ge=0, description="Seconds until the augmenting phase ends, from its rate so far (frames per "
                                "second since the phase began); 0 once completed; null when it cannot be "
                                "estimated (no frame done yet, downloading, uploading, failed, cancelled).")


class AugmentationStatusResponse(BaseModel):
    """Detailed status of an augmentation job (the status response)."""

    model_config = ConfigDict(use_enum_values=True)
    job_id: uuid.UUID = Field(description="Unique job identifier.")
    current_phase: str = Field(description="Current phase name.")
    status: JobStatus = Field(description="Overall job status: queued, running, completed, failed, cancelled.")
    instance_type: Optional[str] = Field(None, description="Instance type of the node the worker ran on.")
    region: Optional[str] = Field(None, description="Region of the node the worker ran on.")
    phases: list[Phase] = Field(default_factory=list, description="Phase history in chronological order.")
    error: Optional[str] = Field(None, description="Why the job failed, when it did.")
    augmented_dataset_id: Optional[str] = Field(None, description="The augmented dataset, once completed.")
    source_revision: Optional[str] = Field(
        None, max_length=64, description="Commit sha of the source dataset the worker read (Hub sources).")
    augmented_dataset_revision: Optional[str] = Field(
        None, max_length=64, description="Commit sha of the augmented dataset on the Hub, once completed.")
    created_at: Optional[datetime] = Field(None, description="When the job was created.")
    effective_spec: Optional[AugmentationJobCreateRequest] = Field(
        None, description="The request the job runs: each field from the request, else the project's "
                          "default, else the built-in default (the spec without its job-only fields).")
    spec_sources: dict[str, SpecSource] = Field(
        default_factory=dict, description="For each field of effective_spec, where its value came from: "
                                          "request, project or default (empty when unknown).")
    progress: Optional[JobProgress] = Field(
        None, description="How far the job is: counts, percent and ETA; null before the worker reports.")


class WorkerPhase(BaseModel):
    """When the worker began and ended one of its phases, by its own clock."""

    # The operator copies these times into the history, so a phase it never saw as current (a
    # fast job, a slow observation) still shows when it ran.

    name: Literal[WORKER_PHASES] = Field(description="Worker phase: downloading, augmenting or uploading.")
    started_at: datetime = Field(description="When the worker began the phase.")
    completed_at: Optional[datetime] = Field(None, description="When the worker ended the phase; unset while it runs.")


# Bounds keep status.progress small: the worker keeps the first MAX_WARNINGS and says how many it dropped.
MAX_WARNINGS = 20
MAX_WARNING_CHARS = 500


class Progress(BaseModel):
    """Worker progress, written by the worker into `status.progress` and nowhere else."""

    model_config = ConfigDict(use_enum_values=True)
    phase: str = Field(description="Worker phase: downloading, augmenting or uploading.")
    episodes_done: int = Field(0, ge=0)
    episodes_total: int = Field(0, ge=0)
    frames_done: int = Field(0, ge=0)
    frames_total: int = Field(0, ge=0)
    message: Optional[str] = Field(None, max_length=1000)
    attempt: int = Field(0, ge=0, description="Retry attempt of the pod that wrote this.")
    pod: Optional[str] = Field(None, max_length=253,
                               description="The worker pod that wrote this; the operator ignores progress "
                                           "of a pod that is no longer the job's current one.")
    updated_at: datetime = Field(description="When the worker wrote this.")
    output_dataset_id: Optional[str] = Field(None, description="Where the worker wrote the result.")
    source_revision: Optional[str] = Field(
        None, max_length=64, description="Commit sha the worker resolved the source revision to and read.")
    augmented_dataset_revision: Optional[str] = Field(
        None, max_length=64, description="Commit sha of the output on the Hub, once uploaded.")
    phases: list[WorkerPhase] = Field(
        default_factory=list, max_length=len(WORKER_PHASES),
        description="Every worker phase this pod entered, in order, with when it began and ended.")
    warnings: list[Annotated[str, Field(max_length=MAX_WARNING_CHARS)]] = Field(
        default_factory=list, max_length=MAX_WARNINGS,
        description=("Problems the worker found in its input and worked around (for example statistics that "
                     "differ from the data), each once, oldest first; the operator turns each into a warning "
                     "event of the job."))

    @field_validator("phases")
    @classmethod
    def _phases_in_order(cls, phases: list[WorkerPhase]) -> list[WorkerPhase]:
        names = [p.name for p in phases]
        if names != sorted(set(names), key=WORKER_PHASES.index):
            raise ValueError(f"phases must be worker phases in the order {list(WORKER_PHASES)}, each once; got {names}")
        return phases


class ConditionType(str, Enum):
    """`status.conditions[].type`. The first four are the job's own (`kubectl wait
    --for=condition=Succeeded`); Reconciling and Stalled are kstatus's (Flux, `kpt live status`,
    cli-utils): Reconciling True while the job has not ended, Stalled True when it failed."""

    accepted = "Accepted"
    running = "Running"
    succeeded = "Succeeded"
    failed = "Failed"
    reconciling = "Reconciling"
    stalled = "Stalled"


class Condition(BaseModel):
    """A Kubernetes condition (metav1.Condition's fields and names). The operator derives all of
    them from the phase history in one pure function (`roboaug.operator.phases.conditions`), so
    they never disagree with `status` and `current_phase`."""

    type: ConditionType = Field(description="Accepted, Running, Succeeded, Failed, Reconciling or Stalled.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
                        description="Why, in one CamelCase word (for example Augmenting, Completed, InvalidSpec).")
    message: str = Field("", max_length=32768, description="Why, for people.")
    lastTransitionTime: datetime = Field(description="When `status` last changed (RFC 3339).")
    observedGeneration: Optional[int] = Field(
        None, ge=0, description="metadata.generation the condition was set for.")


class ShardsStatus(BaseModel):
    """A sharded job's split and how far its shards are (operator-written)."""

    count: int = Field(ge=1, description="Shards of the job's Indexed Job.")
    source: Literal["spec", "auto"] = Field(
        description="'spec': the request's `shards`; 'auto': the plan a one-pod run made from the source's size.")
    parallelism: int = Field(1, ge=1, description="Shard pods running at once (least of shards, max_parallelism, the pool's bound).")
    done: int = Field(0, ge=0, description="Shards that succeeded.")
    failed: int = Field(0, ge=0, description="Shards that failed for good.")
    stage: Literal["shard", "finalize"] = Field("shard", description="Running the shards, or merging and publishing them.")
    frames_done: int = Field(0, ge=0, description="Frames augmented, summed over the shards.")
    frames_total: int = Field(0, ge=0, description="Frames to augment, summed over the shards that reported.")
    cleanup: Optional[Literal["pending", "started", "retrying", "done", "failed"]] = Field(
        None, description="A failed or cancelled sharded job's staging area: its cleanup Job is to start, started, "
                          "failed and is to start again, succeeded (the staging area is gone), or failed every "
                          "attempt (the staging area is left; cleanup_error says why).")
    cleanup_attempts: int = Field(0, ge=0, description="Cleanup Jobs started (each with the pool's pod retries).")
    cleanup_job: Optional[str] = Field(None, max_length=64, description="uid of the cleanup Job last counted.")
    cleanup_error: Optional[str] = Field(None, max_length=2048, description="Why the last cleanup attempt failed.")


class AugmentationJobStatus(AugmentationStatusResponse):
    """`status` of an AugmentationJob CR. Every field is optional until the operator first writes it."""

    job_id: Optional[uuid.UUID] = Field(None, description="Unique job identifier.")
    current_phase: Optional[str] = Field(None, description="Current phase name.")
    status: Optional[JobStatus] = Field(None, description="Overall job status.")
    # The CR keeps the worker's own report under `progress`; the REST answer's `progress` is made from it.
    progress: Optional[Progress] = Field(None, description="Latest worker progress (written by the worker).")  # type: ignore[assignment]
    attempt: int = Field(0, ge=0, description="Current retry attempt (0 = first).")
    job_name: Optional[str] = Field(None, description="The batch/v1 Job running the worker.")
    shards: Optional[ShardsStatus] = Field(None, description="A sharded job's split and its shards' progress.")
    # camelCase, unlike the fields above: kubectl wait and kstatus read exactly these names.
    observedGeneration: Optional[int] = Field(
        None, ge=0, description="metadata.generation the operator last acted on.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Accepted, Running, Succeeded, Failed (and kstatus's Reconciling, "
                                          "Stalled), derived from the phase history.")
    # For `kubectl get` columns (JSONPath only, nothing computed at read time).
    progress_percent: Optional[int] = Field(
        None, ge=0, le=100, description="Percent of the frames augmented, whole percent (printer column).")
    started_at: Optional[datetime] = Field(None, description="When the worker started (its first phase).")
    duration: Optional[str] = Field(
        None, max_length=32, description="From the worker's start (else creation) to the end, once the job "
                                         "has ended, as kubectl shows durations (for example 3m12s).")
    webhook: Optional[WebhookDelivery] = Field(
        None, description="The signed POST to spec notify_url announcing the terminal state (operator).")


class AugmentationJobCreateResponse(BaseModel):
    """Response after creating an augmentation job."""

    job_id: uuid.UUID = Field(description="Unique job identifier.")
    status: JobStatus = Field(JobStatus.queued, description="Always 'queued' on creation.")
    message: str = Field(description="What happened, and any request fields that were ignored.")


class ErrorResponse(BaseModel):
    """Standard error response."""

    detail: str = Field(description="Error message describing what went wrong.")
