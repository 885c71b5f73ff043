"""The worker contract: everything the operator and the worker must agree on, written once.

The operator starts the worker as a batch/v1 Job and learns how it ended from its exit code and
last line; the two never import each other, only this module. It holds:

- the worker's environment: every variable's name and meaning (`VARIABLES`), the operator's
  renderer (`render_env`, values -> the container's `env` list) and the worker's parser
  (`WorkerEnv.parse`, environment -> typed values);
- where the spec is: a file (`SPEC_DIR`/`SPEC_KEY`, named by ROBOAUG_SPEC_FILE) that the operator
  mounts read-only from a ConfigMap it creates with the Job, owned by the AugmentationJob. Not an
  environment variable: Linux refuses one string over 128 KiB in a process's environment, and
  the pod would never start;
- exit codes (`ExitCode`) and their classes (`PERMANENT_EXIT_CODES`: the Job fails at once;
  every other code is retried up to backoffLimit);
- the error line `roboaug-worker: error[<code> <name>]: <cause>` (`error_line`) and its parser
  (`find_error_line`);
- the phase vocabulary (defined with the status model in `roboaug.api.models.status`, re-exported
  here): `PHASE_ORDER`, the worker's phases and the terminal set;
- the stages of a sharded job (`STAGE`, `SHARDS`, `COMPLETION_INDEX`, `Stage`) and the plan a
  one-pod run hands back when the job wants more pods (`ExitCode.SHARD_PLAN`, `ShardPlan`,
  `plan_line`, `find_shard_plan`).

Sharded jobs. A job's work is a list of units decided from the source's metadata alone (for a
LeRobot v3.0 source: the output files and the episodes each holds; v2.1: one episode; image
datasets: one source file); a shard is a contiguous run of units balanced by frames, so which
shard does what follows from the metadata and the shard count only, and the output's bytes are
the same for any count. Stages (ROBOAUG_STAGE):
- `single` (default; today's one-pod Job): plan, run every unit, finalize in the same process.
  When the spec leaves `shards` unset and the automatic plan wants more than one shard (the
  source is over the worker's frame threshold), it does no work, writes the plan as its last line
  (`plan_line`: the termination message, read with `find_shard_plan`) and exits SHARD_PLAN; the
  operator then creates the Indexed Job with `completions = plan.shards`.
- `shard`: run the units of shard JOB_COMPLETION_INDEX (set by Kubernetes in Indexed Jobs) out of
  ROBOAUG_SHARDS and write their files plus the shard's result (`.roboaug/shards/<index>.json`:
  per-episode records with their statistics, skipped items, warnings) to the staging area no reader
  sees: the hidden folder `.<name>.roboaug-staging-<job_id>/` beside a `file://` output
  `<parent>/<name>` (the output folder itself appears only by finalize's rename; across nodes the
  folder needs ReadWriteMany storage), the branch `roboaug-staging-<job_id>` of a Hub output.
  A retried shard replaces only its own files.
- `finalize` (the `<cr>-finalize` Job, after every index succeeded; ROBOAUG_SHARDS set): merge the
  shards' results (episodes table, tasks, info.json totals, exact statistics, card, provenance)
  and publish in one step (file://: rename into place; Hub: one commit on main copying the shard
  files server-side, tagged), then remove the staging area.
- `cleanup` (a last worker pod after a failed or cancelled sharded job: the operator holds no Hub
  token): remove the staging area and exit OK; nothing is published.
How the attempt number reaches the worker: the operator makes ONE Job per AugmentationJob and the
job controller replaces failed pods. The controller stamps each pod it creates with
`batch.kubernetes.io/job-index-failure-count` (failures before this pod, node disruptions not
counted: the same count as the operator's `status.attempt`) when the Job is Indexed with
`backoffLimitPerIndex`; the operator's Job is (`job_attempt_fields`), and the container reads the
annotation through the downward API as ROBOAUG_ATTEMPT.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Mapping, Optional

from roboaug.api import joblogs
from roboaug.api.models.spec import MAX_SHARDS, SecretKeyRef
from roboaug.api.models.status import (
    PHASE_ORDER,
    QUEUED_PHASES,
    TERMINAL_PHASES,
    TERMINAL_STATUSES,
    WORKER_PHASES,
    JobStatus,
    PhaseName,
)


class ContractError(ValueError):
    """A value that breaks the contract; the message names the variable and the rule."""


# -- environment ------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvVar:
    """One variable of the worker's environment."""

    name: str
    meaning: str
    reserved: bool
    """Set by the operator: extra worker env (operator `worker_env`, chart `jobs.env`) may not
    override it."""


