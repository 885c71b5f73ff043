"""The stages of a sharded job (roboaug.api.contract, 'Sharded jobs'): `shard` runs one shard's
units into the staging area, `finalize` merges every shard's result and publishes in one step,
`cleanup` removes the staging area of a failed or cancelled job. The one-pod `single` stage is
pipeline.run; it runs the same units and the same finalize code in one process.

Staging. For a `file://` output the staging area is the hidden folder
`<parent>/.<name>.roboaug-staging-<job_id>/` next to the output (the output folder itself appears
only by the final rename, so no reader sees a partial dataset): `out/` holds the dataset files as
they will be published, `.roboaug/shards/<index>.json` each shard's result. Pods of one job on
different nodes need that folder on shared ReadWriteMany storage. For a Hub output it is the
branch `roboaug-staging-<job_id>` (hub.open_staging/commit_shard/publish/drop_staging): each
shard commits its files and its result, and finalize's one commit on main copies the shard files
server-side and adds the merged metadata.

A shard's result (JSON): {"shard", "shards", "units": [unit indices], "files": [the dataset
files it wrote], "body": the format's result (lerobot.run_units: per-unit records, per-episode
parameters, the originals' camera stats, preview frames, skipped episodes)}. It is written last,
so a shard without one has not finished.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from roboaug.api.contract import SHARD_RESULTS_DIR, ShardPlan, staging_name

from . import lerobot, verify
from .errors import ExitCode, WorkerError
from .files import fresh_dir
from .handler import Augmented, FormatJob
from .plan import Unit, shard_plan, units_of_shard


class ShardPlanned(Exception):
    """A single stage whose automatic plan wants more than one shard: it does no work and exits
    SHARD_PLAN with `plan` in its last line (contract.plan_line)."""

    def __init__(self, plan: ShardPlan):
        super().__init__(f"the job wants {plan.shards} shards")
        self.plan = plan


# -- the format's side: units, running some, finalizing ----------------------------------------
class LeRobotUnits:
    """A LeRobot job's units (lerobot.prepare) and its two steps. `parts` (a Hub source of which
    only meta/ is here, hub.SourceParts): the units come from the metadata and the file list, and
    each step fetches what it reads first, so a pod that only plans fetches nothing more and a
    shard pod only its own units' files."""

    def __init__(self, source: Path, job: FormatJob, parts=None):
        self.source, self.job, self.parts = source, job, parts
        self.prep = lerobot.prepare(source, job, sizes=parts.sizes if parts is not None else None)

    @property
    def units(self) -> list[Unit]:
        return self.prep.units

    def run(self, out: Path, units: list[Unit], *, sharded: bool = True) -> tuple[dict, list[str]]:
        if self.parts is not None:
            self.parts.fetch(lerobot.source_files(self.prep, units, self.job.spec.augment_dataset_mode))
        body = lerobot.run_units(self.prep, out, self.job, units, may_replan=not sharded)
        files = sorted(f for u in body["units"].values() for f in u["files"])
        return body, files

    def finalize(self, out: Path, bodies: list[dict]) -> Augmented:
        if self.parts is not None:
            # every original: copy mode copies them all into the output, both modes reread every
            # episode's rows for its stats, and the card is the source's README
            self.parts.fetch_all()
        return lerobot.finalize(self.prep, self.source, out, self.job, bodies)


class WholeUnits:
    """A format written whole by one call (image datasets): one unit, the whole output."""

    def __init__(self, handler, source: Path, job: FormatJob, frames: int):
        self.handler, self.source, self.job = handler, source, job
        self.units = [Unit(0, (), frames)]

    def run(self, out: Path, units: list[Unit], *, sharded: bool = True) -> tuple[dict, list[str]]:
        if not units:
            return {}, []
        fresh_dir(out)
        done = self.handler.augment(self.source, out, self.job)
        files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        return {"augmented": {"format": done.format, "episodes_written": done.episodes_written,
                              "frames_written": done.frames_written, "timings": done.timings,
                              "episode_cpu": done.episode_cpu}}, files

    def finalize(self, out: Path, bodies: list[dict]) -> Augmented:
        [done] = [b["augmented"] for b in bodies if "augmented" in b]
        return Augmented(**done)


def format_units(fmt: str, handler, source: Path, job: FormatJob, parts=None):
    if fmt == "lerobot":
        return LeRobotUnits(source, job, parts)
    from roboaug.api import policy

    return WholeUnits(handler, source, job, policy.frames_written(handler.source_frames(source), job.spec))


def requested_shards(spec, env_shards: Optional[int]) -> Optional[int]:
    """The shard count fixed for this job: ROBOAUG_SHARDS, else the spec's `shards`; None = automatic."""
    return env_shards if env_shards is not None else getattr(spec, "shards", None)


def check_single(units, spec, env_shards: Optional[int], max_shards: Optional[int] = None,
                 frames_per_shard: Optional[int] = None) -> None:
    """A single stage with no fixed count whose automatic plan (at most `max_shards`, the
    project's limit; one shard per `frames_per_shard`, the pool's) wants several shards:
    ShardPlanned. A cap of 1 runs here, in one pod."""
    requested = requested_shards(spec, env_shards)
    plan = shard_plan(units.units, requested, max_shards, frames_per_shard)
    if requested is None and plan.shards > 1:
        raise ShardPlanned(plan)


