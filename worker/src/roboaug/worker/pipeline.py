"""One job: resolve the source -> pick its format -> augment into a staging folder -> check ->
publish -> report. The steps live elsewhere: formats in lerobot.py and image_dataset.py (one
entry each, see handler.py), the process pool in pool.py, staging in files.py, the Hub in hub.py.

Nothing partial becomes visible: a failure anywhere removes the staging folder (files.staging_for).

Stages (roboaug.api.contract, 'Sharded jobs'; `RunOptions.stage`): `single` runs every unit of
work and finalizes in this process (a LeRobot source whose automatic plan wants several shards
raises stages.ShardPlanned instead); `shard`, `finalize` and `cleanup` are stages.py's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from roboaug.api.contract import Stage
from roboaug.api.models import DatasetRef, OutputVisibility, default_output_dataset_id

from . import image_dataset, lerobot, lerobot_dataset, stages, verify
from .errors import ExitCode, WorkerError
from .files import fresh_dir, make_workdir, staging_for  # noqa: F401  (make_workdir: the CLI's)
from .handler import Augmented, FormatJob, check_frame_limit
from .pool import default_processes
from .progress import ProgressReporter

FORMATS = {"lerobot": lerobot, "image": image_dataset}
"""Format name -> its handler module, with `source_frames` and `augment` (handler.py)."""


@dataclass
class RunOptions:
    job_id: str
    workdir: Path
    processes: int = field(default_factory=default_processes)
    token: Optional[str] = None
    max_frames: Optional[int] = None  # the project's limits.max_frames_per_job (contract.MAX_FRAMES)
    stage: str = Stage.SINGLE  # contract.STAGE
    shards: Optional[int] = None  # contract.SHARDS: None = automatic (single stage only)
    shard_index: Optional[int] = None  # contract.COMPLETION_INDEX (shard stage)
    max_shards: Optional[int] = None  # contract.SHARDS_LIMIT: the automatic plan's cap (the project's)
    frames_per_shard: Optional[int] = None  # contract.FRAMES_PER_SHARD: the automatic plan's threshold (the pool's)


@dataclass
class RunSummary:
    output_dataset_id: str
    format: str
    episodes_written: int
    frames_written: int
    commit: Optional[str] = None
    source_revision: Optional[str] = None
    timings: dict[str, float] = field(default_factory=dict)
    episode_cpu: list[float] = field(default_factory=list)  # CPU seconds of each episode task, task order


@dataclass(frozen=True)
class Source:
    root: Path
    revision: Optional[str] = None  # commit sha of a Hub source; None for file://
    private: bool = True  # a file:// source has no visibility: treated as private
    parts: Optional[object] = None  # hub.SourceParts: a Hub LeRobot source of which only meta/ is here yet


def resolve_source(spec, opts: RunOptions) -> Source:
    """The source on local disk. A Hub source is first pinned to the commit its revision names
    now, and only that commit is read; under a frame limit, a LeRobot source's meta/info.json is
    read first, so an oversized source is refused before its videos are fetched. Of a Hub LeRobot
    source only meta/ is downloaded here (`parts`): the plan and the units need nothing more, and
    each stage fetches the files its work reads (stages.LeRobotUnits). Any other Hub source
    comes whole."""
    ref = DatasetRef.parse(spec.dataset_id)
    if ref.scheme == "file":
        root = Path(ref.path)
        if not root.is_dir():
            raise WorkerError(ExitCode.DATASET_NOT_FOUND, f"dataset {spec.dataset_id} not found (no such directory)")
        return Source(root)
    from . import hub  # only Hub datasets need huggingface_hub

    pinned = hub.resolve(ref, opts.token)
    at = dataclasses.replace(ref, revision=pinned.sha)
    if opts.max_frames is not None:
        info = hub.read_file(at, "meta/info.json", opts.token)
        if info is not None:  # an image dataset has none: its rows are counted once downloaded
            check_frame_limit(spec, lerobot.declared_frames(info), opts.max_frames)
    sizes = hub.file_sizes(at, opts.token)
    if "meta/info.json" not in sizes:  # not LeRobot (lerobot_dataset.is_lerobot): read whole
        return Source(hub.download(at, opts.workdir / "source", opts.token), pinned.sha, pinned.private)
    root = hub.download(at, opts.workdir / "source", opts.token, only=["meta/*"])
    return Source(root, pinned.sha, pinned.private, hub.SourceParts(at, root, opts.token, sizes))


def output_private(spec, source: Source) -> bool:
    """Whether a Hub output the worker creates is private (request field output_visibility)."""
    if spec.output_visibility == OutputVisibility.source.value:
        return source.private
    return spec.output_visibility != OutputVisibility.public.value


def version_tag(stage: Path) -> Optional[str]:
    """The tag a LeRobot output needs on its commit: its `codebase_version` (lerobot picks the
    revision to load by it). Other formats need none."""
    info = stage / "meta" / "info.json"
    if detect_format(stage) != "lerobot" or not info.is_file():
        return None
    return json.loads(info.read_text()).get("codebase_version")


def detect_format(root: Path) -> str:
    return "lerobot" if lerobot_dataset.is_lerobot(root) else "image"


def _report(reporter: ProgressReporter, done: Augmented, **extra) -> None:
    reporter.update("uploading", episodes_done=done.episodes_written, episodes_total=done.episodes_written,
                    frames_done=done.frames_written, frames_total=done.frames_written, force=True, **extra)


def _message(spec) -> str:
    return f"roboaug: augment {spec.dataset_id} (seed {spec.augment_seed})"


def run(spec, opts: RunOptions, reporter: ProgressReporter) -> RunSummary:
    job_id = str(spec.job_id or opts.job_id)
    output_id = spec.output_dataset_id or default_output_dataset_id(spec.dataset_id, job_id)
    if opts.stage == Stage.CLEANUP:  # nothing of the source is needed
        return _cleanup(output_id, job_id, opts, reporter)
    reporter.update("downloading", message=f"resolving {spec.dataset_id}", force=True)
    source = resolve_source(spec, opts)
    root = source.root
    if source.revision:
        reporter.update("downloading", message=f"read {spec.dataset_id} at {source.revision}",
                        source_revision=source.revision, force=True)
    fmt = detect_format(root)
    handler = FORMATS[fmt]
    if opts.max_frames is not None:  # before the output is touched
        check_frame_limit(spec, handler.source_frames(root), opts.max_frames)
    job = FormatJob(spec, opts.workdir, opts.processes, reporter, source_revision=source.revision,
                    max_frames=opts.max_frames)
    if opts.stage == Stage.SINGLE:
        return _single(spec, opts, reporter, source, fmt, handler, job, output_id)
    units = stages.format_units(fmt, handler, root, job, source.parts)
    if opts.stage == Stage.SHARD:
        return _shard(spec, opts, reporter, source, units, output_id, job_id)
    return _finalize(spec, opts, reporter, source, units, output_id, job_id)


def _single(spec, opts, reporter, source, fmt, handler, job, output_id) -> RunSummary:
    root = source.root
    stage, dest = staging_for(output_id, root, opts.workdir)
    units = None
    if fmt == "lerobot":  # the plan first: a job that wants several pods does no work here
        units = stages.format_units(fmt, handler, root, job, source.parts)
        stages.check_single(units, spec, opts.shards, opts.max_shards, opts.frames_per_shard)
    fresh_dir(stage)
    commit = None
    try:
        if units is None:
            done = handler.augment(root, stage, job)
        else:  # every unit, then finalize: the shard result takes the JSON round trip it takes across pods
            body, _ = units.run(stage, units.units, sharded=False)
            done = units.finalize(stage, [json.loads(json.dumps(body))])
        verify.check_output(stage)
        if dest is not None:
            os.rename(stage, dest)
        else:
            _report(reporter, done, source_revision=source.revision)
            from . import hub

            commit = hub.upload(stage, output_id, opts.token, _message(spec),
                                private=output_private(spec, source), tag=version_tag(stage))
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if dest is None:
        shutil.rmtree(stage, ignore_errors=True)
    _report(reporter, done, message="done", finished=True, output_dataset_id=output_id,
            source_revision=source.revision, augmented_dataset_revision=commit)
    return RunSummary(output_id, done.format, done.episodes_written, done.frames_written, commit, source.revision,
                      timings=done.timings, episode_cpu=done.episode_cpu)


def _file_dest(output_id: str) -> Optional[Path]:
    return Path(output_id[len("file://"):]).resolve() if output_id.startswith("file://") else None


def _shard(spec, opts, reporter, source, units, output_id, job_id) -> RunSummary:
    index, shards = opts.shard_index, opts.shards
    if index is None or shards is None:
        raise WorkerError(ExitCode.INVALID_SPEC, "the shard stage needs its shard index and the shard count")
    dest = _file_dest(output_id)
    if dest is not None:
        staging_for(output_id, source.root, opts.workdir)  # the output's checks: no overlap, not there yet
        outcome = stages.run_shard_local(units, dest, job_id, index, shards)
    else:
        outcome = stages.run_shard_hub(units, output_id, job_id, index, shards, opts.workdir, opts.token,
                                       output_private(spec, source))
    done = outcome.augmented
    _report(reporter, done, message=f"shard {index} of {shards} staged", finished=True,
            source_revision=source.revision)
    return RunSummary(output_id, done.format, done.episodes_written, done.frames_written, outcome.commit,
                      source.revision, timings=done.timings, episode_cpu=done.episode_cpu)


def _finalize(spec, opts, reporter, source, units, output_id, job_id) -> RunSummary:
    shards = opts.shards
    if shards is None:
        raise WorkerError(ExitCode.INVALID_SPEC, "the finalize stage needs the shard count")
    dest = _file_dest(output_id)
    if dest is not None:
        if not dest.exists():
            staging_for(output_id, source.root, opts.workdir)  # the output's checks
        outcome = stages.finalize_local(units, dest, job_id, shards)
    else:
        outcome = stages.finalize_hub(units, output_id, job_id, shards, opts.workdir, opts.token, _message(spec),
                                      version_tag)
    if outcome is None:  # an earlier attempt published: nothing left to do but say so
        reporter.update("uploading", message="done (published by an earlier attempt)", finished=True,
                        output_dataset_id=output_id, source_revision=source.revision, force=True)
        return RunSummary(output_id, "", 0, 0, None, source.revision)
    done = outcome.augmented
    _report(reporter, done, message="done", finished=True, output_dataset_id=output_id,
            source_revision=source.revision, augmented_dataset_revision=outcome.commit)
    return RunSummary(output_id, done.format, done.episodes_written, done.frames_written, outcome.commit,
                      source.revision, timings=done.timings, episode_cpu=done.episode_cpu)


def _cleanup(output_id, job_id, opts, reporter) -> RunSummary:
    """Remove the staging area of a failed or cancelled sharded job; publishes nothing."""
    dest = _file_dest(output_id)
    if dest is not None:
        stages.cleanup_local(dest, job_id)
    else:
        stages.cleanup_hub(output_id, job_id, opts.token)
    # no progress report: the job's status already says how it ended
    return RunSummary(output_id, "", 0, 0)