SPEC_FILE = EnvVar("ROBOAUG_SPEC_FILE", "path of the job spec file (JSON or YAML); in the cluster the "
                   "AugmentationJob spec as JSON, output_dataset_id filled in, mounted from its ConfigMap", True)
JOB_ID = EnvVar("ROBOAUG_JOB_ID", "the job id when the spec has none (kubectl CRs: metadata.uid)", True)
CR_NAME = EnvVar("ROBOAUG_CR_NAME", "the AugmentationJob whose status.progress the worker patches", True)
CR_NAMESPACE = EnvVar("ROBOAUG_CR_NAMESPACE", "its namespace", True)
POD_NAME = EnvVar("ROBOAUG_POD_NAME", "the worker's own pod (downward API), recorded in status.progress.pod", True)
ATTEMPT = EnvVar("ROBOAUG_ATTEMPT", "retry attempt of this pod, 0 = first (downward API), in status.progress.attempt", True)
HF_TOKEN = EnvVar("HF_TOKEN", "the Hub token; only ever from a Secret reference, never a literal", True)
WORKDIR = EnvVar("ROBOAUG_WORKDIR", "scratch folder (default: a temporary folder)", False)
PROCESSES = EnvVar("ROBOAUG_PROCESSES", "episode processes (default: min(2, usable CPUs))", False)
PIN_WORKERS = EnvVar("ROBOAUG_PIN_WORKERS", "auto | 0 | 1: hold each episode process to one CPU", False)
SVTAV1_PRESET = EnvVar("ROBOAUG_SVTAV1_PRESET", "AV1 encoder preset 0-13 (default: lerobot's)", False)
STAGE = EnvVar("ROBOAUG_STAGE", "single (default) | shard | finalize | cleanup: which part of a sharded job "
               "this pod runs (see the module's 'Sharded jobs')", True)
SHARDS = EnvVar("ROBOAUG_SHARDS", "the job's shard count, an integer >= 1; required by the shard and finalize "
                "stages, and in a single stage it fixes the plan (no SHARD_PLAN exit)", True)
COMPLETION_INDEX = EnvVar("JOB_COMPLETION_INDEX", "the shard this pod runs, 0..ROBOAUG_SHARDS-1: set by Kubernetes "
                          "in an Indexed Job's pods (never rendered by the operator; read by the shard stage)", True)
MAX_FRAMES = EnvVar("ROBOAUG_MAX_FRAMES", "the project's limits.max_frames_per_job: most frames the job may write "
                    "(policy.frames_written); unset = no limit", True)

SHARDS_LIMIT = EnvVar("ROBOAUG_MAX_SHARDS", "the project's limits.max_shards: most shards the automatic plan "
                      "may choose (a single stage without ROBOAUG_SHARDS); unset = MAX_SHARDS", True)
DEFAULT_FRAMES_PER_SHARD = 250_000
"""The automatic plan's threshold (augmented frames written) when the pool sets none: one shard up
to this many, else one per this many (worker plan.auto_shards). The one definition: the worker's
plan and the operator's pool setting take it from here."""
FRAMES_PER_SHARD = EnvVar("ROBOAUG_FRAMES_PER_SHARD", "the pool's frames_per_shard: the automatic plan's "
                          f"threshold (an integer >= 1); unset = {DEFAULT_FRAMES_PER_SHARD}", True)

VARIABLES: tuple[EnvVar, ...] = (SPEC_FILE, JOB_ID, CR_NAME, CR_NAMESPACE, POD_NAME, ATTEMPT, HF_TOKEN,
                                 WORKDIR, PROCESSES, PIN_WORKERS, SVTAV1_PRESET, MAX_FRAMES, STAGE, SHARDS,
                                 COMPLETION_INDEX, SHARDS_LIMIT, FRAMES_PER_SHARD)
