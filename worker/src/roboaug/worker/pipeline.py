"""One job: resolve the source -> pick its format -> augment into a staging folder -> check ->
publish -> report. The steps live elsewhere: formats in lerobot.py and image_dataset.py (one
entry each, see handler.py), the process pool in pool.py, staging in files.py, the Hub in hub.py.

Nothing partial becomes visible: a failure anywhere removes the staging folder (files.staging_for).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from roboaug.api.models import DatasetRef, OutputVisibility, default_output_dataset_id

from . import image_dataset, lerobot, lerobot_dataset, verify
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


def resolve_source(spec, opts: RunOptions) -> Source:
    """The source on local disk. A Hub source is first pinned to the commit its revision names
    now, and exactly that commit is downloaded; under a frame limit, a LeRobot source's
    meta/info.json is read first, so an oversized source is refused before its videos are fetched."""
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
    root = hub.download(at, opts.workdir / "source", opts.token)
    return Source(root, pinned.sha, pinned.private)


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


def run(spec, opts: RunOptions, reporter: ProgressReporter) -> RunSummary:
    job_id = str(spec.job_id or opts.job_id)
    output_id = spec.output_dataset_id or default_output_dataset_id(spec.dataset_id, job_id)
    reporter.update("downloading", message=f"resolving {spec.dataset_id}", force=True)
    source = resolve_source(spec, opts)
    root = source.root
    if source.revision:
        reporter.update("downloading", message=f"read {spec.dataset_id} at {source.revision}",
                        source_revision=source.revision, force=True)
    handler = FORMATS[detect_format(root)]
    if opts.max_frames is not None:  # before the output is touched
        check_frame_limit(spec, handler.source_frames(root), opts.max_frames)
    stage, dest = staging_for(output_id, root, opts.workdir)
    fresh_dir(stage)
    commit = None
    try:
        done = handler.augment(root, stage, FormatJob(spec, opts.workdir, opts.processes, reporter,
                                                      source_revision=source.revision, max_frames=opts.max_frames))
        verify.check_output(stage)
        if dest is not None:
            os.rename(stage, dest)
        else:
            _report(reporter, done, source_revision=source.revision)
            from . import hub

            commit = hub.upload(stage, output_id, opts.token, f"roboaug: augment {spec.dataset_id} (seed {spec.augment_seed})",
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
