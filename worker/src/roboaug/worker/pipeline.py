"""resolve -> download -> augment -> write -> check -> publish, as plain functions.

Nothing partial becomes visible: the output is assembled in a staging folder (a hidden sibling
of a `file://` destination, renamed into place once checked; for the Hub, a folder under the
workdir uploaded in one commit) and removed if anything fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from roboaug.api.models import DatasetRef, default_output_dataset_id

from . import image_dataset as imgds
from . import lerobot, lerobot_writer, provenance, verify
from .episode_task import CameraSource, EpisodeResult, EpisodeTask, decode_png, run_episode
from .errors import ExitCode, WorkerError
from .progress import ProgressReporter
from .video import probe

PREVIEW_ROWS = 4
IMAGE_ROWS_PER_TASK = 256


def default_processes() -> int:
    """min(2, the CPUs this process may run on): a cpuset smaller than the machine counts, not
    the machine (os.cpu_count)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(2, usable))


@dataclass
class RunOptions:
    job_id: str
    workdir: Path
    processes: int = field(default_factory=default_processes)
    token: Optional[str] = None


@dataclass
class RunSummary:
    output_dataset_id: str
    format: str
    episodes_written: int
    frames_written: int
    commit: Optional[str] = None
    timings: dict[str, float] = field(default_factory=dict)
    episode_cpu: list[float] = field(default_factory=list)  # CPU seconds of each episode task, task order


# -- parallel map ------------------------------------------------------------------------------
def _single_threaded_kernels() -> None:
    """One OpenCV thread: parallelism comes from processes (one episode each), and OpenCV's own
    pool in each of them would only oversubscribe the cores the others use."""
    import cv2

    cv2.setNumThreads(1)