"""Every variable the worker reads itself."""
RESERVED_ENV: frozenset[str] = frozenset(v.name for v in VARIABLES if v.reserved)
"""Names extra worker env may not set (the chart's values.schema.json repeats them; a test compares)."""
KUBERNETES_ENV: frozenset[str] = frozenset({COMPLETION_INDEX.name})
"""Reserved names that Kubernetes sets, not the operator: `render_env` never writes them."""


class Stage:
    """ROBOAUG_STAGE's values."""

    SINGLE = "single"
    SHARD = "shard"
    FINALIZE = "finalize"
    CLEANUP = "cleanup"
    ALL = (SINGLE, SHARD, FINALIZE, CLEANUP)


STAGING_PREFIX = "roboaug-staging-"
"""The staging area's name before the job id (`staging_name`)."""
SHARD_RESULTS_DIR = ".roboaug/shards"
"""Where each shard's result (`<index>.json`) lies in the staging area; never published."""


def staging_name(job_id: str) -> str:
    """The Hub staging branch of job `job_id`; a file:// output `<parent>/<name>` stages in the
    folder `<parent>/.<name>.<staging_name>` (worker stages.staging_dir)."""
    return f"{STAGING_PREFIX}{job_id}"
LIBRARY_ENV: dict[str, str] = {
    "HF_HOME": "huggingface_hub's cache, on the scratch volume",
    "TMPDIR": "Python's tempfile, on the writable /tmp volume (the root filesystem is read-only)",
}
"""Variables the operator sets for the libraries the worker uses, not for the worker's own code."""

WORKER_SERVICE_ACCOUNT = "roboaug-worker"
"""The ServiceAccount of every worker pod in a namespace. The operator makes it (with a Role that
may patch AugmentationJob status and its RoleBinding) once per namespace (operator/access.py);
the worker policy (api/admission.py `build_worker_policy`) narrows each pod's writes to the one
AugmentationJob its name says it works for. One identity per namespace, not per job: three
objects per job put three more POSTs (and two more rounds) between a CR and its Job."""

JOB_SUFFIXES = ("-worker", "-finalize", "-cleanup")
"""A worker Job is named `<cr-name><suffix>` (operator/jobs.py `job_name`), one suffix per kind of
Job: the single or shard stage, the finalize stage, the cleanup stage. Its pods (all Indexed)
are named `<job-name>-<index>-<5 random>` by the job controller."""

MAX_CR_NAME_LENGTH = 63 - 5 - 1 - len(str(MAX_SHARDS - 1)) - 1 - max(len(s) for s in JOB_SUFFIXES)
"""The longest AugmentationJob name (43): the job controller cuts a pod name's generated part to
58 characters (63 less 5 random ones), and a pod name must keep the whole of its CR's name,
Job suffix and shard index for the worker policy to tell, from the pod name alone, which job it
works for. The gateway's names (`aug-<uuid>`) have 40."""

SPEC_DIR = "/etc/roboaug/spec"
"""Where the worker container mounts the spec (read-only)."""
SPEC_KEY = "spec.json"
"""The spec file's name under SPEC_DIR."""
SPEC_ANNOTATION = "roboaug.dev/spec"
"""The worker pod's annotation holding its spec as JSON; the downward API makes it the file
SPEC_PATH (`spec_volume`)."""
SPEC_ANNOTATION_MAX_BYTES = 192 * 1024
"""The most a spec may weigh as UTF-8 JSON to ride in SPEC_ANNOTATION: a pod's annotations
together hold at most 256 KiB, and the pool's own pod annotations need room beside it. Every spec
of ASCII text is under 64 KiB (models.spec MAX_SPEC_JSON_BYTES); only prompts of many-byte
characters at their longest can pass it, and the operator fails such a job before its Job."""
SPEC_PATH = f"{SPEC_DIR}/{SPEC_KEY}"

JOB_INDEX_FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
"""Pod annotation the job controller writes: failed pods of this index before this one."""


