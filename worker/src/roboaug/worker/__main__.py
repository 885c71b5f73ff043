"""`python -m roboaug.worker` / `roboaug-worker`: the worker container's command.

    roboaug-worker --spec-file job.json [--workdir DIR] [--processes N]
    roboaug-worker --spec '{"project_id": "...", "dataset_id": "file:///data/ds", ...}'

Spec sources, first found wins: --spec-file, --spec, env ROBOAUG_SPEC_FILE (JSON or YAML, an
AugmentationJob spec; in the cluster the file the operator mounts from the job's ConfigMap). The job id is spec.job_id, else env ROBOAUG_JOB_ID. Scratch space:
--workdir, else env ROBOAUG_WORKDIR, else a temporary folder. Processes: --processes, else env
ROBOAUG_PROCESSES, else min(2, usable CPUs); ROBOAUG_PIN_WORKERS (auto, 0, 1) holds each process to a CPU
(auto: when it owns exactly that many). Encoder preset: ROBOAUG_SVTAV1_PRESET. Frame limit:
ROBOAUG_MAX_FRAMES (the project's limits.max_frames_per_job). Sharded jobs: ROBOAUG_STAGE, ROBOAUG_SHARDS
and JOB_COMPLETION_INDEX (a single stage whose automatic plan wants several shards exits
SHARD_PLAN, its last line the plan: contract.plan_line; ROBOAUG_MAX_SHARDS caps that plan, ROBOAUG_FRAMES_PER_SHARD sets its threshold). Hub token: env HF_TOKEN (never logged: masked in every line). Every line written is a JSON
log line (roboaug.api.joblogs; worker/log.py). Progress goes to
stdout as JSON lines and, with ROBOAUG_CR_NAME / ROBOAUG_CR_NAMESPACE set, to the CR's
status.progress. Every variable, the exit codes and the error line are the worker contract's:
roboaug.api.contract (VARIABLES, WorkerEnv, ExitCode).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import traceback
from pathlib import Path
from typing import Optional, Sequence

from pydantic import ValidationError

from roboaug.api.contract import JOB_ID, SPEC_FILE, ContractError, WorkerEnv, plan_line
from roboaug.api.models import AugmentationJobSpec

from . import log
from .errors import ExitCode, WorkerError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roboaug-worker", description="Augment a robot-learning dataset (one job).")
    p.add_argument("--spec-file", help="path of the job spec (JSON or YAML)")
    p.add_argument("--spec", help="the job spec as a JSON string")
    p.add_argument("--workdir", help="scratch folder (default: env ROBOAUG_WORKDIR, else a temporary folder)")
    p.add_argument("--processes", type=int, help="worker processes (default: env ROBOAUG_PROCESSES, else min(2, usable CPUs))")
    return p


def worker_env(env=os.environ) -> WorkerEnv:
    """The environment through the contract's parser; INVALID_SPEC naming the variable otherwise."""
    try:
        return WorkerEnv.parse(env)
    except ContractError as exc:
        raise WorkerError(ExitCode.INVALID_SPEC, str(exc)) from exc


def load_spec(args: argparse.Namespace, env=os.environ) -> AugmentationJobSpec:
    """The spec from the first source given; INVALID_SPEC naming the source and the rule otherwise.

    `env`: a WorkerEnv already parsed, or an environment mapping to parse."""
    wenv = env if isinstance(env, WorkerEnv) else worker_env(env)
    sources = [
        ("--spec-file", args.spec_file, True),
        ("--spec", args.spec, False),
        (SPEC_FILE.name, wenv.spec_file, True),
    ]
    for name, value, is_file in sources:
        if not value:
            continue
        try:
            text = Path(value).read_text() if is_file else value
        except OSError as exc:
            raise WorkerError(ExitCode.INVALID_SPEC, f"{name}: cannot read {value}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            try:
                import yaml

                data = yaml.safe_load(text)
            except Exception as exc:
                raise WorkerError(ExitCode.INVALID_SPEC, f"{name}: neither JSON nor YAML ({exc})") from exc
        if isinstance(data, dict) and "spec" in data and "kind" in data:
            data = data["spec"]  # a whole AugmentationJob manifest
        try:
            return AugmentationJobSpec.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(x) for x in first["loc"]) or "spec"
            raise WorkerError(ExitCode.INVALID_SPEC, f"{name}: field {loc}: {first['msg']}") from exc
    raise WorkerError(ExitCode.INVALID_SPEC,
                      f"no job spec: pass --spec-file or --spec, or set {SPEC_FILE.name}")


def _processes(args, env: WorkerEnv) -> int:
    from .pipeline import default_processes

    raw = args.processes if args.processes is not None else env.processes
    if raw in (None, ""):
        return default_processes()
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise WorkerError(ExitCode.INVALID_SPEC, f"processes must be an integer >= 1, got {raw!r}")
    return n


def run(argv: Optional[Sequence[str]] = None, env=os.environ) -> int:
    args = _parser().parse_args(argv)
    from . import pipeline
    from .progress import ProgressReporter

    wenv = worker_env(env)
    spec = load_spec(args, wenv)
    job_id = str(spec.job_id) if spec.job_id else wenv.job_id
    if not job_id:
        raise WorkerError(ExitCode.INVALID_SPEC, f"no job id: spec.job_id is unset and {JOB_ID.name} is not set")
    workdir, created = pipeline.make_workdir(args.workdir or wenv.workdir)
    try:
        opts = pipeline.RunOptions(job_id=job_id, workdir=workdir, processes=_processes(args, wenv),
                                   token=wenv.hub_token, max_frames=wenv.max_frames, stage=wenv.stage,
                                   shards=wenv.shards, shard_index=wenv.shard_index,
                                   max_shards=wenv.max_shards, frames_per_shard=wenv.frames_per_shard)
        summary = pipeline.run(spec, opts, ProgressReporter.from_env(wenv))
    finally:
        if created:
            shutil.rmtree(workdir, ignore_errors=True)
    log.emit("info", f"done: {summary.episodes_written} episodes written to {summary.output_dataset_id}",
             event="done", output_dataset_id=summary.output_dataset_id,
             episodes_written=summary.episodes_written, commit=summary.commit)
    return 0


def _fail(exc: WorkerError) -> int:
    """The error line (the contract's text as the `msg` of a JSON line) last on stderr."""
    log.emit("error", exc.line(), stream=sys.stderr, event="error", exit_code=int(exc.code),
             error=exc.code.name.lower())
    return int(exc.code)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .stages import ShardPlanned

    log.setup()
    try:
        code = run(argv)
    except ShardPlanned as planned:  # not a failure: the plan, last on stderr (the termination message)
        msg, fields = plan_line(planned.plan)
        log.emit("info", msg, stream=sys.stderr, event="shard_plan", exit_code=int(ExitCode.SHARD_PLAN), **fields)
        code = int(ExitCode.SHARD_PLAN)
    except WorkerError as exc:
        code = _fail(exc)
    except MemoryError:
        code = _fail(WorkerError(ExitCode.OUT_OF_MEMORY, "out of memory"))
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # a bug: the traceback first (one line, field `exc`), then the error line
        log.emit("error", f"Traceback: unexpected {type(exc).__name__}", stream=sys.stderr,
                 exc=traceback.format_exc())
        code = _fail(WorkerError(ExitCode.INTERNAL, f"unexpected {type(exc).__name__}: {exc}"))
    return code


if __name__ == "__main__":
    sys.exit(main())