# -- shard results ------------------------------------------------------------------------------
def result_path(index: int) -> str:
    return f"{SHARD_RESULTS_DIR}/{int(index)}.json"


def shard_result(index: int, shards: int, units: list[Unit], files: list[str], body: dict) -> dict:
    return {"shard": index, "shards": shards, "units": [u.index for u in units], "files": files, "body": body}


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, separators=(",", ":")))  # key order kept: provenance keeps it
    os.replace(tmp, path)


def check_results(results: list[dict], shards: int) -> None:
    """Every shard's result is there, for this shard count."""
    for i, r in enumerate(results):
        if r.get("shard") != i or r.get("shards") != shards:
            raise WorkerError(ExitCode.INTERNAL, f"shard result {i} is for shard {r.get('shard')} of "
                                                 f"{r.get('shards')}, expected {i} of {shards}")


# -- file:// staging ----------------------------------------------------------------------------
def staging_dir(dest: Path, job_id: str) -> Path:
    """The hidden staging folder of a file:// output `dest`."""
    return dest.parent / f".{dest.name}.{staging_name(job_id)}"


@dataclass
class StageOutcome:
    augmented: Augmented
    files: list[str] = field(default_factory=list)
    commit: Optional[str] = None


def run_shard_local(units_job, dest: Path, job_id: str, index: int, shards: int) -> StageOutcome:
    area = staging_dir(dest, job_id)
    mine = units_of_shard(units_job.units, shards, index)
    body, files = units_job.run(area / "out", mine)
    write_json_atomic(area / result_path(index), shard_result(index, shards, mine, files, body))
    return StageOutcome(_shard_augmented(units_job, mine, body), files)


def read_local_results(area: Path, shards: int) -> list[dict]:
    results = []
    for i in range(shards):
        path = area / result_path(i)
        try:
            results.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise WorkerError(ExitCode.INTERNAL, f"shard {i}'s result {path} is missing or unreadable "
                                                 f"(has every shard finished?): {exc}") from exc
    check_results(results, shards)
    return results


def finalize_local(units_job, dest: Path, job_id: str, shards: int) -> Optional[StageOutcome]:
    """Merge, check, rename into place, remove the staging folder. None when an earlier attempt
    already published (the output exists, its staging output is gone): only the cleanup is left."""
    area = staging_dir(dest, job_id)
    out = area / "out"
    if dest.is_dir() and not out.is_dir():
        shutil.rmtree(area, ignore_errors=True)
        return None
    results = read_local_results(area, shards)
    done = units_job.finalize(out, [r["body"] for r in results])
    verify.check_output(out)
    os.rename(out, dest)
    shutil.rmtree(area, ignore_errors=True)
    return StageOutcome(done)


def cleanup_local(dest: Path, job_id: str) -> None:
    shutil.rmtree(staging_dir(dest, job_id), ignore_errors=True)


# -- Hub staging --------------------------------------------------------------------------------
def run_shard_hub(units_job, repo_id: str, job_id: str, index: int, shards: int, workdir: Path,
                  token: Optional[str], private: bool) -> StageOutcome:
    from . import hub

    branch = hub.open_staging(repo_id, job_id, token, private=private)
    local = fresh_dir(workdir / "output")
    mine = units_of_shard(units_job.units, shards, index)
    body, files = units_job.run(local, mine)
    result = local / result_path(index)
    write_json_atomic(result, shard_result(index, shards, mine, files, body))
    staged = {rel: local / rel for rel in files}
    staged[result_path(index)] = result
    commit = hub.commit_shard(repo_id, branch, index, staged, token)
    shutil.rmtree(local, ignore_errors=True)
    return StageOutcome(_shard_augmented(units_job, mine, body), files, commit)


def finalize_hub(units_job, repo_id: str, job_id: str, shards: int, workdir: Path, token: Optional[str],
                 message: str, tag_of) -> StageOutcome:
    from . import hub

    branch = hub.staging_branch(job_id)
    got = fresh_dir(workdir / "shard-results")
    results = [json.loads(hub.read_staging(repo_id, branch, result_path(i), token, dest=got).read_text())
               for i in range(shards)]
    check_results(results, shards)
    local = fresh_dir(workdir / "output")
    done = units_job.finalize(local, [r["body"] for r in results])
    # the shards' files are not here: the full self-check ran on file:// outputs and in tests
    copies = sorted({f for r in results for f in r["files"]})
    adds = {p.relative_to(local).as_posix(): p for p in sorted(local.rglob("*")) if p.is_file()}
    commit = hub.publish(repo_id, branch, [c for c in copies if c not in adds], adds, message, token, tag=tag_of(local))
    shutil.rmtree(local, ignore_errors=True)
    return StageOutcome(done, copies, commit)


def cleanup_hub(repo_id: str, job_id: str, token: Optional[str]) -> None:
    from . import hub

    hub.drop_staging(repo_id, hub.staging_branch(job_id), token)


def _shard_augmented(units_job, mine: list[Unit], body: dict) -> Augmented:
    if "augmented" in body:
        return Augmented(**body["augmented"])
    return Augmented("shard", sum(len(u.episodes) for u in mine), sum(u.frames for u in mine),
                     timings=body.get("timings", {}), episode_cpu=body.get("episode_cpu", []))