def job_attempt_fields(backoff_limit: int) -> dict:
    """Job spec fields under which the job controller writes JOB_INDEX_FAILURE_COUNT on each pod
    (an Indexed Job of one index with backoffLimitPerIndex; Kubernetes >= 1.29).

    backoffLimitPerIndex equals backoffLimit: with one index both are reached by the same
    failure, and the job controller checks backoffLimit first, so the Job still ends with reason
    BackoffLimitExceeded.
    """
    return {"completionMode": "Indexed", "completions": 1, "parallelism": 1, "backoffLimitPerIndex": backoff_limit}


def _value(var: EnvVar, value: str) -> dict:
    return {"name": var.name, "value": value}


def _field(var: EnvVar, path: str) -> dict:
    return {"name": var.name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def render_env(*, job_id: str, cr_name: str, cr_namespace: str,
               hub_token: Optional[SecretKeyRef], library: Mapping[str, str],
               extra: Mapping[str, str], max_frames: Optional[int] = None,
               stage: str = Stage.SINGLE, shards: Optional[int] = None,
               max_shards: Optional[int] = None, frames_per_shard: Optional[int] = None) -> list[dict]:
    """The worker container's `env`: what `WorkerEnv.parse` reads back, then the libraries'
    variables (`library`, names from LIBRARY_ENV), then `extra` sorted by name.

    `max_frames`: the job's project's limits.max_frames_per_job (None: no project or no limit).
    `stage`/`shards`: a sharded job's stage and shard count (the spec's `shards`, or the plan a
    single stage exited with); a single stage without `shards` renders neither (automatic plan).
    `max_shards`: the project's limits.max_shards, the automatic plan's cap (rendered for a single
    stage only: every other stage runs a count already fixed). `frames_per_shard`: the pool's
    threshold of that plan (the same single stage only).
    JOB_COMPLETION_INDEX is Kubernetes' to set in an Indexed Job's pods."""
    unknown = sorted(set(library) - set(LIBRARY_ENV))
    if unknown:
        raise ContractError(f"library env: {', '.join(unknown)} not declared in LIBRARY_ENV")
    reserved = sorted(set(extra) & RESERVED_ENV)
    if reserved:
        raise ContractError(f"extra env: {', '.join(reserved)} is set by the operator and cannot be overridden")
    env = [
        _value(SPEC_FILE, SPEC_PATH),
        _value(JOB_ID, job_id),
        _value(CR_NAME, cr_name),
        _value(CR_NAMESPACE, cr_namespace),
        _field(POD_NAME, "metadata.name"),
        _field(ATTEMPT, f"metadata.annotations['{JOB_INDEX_FAILURE_COUNT}']"),
    ]
    if max_frames is not None:
        env.append(_value(MAX_FRAMES, str(_max_frames(str(max_frames)))))
    _stage(stage)
    if stage != Stage.SINGLE:
        env.append(_value(STAGE, stage))
    if shards is not None:
        env.append(_value(SHARDS, str(_shards(str(shards)))))
    elif stage in (Stage.SHARD, Stage.FINALIZE):
        raise ContractError(f"{SHARDS.name} is required by stage {stage!r}")
    if max_shards is not None and stage == Stage.SINGLE and shards is None:
        env.append(_value(SHARDS_LIMIT, str(_shards(str(max_shards), SHARDS_LIMIT))))
    if frames_per_shard is not None and stage == Stage.SINGLE and shards is None:
        env.append(_value(FRAMES_PER_SHARD, str(_positive(str(frames_per_shard), FRAMES_PER_SHARD))))
    env += [{"name": k, "value": v} for k, v in library.items()]
    if hub_token is not None:
        env.append({"name": HF_TOKEN.name,
                    "valueFrom": {"secretKeyRef": {"name": hub_token.name, "key": hub_token.key}}})
    env += [{"name": k, "value": v} for k, v in sorted(extra.items())]
    return env


def spec_volume() -> tuple[dict, dict]:
    """The pod volume holding the spec and the container's read-only mount of it at SPEC_DIR,
    where SPEC_FILE points: the pod's own SPEC_ANNOTATION as the file SPEC_KEY (downward API).

    Why the pod's annotation and not a ConfigMap (as before): it comes with the Job in one
    object, so nothing is made before the Job (one POST per job start, not two one after the
    other) and no object of the same name made by someone else can stand in for it. The spec is
    bounded (models.spec: < 64 KiB as JSON, under the 256 KiB of a pod's annotations) and holds
    no secret (the Hub token is a Secret reference)."""
    volume = {"name": "spec", "downwardAPI": {
        "items": [{"path": SPEC_KEY, "fieldRef": {"fieldPath": f"metadata.annotations['{SPEC_ANNOTATION}']"}}],
        "defaultMode": 0o444}}
    return volume, {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True}


@dataclass(frozen=True)
class WorkerEnv:
    """The worker's environment, typed. Unset and empty read the same (None / the default)."""

    spec_file: Optional[str] = None
    job_id: Optional[str] = None
    cr_name: Optional[str] = None
    cr_namespace: Optional[str] = None
    pod_name: Optional[str] = None
    attempt: int = 0
    hub_token: Optional[str] = None
    workdir: Optional[str] = None
    processes: Optional[str] = None
    """Raw: a `--processes` flag overrides it, and the worker checks whichever wins."""
    max_frames: Optional[int] = None
    """The project's limits.max_frames_per_job; None = no limit."""
    stage: str = Stage.SINGLE
    shards: Optional[int] = None
    """ROBOAUG_SHARDS; None = unset (a single stage plans automatically)."""
    shard_index: Optional[int] = None
    """JOB_COMPLETION_INDEX, read in the shard stage only (0..shards-1)."""
    max_shards: Optional[int] = None
    """ROBOAUG_MAX_SHARDS, the automatic plan's cap; None = MAX_SHARDS."""
    frames_per_shard: Optional[int] = None
    """ROBOAUG_FRAMES_PER_SHARD, the automatic plan's threshold; None = DEFAULT_FRAMES_PER_SHARD."""

    @classmethod
    def parse(cls, env: Mapping[str, str]) -> "WorkerEnv":
        def get(var: EnvVar) -> Optional[str]:
            value = env.get(var.name)
            return value if value else None

        raw_attempt = (get(ATTEMPT) or "0").strip()
        if not raw_attempt.isdigit():
            raise ContractError(f"{ATTEMPT.name} must be an integer >= 0, got {raw_attempt!r}")
        raw_max_frames = get(MAX_FRAMES)
        stage = _stage((get(STAGE) or Stage.SINGLE).strip())
        raw_shards = get(SHARDS)
        shards = None if raw_shards is None else _shards(raw_shards)
        if shards is None and stage in (Stage.SHARD, Stage.FINALIZE):
            raise ContractError(f"{SHARDS.name} is required by {STAGE.name}={stage}")
        shard_index = None
        if stage == Stage.SHARD:
            raw_index = (get(COMPLETION_INDEX) or "").strip()
            if not raw_index.isdigit() or int(raw_index) >= shards:
                raise ContractError(f"{COMPLETION_INDEX.name} must be an integer 0..{shards - 1} "
                                    f"({SHARDS.name}={shards}) in {STAGE.name}=shard, got {raw_index!r}")
            shard_index = int(raw_index)
        raw_limit = get(SHARDS_LIMIT)
        max_shards = None if raw_limit is None else _shards(raw_limit, SHARDS_LIMIT)
        raw_per_shard = get(FRAMES_PER_SHARD)
        frames_per_shard = None if raw_per_shard is None else _positive(raw_per_shard, FRAMES_PER_SHARD)
        return cls(spec_file=get(SPEC_FILE), job_id=get(JOB_ID), cr_name=get(CR_NAME),
                   cr_namespace=get(CR_NAMESPACE), pod_name=get(POD_NAME), attempt=int(raw_attempt),
                   hub_token=get(HF_TOKEN), workdir=get(WORKDIR), processes=get(PROCESSES),
                   max_frames=None if raw_max_frames is None else _max_frames(raw_max_frames),
                   stage=stage, shards=shards, shard_index=shard_index, max_shards=max_shards,
                   frames_per_shard=frames_per_shard)


def _max_frames(raw: str) -> int:
    """MAX_FRAMES's rule, for both directions: an integer >= 1 (the model's bound on the limit)."""
    return _positive(raw, MAX_FRAMES)


def _positive(raw: str, var: EnvVar) -> int:
    value = raw.strip()
    if not value.isdigit() or int(value) < 1:
        raise ContractError(f"{var.name} must be an integer >= 1, got {raw!r}")
    return int(value)


def _stage(raw: str) -> str:
    if raw not in Stage.ALL:
        raise ContractError(f"{STAGE.name} must be one of {', '.join(Stage.ALL)}, got {raw!r}")
    return raw


def _shards(raw: str, var: EnvVar = SHARDS) -> int:
    """SHARDS's (and SHARDS_LIMIT's) rule, for both directions: an integer 1..MAX_SHARDS."""
    value = raw.strip()
    if not value.isdigit() or not 1 <= int(value) <= MAX_SHARDS:
        raise ContractError(f"{var.name} must be an integer 1..{MAX_SHARDS}, got {raw!r}")
    return int(value)


# -- exit codes -------------------------------------------------------------------------------
class ExitCode(IntEnum):
    OK = 0
    # permanent
    DATASET_NOT_FOUND = 10
    UNSUPPORTED_FORMAT = 11
    CORRUPT_VIDEO = 12
    NO_CAMERA_FEATURE = 13
    AUTH = 14  # bad or missing token, no write access
    INVALID_SPEC = 15
    # retryable
    NETWORK = 75  # EX_TEMPFAIL: connection errors, timeouts, 5xx / 429 from the Hub
    OUT_OF_MEMORY = 76
    INTERNAL = 70  # EX_SOFTWARE: a bug; retried, since the cause is unknown
    # neither: a plan, not a failure
    SHARD_PLAN = 20  # a single stage whose automatic plan wants N > 1 shards; its last line is `plan_line`


PERMANENT_EXIT_CODES: frozenset[int] = frozenset(
    {
        ExitCode.DATASET_NOT_FOUND,
        ExitCode.UNSUPPORTED_FORMAT,
        ExitCode.CORRUPT_VIDEO,
        ExitCode.NO_CAMERA_FEATURE,
        ExitCode.AUTH,
        ExitCode.INVALID_SPEC,
    }
)
"""Retrying cannot help: the Job's podFailurePolicy fails it at once. Any other non-zero code,
including being OOM-killed (137), counts against backoffLimit."""


def is_permanent(code: Optional[int]) -> bool:
    return code is not None and code in PERMANENT_EXIT_CODES


def is_shard_plan(code: Optional[int]) -> bool:
    """SHARD_PLAN: the Job must end at once without retrying (podFailurePolicy FailJob, like a
    permanent code) but the AugmentationJob has not failed: the operator reads the plan from the
    termination message (`find_shard_plan`) and runs the Indexed Job with that shard count."""
    return code is not None and code == ExitCode.SHARD_PLAN


# -- the error line ---------------------------------------------------------------------------
ERROR_LINE_PREFIX = "roboaug-worker: error"
_ERROR_LINE = re.compile(re.escape(ERROR_LINE_PREFIX) + r"\[(?P<code>\d+) (?P<name>[^\]\s]+)\]: ?(?P<cause>.*)")


@dataclass(frozen=True)
class ErrorLine:
    """`roboaug-worker: error[<code> <name>]: <cause>`, the worker's last line when it fails."""

    code: int
    name: str
    cause: str

    @property
    def text(self) -> str:
        return f"{ERROR_LINE_PREFIX}[{self.code} {self.name}]: {self.cause}"


def error_line(code: ExitCode, cause: str) -> str:
    """The text the worker prints last when it fails (its container's termination message), as
    the `msg` of a JSON log line (`roboaug.api.joblogs.render`)."""
    code = ExitCode(code)
    return ErrorLine(int(code), code.name.lower(), cause).text


def find_error_line(line: str) -> Optional[ErrorLine]:
    """The error line within `line` (a log line may carry a prefix), or None. The worker writes
    it as the `msg` of a JSON log line (`roboaug.api.joblogs`); a plain line is read as well."""
    obj = joblogs.parse(line)
    m = _ERROR_LINE.search(obj["msg"] if obj is not None else line)
    if m is None:
        return None
    return ErrorLine(int(m.group("code")), m.group("name"), m.group("cause"))


# -- the plan line ----------------------------------------------------------------------------
PLAN_LINE_PREFIX = "roboaug-worker: plan"
PLAN_FIELD = "plan"
"""The field of the plan line (a JSON log line) holding `ShardPlan.as_dict()`."""
_PLAN_LINE = re.compile(re.escape(PLAN_LINE_PREFIX) + r" (?P<body>\{.*\})")


@dataclass(frozen=True)
class ShardPlan:
    """What a single stage exiting SHARD_PLAN tells the operator: `shards` to run (>= 2), out of
    `units` units of work holding `frames` output frames."""

    shards: int
    units: int
    frames: int

    def as_dict(self) -> dict:
        return {"shards": self.shards, "units": self.units, "frames": self.frames}


def plan_line(plan: ShardPlan) -> tuple[str, dict]:
    """(msg, fields) of the worker's last line when it exits SHARD_PLAN: written as a JSON log
    line (`roboaug.api.joblogs.render(level, msg, **fields)`), the plan in both the msg and the
    `plan` field, so the container's termination message (FallbackToLogsOnError) carries it."""
    body = plan.as_dict()
    return f"{PLAN_LINE_PREFIX} {json.dumps(body, sort_keys=True)}", {PLAN_FIELD: body}


def find_shard_plan(message: Optional[str]) -> Optional[ShardPlan]:
    """The last plan line within `message` (a termination message or log tail), or None."""
    for line in reversed((message or "").splitlines()):
        obj = joblogs.parse(line)
        body = obj.get(PLAN_FIELD) if obj is not None else None
        if not isinstance(body, dict):
            m = _PLAN_LINE.search(obj["msg"] if obj is not None else line)
            if m is None:
                continue
            try:
                body = json.loads(m.group("body"))
            except ValueError:
                continue
        try:
            values = [body[k] for k in ("shards", "units", "frames")]
        except (KeyError, TypeError):
            continue
        if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values) and values[0] >= 1:
            return ShardPlan(*values)
    return None