def worker_cores(processes: int) -> Optional[list[int]]:
    """The CPU each pool worker is held to, or None to let the kernel place them.

    ROBOAUG_PIN_WORKERS: "auto" (default) pins when this process may run on exactly as many CPUs
    as there are workers (an exclusive cpuset, such as the kubelet's static CPU manager gives a
    Guaranteed pod, or a small machine); "1" always pins (round robin); "0" never. A worker
    held to one CPU keeps its encoder's threads there too: measured on 2 cores, 2 pinned processes
    did 4-13 % more frames per second than unpinned ones, with 1-9 % less CPU
    (bench/bench_pipeline.py; the gain is largest at small frames). On a shared node, whose CPUs
    other pods also use, pinning would tie a worker to a CPU someone else may be busy on.
    """
    mode = os.environ.get("ROBOAUG_PIN_WORKERS", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        raise WorkerError(ExitCode.INVALID_SPEC, f"ROBOAUG_PIN_WORKERS must be auto, 0 or 1, got {mode!r}")
    if processes <= 1 or mode == "0" or not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "auto" and len(cpus) != processes:
        return None
    return [cpus[k % len(cpus)] for k in range(processes)]


def _init_pool_worker(fresh_interpreter: bool, cores) -> None:
    if fresh_interpreter:  # spawn: nothing inherited from the parent
        _single_threaded_kernels()
    if cores is not None:
        core = cores.get()
        try:
            os.sched_setaffinity(0, {core})
        except OSError:  # the cpuset changed under us: a placement hint is not worth a failed job
            pass


def run_tasks(fn: Callable, tasks: Sequence, processes: int, on_done: Callable[[Any, Any], None]) -> list:
    """fn over tasks, results in task order whatever the completion order (so the output does
    not depend on `processes`); `on_done(task, result)` runs in this process as each finishes."""
    results: list = [None] * len(tasks)
    # Set here, before any fork, never first in a forked child: a child that resizes OpenCV's
    # pool while the parent's pool threads were live deadlocks (pthread_cond_destroy on a
    # condition variable whose waiters exist only in the parent). Forked workers inherit it.
    _single_threaded_kernels()
    cores = worker_cores(processes)  # read first: a bad setting is refused even when unused
    if processes <= 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            results[i] = fn(task)
            on_done(task, results[i])
        return results
    # fork where there is one (no codec is open here yet, and it saves each worker the imports);
    # spawn elsewhere
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    ctx = get_context(method)
    queue = None
    if cores:
        queue = ctx.SimpleQueue()
        for core in cores:
            queue.put(core)
    with ProcessPoolExecutor(max_workers=processes, mp_context=ctx, initializer=_init_pool_worker,
                             initargs=(method == "spawn", queue)) as pool:
        futures = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
        try:
            for fut in as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                on_done(tasks[i], results[i])
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return results


# -- resolve ---------------------------------------------------------------------------------
def resolve_source(spec, opts: RunOptions) -> Path:
    ref = DatasetRef.parse(spec.dataset_id)
    if ref.scheme == "file":
        root = Path(ref.path)
        if not root.is_dir():
            raise WorkerError(ExitCode.DATASET_NOT_FOUND, f"dataset {spec.dataset_id} not found (no such directory)")
        return root
    from . import hub  # the Hub engineer's client; only needed for Hub datasets

    return hub.download(ref, opts.workdir / "source", opts.token)


def detect_format(root: Path) -> str:
    return "lerobot" if (root / "meta" / "info.json").is_file() else "image"


# -- LeRobot ---------------------------------------------------------------------------------
def lerobot_plan(ds: lerobot.LeRobotDataset, spec) -> list[lerobot_writer.OutputEpisode]:
    sets = spec.copies_plan()
    n = len(ds.episodes)
    if spec.augment_dataset_mode == "copy":
        return [
            lerobot_writer.OutputEpisode(n + j * n + ep.index, ep, j, ts)
            for j, ts in enumerate(sets)
            for ep in ds.episodes
        ]
    return [lerobot_writer.OutputEpisode(ep.index, ep, 0, sets[ep.index % len(sets)]) for ep in ds.episodes]


def lerobot_tasks(ds, plan, spec, seg_dir: Path) -> list[EpisodeTask]:
    probes: dict[str, Any] = {}
    quantiles = {k: "q01" in ds.episodes[0].stats.get(k, {}) for k in ds.camera_keys} if ds.episodes else {}
    step = max(1, len(plan) // PREVIEW_ROWS)
    preview_at = set(range(0, len(plan), step)[:PREVIEW_ROWS])
    cache: dict = {}
    tasks = []
    for i, oe in enumerate(plan):
        cams = []
        rows = ds.read_episode_rows(oe.source, cache) if ds.image_keys else None
        for cam_idx, key in enumerate(ds.camera_keys):
            if ds.features[key]["dtype"] == "video":
                rel, start = oe.source.videos[key]
                if rel not in probes:
                    probes[rel] = probe(ds.root / rel)
                p = probes[rel]
                cams.append(CameraSource(key, cam_idx, "video", p.width, p.height, str(ds.root / rel), start, p.codec, p.pix_fmt))
            else:
                cells = rows.column(key).to_pylist()
                images = tuple(c["bytes"] for c in cells)
                # size from the pixels: feature shapes are (h, w, c) or (c, h, w) depending on the writer
                h, w = decode_png(images[0]).shape[:2]
                cams.append(CameraSource(key, cam_idx, "image", int(w), int(h), images=images))
        tasks.append(EpisodeTask(
            oe.out_index, oe.source.index, oe.copy, oe.transforms, oe.source.length, ds.fps, tuple(cams),
            str(seg_dir), spec, quantiles, preview=i in preview_at,
        ))
    keys = ds.video_keys
    if keys:  # all files of one key must share codec, pix_fmt, size (invariant 6): refuse mixed sources
        for key in keys:
            seen = {(p.codec, p.pix_fmt, p.width, p.height) for rel, p in probes.items() if f"/{key}/" in f"/{rel}"}
            if len(seen) > 1:
                raise WorkerError(ExitCode.UNSUPPORTED_FORMAT, f"video files of {key!r} differ in codec/pix_fmt/size: {sorted(seen)}")
    return tasks


def augment_lerobot(root: Path, stage: Path, spec, opts: RunOptions, reporter: ProgressReporter, source_id: str) -> RunSummary:
    ds = lerobot.load(root)
    plan = lerobot_plan(ds, spec)
    seg_dir = opts.workdir / "segments"
    shutil.rmtree(seg_dir, ignore_errors=True)
    seg_dir.mkdir(parents=True)
    tasks = lerobot_tasks(ds, plan, spec, seg_dir)
    frames_total = sum(t.length for t in tasks)
    done = {"episodes": 0, "frames": 0}
    reporter.update("augmenting", episodes_total=len(tasks), frames_total=frames_total, force=True)

    def on_done(task: EpisodeTask, result: EpisodeResult) -> None:
        done["episodes"] += 1
        done["frames"] += task.length
        reporter.update("augmenting", episodes_done=done["episodes"], episodes_total=len(tasks),
                        frames_done=done["frames"], frames_total=frames_total)

    t0 = time.perf_counter()
    results_list = run_tasks(run_episode, tasks, opts.processes, on_done)
    t1 = time.perf_counter()
    results = {r.out_index: r for r in results_list}
    lerobot_writer.write(ds, stage, spec.augment_dataset_mode, plan, results)
    entries = [
        {"episode_index": oe.out_index, "source_episode": oe.source.index, "copy": oe.copy,
         "transforms": list(oe.transforms), "params": results[oe.out_index].params}
        for oe in plan
    ]
    provenance.write_provenance(stage, spec=spec, source=source_id, fmt=f"lerobot {ds.version}", entries=entries)
    key = ds.camera_keys[0]
    pairs = [r.preview[key] for r in results_list if key in r.preview]
    provenance.write_preview(stage, pairs)
    base = imgds.read_card_yaml(root) or {
        "license": "apache-2.0", "task_categories": ["robotics"], "tags": ["LeRobot"],
        "configs": [{"config_name": "default", "data_files": "data/*/*.parquet"}],
    }
    out_eps = len(ds.episodes) + (len(plan) if spec.augment_dataset_mode == "copy" else 0)
    provenance.write_card(stage, spec=spec, source=source_id, fmt=f"LeRobot {ds.version}", base_yaml=base,
                          counts={"episodes": out_eps, "augmented episodes": len(plan)}, cameras=ds.camera_keys)
    shutil.rmtree(seg_dir, ignore_errors=True)
    timings = {k: sum(r.timings[k] for r in results_list) for k in ("decode", "augment", "encode", "stats", "cpu", "augment_cpu")}
    timings.update(augment_wall=t1 - t0, write_wall=time.perf_counter() - t1)
    return RunSummary("", f"lerobot-{ds.version}", len(plan), frames_total, timings=timings,
                      episode_cpu=[r.timings["cpu"] for r in results_list])


# -- image datasets --------------------------------------------------------------------------
def augment_images(root: Path, stage: Path, spec, opts: RunOptions, reporter: ProgressReporter, source_id: str) -> RunSummary:
    ds = imgds.load(root)
    sets = spec.copies_plan()
    copy_mode = spec.augment_dataset_mode == "copy"
    tasks: list[imgds.ImageTask] = []
    layout: list[tuple[str, list[int]]] = []  # per output file: source file and its row sources
    offset = 0
    for rel, n_rows in zip(ds.files, ds.rows_per_file):
        jobs = []
        if copy_mode:
            for j, ts in enumerate(sets):
                jobs += [imgds.RowJob(r, offset + r, j, ts) for r in range(n_rows)]
        else:
            jobs = [imgds.RowJob(r, offset + r, 0, sets[(offset + r) % len(sets)]) for r in range(n_rows)]
        layout.append((rel, [j.row_in_file for j in jobs]))
        for start in range(0, len(jobs), IMAGE_ROWS_PER_TASK):
            tasks.append(imgds.ImageTask(len(tasks), str(root / rel), tuple(ds.columns),
                                         tuple(jobs[start:start + IMAGE_ROWS_PER_TASK]), spec,
                                         preview=PREVIEW_ROWS if not tasks else 0))
        offset += n_rows
    total = sum(len(t.rows) for t in tasks)
    done = {"rows": 0}
    reporter.update("augmenting", episodes_total=total, frames_total=total, force=True)

    def on_done(task, result) -> None:
        done["rows"] += len(task.rows)
        reporter.update("augmenting", episodes_done=done["rows"], episodes_total=total,
                        frames_done=done["rows"], frames_total=total)

    results = run_tasks(imgds.run_image_task, tasks, opts.processes, on_done)
    # write: originals kept (copy) or replaced (inplace), results consumed in task order
    if copy_mode:
        lerobot_writer._copy_tree(root, stage)
    else:
        lerobot_writer._copy_tree(root, stage, skip=ds.files)
    entries = []
    by_file: dict[str, list] = {}
    for task, res in zip(tasks, results):
        by_file.setdefault(task.path, []).append((task, res))
    for rel, row_sources in layout:
        images: dict[str, list[bytes]] = {c: [] for c in ds.columns}
        jobs, params = [], []
        for task, res in by_file.get(str(root / rel), []):
            jobs.extend(task.rows)
            params.extend(res.params)
            for c in ds.columns:
                images[c].extend(res.images[c])
        out_rel = imgds.augmented_name(rel) if copy_mode else rel
        imgds.write_table(ds, rel, stage / out_rel, row_sources, images)
        for i, (job, p) in enumerate(zip(jobs, params)):
            entries.append({"file": out_rel, "row": i, "source_file": rel, "source_row": job.row_in_file,
                            "copy": job.copy, "transforms": list(job.transforms), "params": p})
    provenance.write_provenance(stage, spec=spec, source=source_id, fmt="datasets-image", entries=entries)
    provenance.write_preview(stage, [p for r in results for p in r.preview][:PREVIEW_ROWS])
    card = imgds.read_card_yaml(root)
    if copy_mode:
        card = imgds.scale_split_counts(card, 1 + len(sets))
        card = imgds.extend_data_files(card, {rel: imgds.augmented_name(rel) for rel in ds.files})
    provenance.write_card(stage, spec=spec, source=source_id, fmt="datasets image dataset", base_yaml=card,
                          counts={"rows": ds.total_rows * ((1 + len(sets)) if copy_mode else 1), "augmented rows": total},
                          cameras=ds.columns)
    return RunSummary("", "image", total, total)


# -- the whole run ---------------------------------------------------------------------------
def _staging_for(output_id: str, source_root: Path, opts: RunOptions) -> tuple[Path, Optional[Path]]:
    """(staging folder, final folder for file:// outputs or None for the Hub)."""
    if output_id.startswith("file://"):
        dest = Path(output_id[len("file://"):]).resolve()
        src = source_root.resolve()
        if dest == src or src in dest.parents or dest in src.parents:
            raise WorkerError(ExitCode.INVALID_SPEC, f"output_dataset_id {output_id} overlaps the source dataset")
        if dest.exists():
            raise WorkerError(ExitCode.INVALID_SPEC, f"output_dataset_id {output_id} already exists; refusing to overwrite")
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest.parent / f".{dest.name}.roboaug-partial", dest
    return opts.workdir / "output", None


def run(spec, opts: RunOptions, reporter: ProgressReporter) -> RunSummary:
    job_id = str(spec.job_id or opts.job_id)
    output_id = spec.output_dataset_id or default_output_dataset_id(spec.dataset_id, job_id)
    reporter.update("downloading", message=f"resolving {spec.dataset_id}", force=True)
    root = resolve_source(spec, opts)
    stage, dest = _staging_for(output_id, root, opts)
    shutil.rmtree(stage, ignore_errors=True)  # leftovers of an earlier, killed attempt
    stage.mkdir(parents=True)
    try:
        fmt = detect_format(root)
        augment = augment_lerobot if fmt == "lerobot" else augment_images
        summary = augment(root, stage, spec, opts, reporter, spec.dataset_id)
        verify.check_output(stage)
        if dest is not None:
            os.rename(stage, dest)
        else:
            reporter.update("uploading", episodes_done=summary.episodes_written, episodes_total=summary.episodes_written,
                            frames_done=summary.frames_written, frames_total=summary.frames_written, force=True)
            from . import hub

            summary.commit = hub.upload(stage, output_id, opts.token, f"roboaug: augment {spec.dataset_id} (seed {spec.augment_seed})")
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if dest is None:
        shutil.rmtree(stage, ignore_errors=True)
    summary.output_dataset_id = output_id
    reporter.update("uploading", episodes_done=summary.episodes_written, episodes_total=summary.episodes_written,
                    frames_done=summary.frames_written, frames_total=summary.frames_written,
                    message="done", output_dataset_id=output_id, force=True)
    return summary


def make_workdir(path: Optional[str]) -> tuple[Path, bool]:
    """(workdir, created here and to be removed at the end)."""
    if path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        return p, False
    return Path(tempfile.mkdtemp(prefix="roboaug-")), True
