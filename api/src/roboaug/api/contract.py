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
  here): `PHASE_ORDER`, the worker's phases and the terminal set.

How the attempt number reaches the worker: the operator makes ONE Job per AugmentationJob and the
job controller replaces failed pods. The controller stamps each pod it creates with
`batch.kubernetes.io/job-index-failure-count` (failures before this pod, node disruptions not
counted: the same count as the operator's `status.attempt`) when the Job is Indexed with
`backoffLimitPerIndex`; the operator's Job is (`job_attempt_fields`), and the container reads the
annotation through the downward API as ROBOAUG_ATTEMPT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Mapping, Optional

from roboaug.api import joblogs
from roboaug.api.models.spec import SecretKeyRef
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
MAX_FRAMES = EnvVar("ROBOAUG_MAX_FRAMES", "the project's limits.max_frames_per_job: most frames the job may write "
                    "(policy.frames_written); unset = no limit", True)

VARIABLES: tuple[EnvVar, ...] = (SPEC_FILE, JOB_ID, CR_NAME, CR_NAMESPACE, POD_NAME, ATTEMPT, HF_TOKEN,
                                 WORKDIR, PROCESSES, PIN_WORKERS, SVTAV1_PRESET, MAX_FRAMES)
"""Every variable the worker reads itself."""
RESERVED_ENV: frozenset[str] = frozenset(v.name for v in VARIABLES if v.reserved)
"""Names extra worker env may not set (the chart's values.schema.json repeats them; a test compares)."""
LIBRARY_ENV: dict[str, str] = {
    "HF_HOME": "huggingface_hub's cache, on the scratch volume",
    "TMPDIR": "Python's tempfile, on the writable /tmp volume (the root filesystem is read-only)",
}
"""Variables the operator sets for the libraries the worker uses, not for the worker's own code."""

SPEC_DIR = "/etc/roboaug/spec"
"""Where the worker container mounts the spec's ConfigMap (read-only)."""
SPEC_KEY = "spec.json"
"""The ConfigMap's key, and the file's name under SPEC_DIR."""
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
               extra: Mapping[str, str], max_frames: Optional[int] = None) -> list[dict]:
    """The worker container's `env`: what `WorkerEnv.parse` reads back, then the libraries'
    variables (`library`, names from LIBRARY_ENV), then `extra` sorted by name.

    `max_frames`: the job's project's limits.max_frames_per_job (None: no project or no limit)."""
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
    env += [{"name": k, "value": v} for k, v in library.items()]
    if hub_token is not None:
        env.append({"name": HF_TOKEN.name,
                    "valueFrom": {"secretKeyRef": {"name": hub_token.name, "key": hub_token.key}}})
    env += [{"name": k, "value": v} for k, v in sorted(extra.items())]
    return env


def spec_volume(config_map: str) -> tuple[dict, dict]:
    """The pod volume holding the spec (ConfigMap `config_map`, key SPEC_KEY) and the container's
    read-only mount of it at SPEC_DIR, where SPEC_FILE points."""
    volume = {"name": "spec", "configMap": {"name": config_map, "items": [{"key": SPEC_KEY, "path": SPEC_KEY}],
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

    @classmethod
    def parse(cls, env: Mapping[str, str]) -> "WorkerEnv":
        def get(var: EnvVar) -> Optional[str]:
            value = env.get(var.name)
            return value if value else None

        raw_attempt = (get(ATTEMPT) or "0").strip()
        if not raw_attempt.isdigit():
            raise ContractError(f"{ATTEMPT.name} must be an integer >= 0, got {raw_attempt!r}")
        raw_max_frames = get(MAX_FRAMES)
        return cls(spec_file=get(SPEC_FILE), job_id=get(JOB_ID), cr_name=get(CR_NAME),
                   cr_namespace=get(CR_NAMESPACE), pod_name=get(POD_NAME), attempt=int(raw_attempt),
                   hub_token=get(HF_TOKEN), workdir=get(WORKDIR), processes=get(PROCESSES),
                   max_frames=None if raw_max_frames is None else _max_frames(raw_max_frames))


def _max_frames(raw: str) -> int:
    """MAX_FRAMES's rule, for both directions: an integer >= 1 (the model's bound on the limit)."""
    value = raw.strip()
    if not value.isdigit() or int(value) < 1:
        raise ContractError(f"{MAX_FRAMES.name} must be an integer >= 1, got {raw!r}")
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


__all__ = [
    "ATTEMPT", "CR_NAME", "CR_NAMESPACE", "ERROR_LINE_PREFIX", "HF_TOKEN", "JOB_ID",
    "JOB_INDEX_FAILURE_COUNT", "LIBRARY_ENV", "MAX_FRAMES", "PERMANENT_EXIT_CODES", "PHASE_ORDER", "PIN_WORKERS", "POD_NAME",
    "PROCESSES", "QUEUED_PHASES", "RESERVED_ENV", "SPEC_DIR", "SPEC_FILE", "SPEC_KEY", "SPEC_PATH", "SVTAV1_PRESET", "TERMINAL_PHASES",
    "TERMINAL_STATUSES", "VARIABLES", "WORKDIR", "WORKER_PHASES", "ContractError", "EnvVar", "ErrorLine",
    "ExitCode", "JobStatus", "PhaseName", "WorkerEnv", "error_line", "find_error_line", "is_permanent",
    "job_attempt_fields", "render_env", "spec_volume",
]