__all__ = [
    "ATTEMPT", "CR_NAME", "CR_NAMESPACE", "ERROR_LINE_PREFIX", "HF_TOKEN", "JOB_ID",
    "JOB_INDEX_FAILURE_COUNT", "JOB_SUFFIXES", "LIBRARY_ENV", "MAX_CR_NAME_LENGTH", "MAX_FRAMES", "PERMANENT_EXIT_CODES", "PHASE_ORDER", "PIN_WORKERS", "POD_NAME",
    "PROCESSES", "QUEUED_PHASES", "RESERVED_ENV", "SPEC_ANNOTATION", "SPEC_ANNOTATION_MAX_BYTES", "SPEC_DIR", "SPEC_FILE", "SPEC_KEY", "SPEC_PATH", "SVTAV1_PRESET", "TERMINAL_PHASES",
    "TERMINAL_STATUSES", "VARIABLES", "WORKDIR", "WORKER_PHASES", "WORKER_SERVICE_ACCOUNT", "ContractError", "EnvVar", "ErrorLine",
    "ExitCode", "JobStatus", "PhaseName", "WorkerEnv", "error_line", "find_error_line", "is_permanent",
    "job_attempt_fields", "render_env", "spec_volume",
    "COMPLETION_INDEX", "KUBERNETES_ENV", "MAX_SHARDS", "SHARDS_LIMIT", "FRAMES_PER_SHARD", "DEFAULT_FRAMES_PER_SHARD", "PLAN_FIELD", "PLAN_LINE_PREFIX", "SHARDS",
    "SHARD_RESULTS_DIR", "STAGE", "STAGING_PREFIX", "ShardPlan", "Stage", "find_shard_plan", "is_shard_plan",
    "plan_line", "staging_name",
]
