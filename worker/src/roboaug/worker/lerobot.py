"""The LeRobot format (v2.1 and v3.0): plan the output episodes, augment them in the process pool,
write the dataset. `augment` is the one-process entry (see handler.py); a sharded job calls its
three steps from different pods: `prepare` (metadata, plan and units, in every pod), `run_units`
(one shard's units: their episodes augmented and their files written; returns the JSON-able
shard result) and `finalize` (everything else, from all shards' results).

Reading is lerobot_dataset.py, one episode's work episode_task.py, writing lerobot_writer.py.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from . import log, lerobot_writer, provenance
from .dataset_card import read_card_yaml
from .episode_task import CameraSource, EpisodeResult, EpisodeTask, run_episode, run_episode_or_skip
from .errors import ExitCode, WorkerError
from .files import fresh_dir
from .handler import PREVIEW_ROWS, Augmented, FormatJob, check_frame_limit
from .lerobot_dataset import LeRobotDataset, load
from .lerobot_writer import Layout, OutputEpisode, UnitWritten
from .plan import Unit
from .png import decode_png, png_bytes
from .pool import run_tasks
from .video import probe


def default_card_yaml() -> dict:
    """Front matter for a source without a card: what lerobot's own push_to_hub writes."""
    return {
        "license": "apache-2.0", "task_categories": ["robotics"], "tags": ["LeRobot"],
        "configs": [{"config_name": "default", "data_files": "data/*/*.parquet"}],
    }


def declared_frames(info_json: bytes) -> int:
    """`total_frames` of a meta/info.json: the source's size before anything else is read (a Hub
    source's videos are not downloaded yet)."""
    try:
        total = json.loads(info_json).get("total_frames")
    except (ValueError, AttributeError) as exc:
        raise WorkerError(ExitCode.UNSUPPORTED_FORMAT, f"meta/info.json is unreadable: {exc}") from exc
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise WorkerError(ExitCode.UNSUPPORTED_FORMAT, f"meta/info.json: total_frames must be an integer >= 0, got {total!r}")
    return total


def source_frames(source: Path) -> int:
    """The source's frames by its meta/info.json (handler.py)."""
    try:
        return declared_frames((source / "meta" / "info.json").read_bytes())
    except OSError as exc:
        raise WorkerError(ExitCode.UNSUPPORTED_FORMAT, f"meta/info.json is unreadable: {exc}") from exc


def plan(ds: LeRobotDataset, spec) -> list[OutputEpisode]:
    """copy: every source episode once per transform set, appended after the originals;
    inplace: each episode once, the transform sets taken in turn."""
    sets = spec.copies_plan()
    n = len(ds.episodes)
    if spec.augment_dataset_mode == "copy":
        return [OutputEpisode(n + j * n + ep.index, ep, j, ts) for j, ts in enumerate(sets) for ep in ds.episodes]
    return [OutputEpisode(ep.index, ep, 0, sets[ep.index % len(sets)]) for ep in ds.episodes]


def episode_tasks(ds: LeRobotDataset, planned: list[OutputEpisode], spec, seg_dir: Path,
                  bad: dict[int, str] | None = None, only: Optional[set[int]] = None) -> list[EpisodeTask]:
    """One task per planned episode. `bad` given (on_bad_sample: skip): a source episode whose video
    file cannot be probed or whose first image cannot be decoded gets no task and is recorded
    there (source index -> why) instead of failing the job. `only`: tasks of these output
    episodes alone (one shard's); which ones draw the preview is decided over the whole plan."""
    probes: dict[str, Any] = {}
    quantiles = {k: "q01" in ds.episodes[0].stats.get(k, {}) for k in ds.camera_keys} if ds.episodes else {}
    step = max(1, len(planned) // PREVIEW_ROWS)
    preview_at = set(range(0, len(planned), step)[:PREVIEW_ROWS])
    cache: dict = {}
    tasks = []
    for i, oe in enumerate(planned):
        if (bad is not None and oe.source.index in bad) or (only is not None and oe.out_index not in only):
            continue
        cams = []
        rows = ds.read_episode_rows(oe.source, cache) if ds.image_keys else None
        try:
            for cam_idx, key in enumerate(ds.camera_keys):
                if ds.features[key]["dtype"] == "video":
                    rel, start = oe.source.videos[key]
                    if rel not in probes:
                        try:
                            probes[rel] = probe(ds.root / rel)
                        except WorkerError as exc:
                            probes[rel] = exc  # every episode in the file: the same error, probed once
                    p = probes[rel]
                    if isinstance(p, WorkerError):
                        raise p
                    cams.append(CameraSource(key, cam_idx, "video", p.width, p.height, str(ds.root / rel), start, p.codec, p.pix_fmt))
                else:
                    cells = rows.column(key).to_pylist()
                    images = tuple(c["bytes"] for c in cells)
                    # size from the pixels: feature shapes are (h, w, c) or (c, h, w) depending on the writer
                    h, w = decode_png(images[0]).shape[:2]
                    cams.append(CameraSource(key, cam_idx, "image", int(w), int(h), images=images))
        except WorkerError as exc:
            if bad is None or exc.code != ExitCode.CORRUPT_VIDEO:
                raise
            bad[oe.source.index] = f"episode {oe.source.index}: {exc.message}"
            continue
        tasks.append(EpisodeTask(
            oe.out_index, oe.source.index, oe.copy, oe.transforms, oe.source.length, ds.fps, tuple(cams),
            str(seg_dir), spec, quantiles, preview=i in preview_at,
            # the first copy of each episode also measures the original (the output holds it in copy mode)
            source_stats=oe.copy == 0,
        ))
    keys = ds.video_keys
    if keys:  # all files of one key must share codec, pix_fmt, size (invariant 6): refuse mixed sources
        for key in keys:
            seen = {(p.codec, p.pix_fmt, p.width, p.height) for rel, p in probes.items()
                    if f"/{key}/" in f"/{rel}" and not isinstance(p, WorkerError)}
            if len(seen) > 1:
                raise WorkerError(ExitCode.UNSUPPORTED_FORMAT, f"video files of {key!r} differ in codec/pix_fmt/size: {sorted(seen)}")
    return tasks


def _without_bad(planned: list[OutputEpisode], results: dict[int, EpisodeResult], bad: dict[int, str],
                 mode: str, first_index: int) -> tuple[list[OutputEpisode], dict[int, EpisodeResult]]:
    """The plan and results less the copies of undecodable source episodes (on_bad_sample: skip),
    the copies left renumbered in order so that episode indices stay contiguous. Copy mode only:
    inplace mode rewrites every episode and has no decodable pixels to write for a bad one."""
    if mode != "copy":
        first = bad[min(bad)]
        raise WorkerError(ExitCode.CORRUPT_VIDEO,
                          f"{first} (on_bad_sample: skip leaves undecodable episodes out of augmented copies; "
                          f"augment_dataset_mode inplace rewrites every episode, so it cannot skip one)")
    n = first_index  # copies are numbered after the originals
    kept = [oe for oe in planned if oe.source.index not in bad]
    if not kept:
        raise WorkerError(ExitCode.CORRUPT_VIDEO, f"every source episode is undecodable (first: {bad[min(bad)]})")
    new_plan, new_results = [], {}
    for k, oe in enumerate(kept):
        new_plan.append(dataclasses.replace(oe, out_index=n + k))
        new_results[n + k] = dataclasses.replace(results[oe.out_index], out_index=n + k)
    return new_plan, new_results


@dataclass
class Prepared:
    """A LeRobot job decided from the source's metadata: the same in every pod of the job."""

    ds: LeRobotDataset
    planned: list[OutputEpisode]
    layout: Layout

    @property
    def units(self) -> list[Unit]:
        return self.layout.units


def prepare(source: Path, job: FormatJob, sizes: Optional[dict[str, int]] = None) -> Prepared:
    """`sizes`: the source's file list when only its meta/ is on disk (hub.SourceParts): the plan
    and the units need nothing more."""
    ds = load(source, sizes=sizes)
    # again from the episodes themselves, before any video is opened: info.json's total may understate them
    check_frame_limit(job.spec, sum(ep.length for ep in ds.episodes), job.max_frames)
    planned = plan(ds, job.spec)
    return Prepared(ds, planned, lerobot_writer.layout(ds, job.spec.augment_dataset_mode, planned))


def source_files(prep: Prepared, units: Iterable[Unit], mode: str) -> list[str]:
    """The source files `run_units` reads for these units: their episodes' data file and mp4s, and
    in v3.0 copy mode the first data file, whose schema every new data file takes
    (lerobot_writer._unit_v30_copy)."""
    ds = prep.ds
    wanted = {e for u in units for e in u.episodes}
    files = set()
    for oe in prep.planned:
        if oe.out_index in wanted:
            files.add(oe.source.data_file)
            files.update(rel for rel, _ in oe.source.videos.values())
    if files and ds.version == "v3.0" and mode == "copy":
        files.add(ds.data_files()[0])
    return sorted(files)


def _png64(rgb) -> str:
    return base64.b64encode(png_bytes(rgb)).decode("ascii")


def run_units(prep: Prepared, out: Path, job: FormatJob, units: Iterable[Unit], *, may_replan: bool = True) -> dict:
    """Augment the episodes of `units` and write their files under `out`; the shard result (JSON-able):
    per unit what `lerobot_writer.write_meta` needs, per episode its parameters, the original's
    camera stats (first copies) and preview frames (lossless PNG), and the skipped episodes.

    on_bad_sample: skip renumbers the copies after an undecodable source episode, so it changes
    the plan: possible only when this call runs every unit and finalize runs in this process
    (`may_replan`; then `prep` takes the new plan)."""
    ds, spec, reporter = prep.ds, job.spec, job.reporter
    units = list(units)
    whole = {u.index for u in units} == {u.index for u in prep.units}
    replan = whole and may_replan
    skip = getattr(spec.on_bad_sample, "value", spec.on_bad_sample) == "skip"
    bad: Optional[dict[int, str]] = {} if skip else None
    wanted = {e for u in units for e in u.episodes}
    seg_dir = fresh_dir(job.workdir / "segments")
    try:
        tasks = episode_tasks(ds, prep.planned, spec, seg_dir, bad, only=None if whole else wanted)
        frames_total = sum(t.length for t in tasks)
        done = {"episodes": 0, "frames": 0}
        reporter.update("augmenting", episodes_total=len(tasks), frames_total=frames_total, force=True)

        def on_done(task: EpisodeTask, result: EpisodeResult) -> None:
            done["episodes"] += 1
            done["frames"] += task.length
            reporter.update("augmenting", episodes_done=done["episodes"], episodes_total=len(tasks),
                            frames_done=done["frames"], frames_total=frames_total)

        t0 = time.perf_counter()
        results_list = run_tasks(run_episode_or_skip if skip else run_episode, tasks, job.processes, on_done)
        t1 = time.perf_counter()
        for task, r in zip(tasks, results_list):
            if r.skipped is not None:
                bad.setdefault(task.source_index, r.skipped)
        results = {r.out_index: r for r in results_list if r.skipped is None}
        mode = spec.augment_dataset_mode
        if bad:
            if not replan:
                first = bad[min(bad)]
                raise WorkerError(ExitCode.CORRUPT_VIDEO,
                                  f"{first} (on_bad_sample: skip renumbers the copies after an undecodable episode, "
                                  f"which a sharded job fixes before any episode is decoded: run it with shards unset or 1)")
            planned, results = _without_bad(prep.planned, results, bad, mode, len(ds.episodes))
            prep.planned, prep.layout = planned, lerobot_writer.layout(ds, mode, planned)
            units = prep.units
        written = {str(u.index): lerobot_writer.write_unit(ds, out, mode, prep.layout, u, prep.planned, results).to_json()
                   for u in units}
    finally:
        shutil.rmtree(seg_dir, ignore_errors=True)
    key = ds.camera_keys[0]
    episodes = {}
    by_out = {oe.out_index: oe for oe in prep.planned}
    cache: dict = {}
    for out_index, r in results.items():
        rec: dict[str, Any] = {"params": r.params}
        if r.source_stats:  # the task of the original's first copy: the original's stats, here where its rows are
            rec["source_stats"] = lerobot_writer.stats_lists(r.source_stats)
            rows = ds.read_episode_rows(by_out[out_index].source, cache)
            rec["source_numeric"] = lerobot_writer.stats_lists(lerobot_writer.numeric_stats(ds, rows))
        if key in r.preview:
            rec["preview"] = [_png64(r.preview[key][0]), _png64(r.preview[key][1])]
        episodes[str(out_index)] = rec
    timings = {k: sum(r.timings[k] for r in results_list) for k in ("decode", "augment", "encode", "stats", "cpu", "augment_cpu")}
    timings.update(augment_wall=t1 - t0, write_wall=time.perf_counter() - t1)
    skipped = [{"episode_index": i, "error": bad[i]} for i in sorted(bad or {})]
    return {"units": written, "episodes": episodes, "frames": frames_total, "timings": timings,
            "episode_cpu": [r.timings["cpu"] for r in results_list], "warnings": [], "skipped": skipped}


def finalize(prep: Prepared, source: Path, out: Path, job: FormatJob, shard_results: list[dict]) -> Augmented:
    """Write everything but the units' files under `out` from the shards' results (any order)."""
    t0 = time.perf_counter()
    ds, spec, reporter = prep.ds, job.spec, job.reporter
    units: dict[int, dict] = {}
    episodes: dict[int, dict] = {}
    skipped: list[dict] = []
    for body in shard_results:
        units.update({int(k): v for k, v in body["units"].items()})
        episodes.update({int(k): v for k, v in body["episodes"].items()})
        skipped += body.get("skipped", [])
    missing = [u.index for u in prep.units if u.index not in units]
    if missing:
        raise WorkerError(ExitCode.INTERNAL, f"the shards' results lack unit(s) {missing[:10]} of {len(prep.units)}")
    written = [UnitWritten.from_json(units[u.index]) for u in prep.units]
    frames_total = sum(oe.source.length for oe in prep.planned)
    # a skipped original has none: the writer keeps the input's camera stats for it
    source_cameras = {oe.source.index: episodes[oe.out_index].get("source_stats", {})
                      for oe in prep.planned if oe.copy == 0}
    source_numeric = {oe.source.index: episodes[oe.out_index].get("source_numeric")
                      for oe in prep.planned if oe.copy == 0}
    for s in skipped:
        message = f"skipped an undecodable episode: {s['error']}"
        log.emit("warning", message, event="warning", message=message)
        reporter.warn(message)
    if skipped:
        reporter.update("augmenting", episodes_done=len(prep.planned), episodes_total=len(prep.planned),
                        frames_done=frames_total, frames_total=frames_total,
                        message=f"{len(skipped)} undecodable episode(s) skipped", force=True)
    warnings = lerobot_writer.write_meta(ds, out, spec.augment_dataset_mode, prep.planned, prep.layout, written,
                                         source_cameras, source_numeric)
    for message in warnings:  # input inconsistencies: they become warning events of the job
        log.emit("warning", message, event="warning", message=message)
        reporter.warn(message)
    if warnings:
        reporter.update("augmenting", episodes_done=len(prep.planned), episodes_total=len(prep.planned),
                        frames_done=frames_total, frames_total=frames_total,
                        message=f"{len(warnings)} warning(s) about the input", force=True)
    entries = (
        {"episode_index": oe.out_index, "source_episode": oe.source.index, "copy": oe.copy,
         "transforms": list(oe.transforms), "params": episodes[oe.out_index]["params"]}
        for oe in prep.planned
    )
    provenance.write_provenance(out, spec=spec, source=job.source_id, fmt=f"lerobot {ds.version}", entries=entries,
                                skipped=skipped or None)
    pairs = [tuple(decode_png(base64.b64decode(p)) for p in episodes[oe.out_index]["preview"])
             for oe in prep.planned if "preview" in episodes[oe.out_index]]
    provenance.write_preview(out, pairs)
    base = read_card_yaml(source) or default_card_yaml()
    out_eps = len(ds.episodes) + (len(prep.planned) if spec.augment_dataset_mode == "copy" else 0)
    counts = {"episodes": out_eps, "augmented episodes": len(prep.planned)}
    if skipped:
        counts["skipped episodes"] = len(skipped)
    provenance.write_card(out, spec=spec, source=job.source_id, fmt=f"LeRobot {ds.version}", base_yaml=base,
                          counts=counts, cameras=ds.camera_keys)
    timings: dict[str, float] = {}
    cpu: list[float] = []
    for body in shard_results:
        for k, v in body.get("timings", {}).items():
            timings[k] = timings.get(k, 0.0) + v
        cpu += body.get("episode_cpu", [])
    timings["write_wall"] = timings.get("write_wall", 0.0) + time.perf_counter() - t0
    return Augmented(f"lerobot-{ds.version}", len(prep.planned), frames_total, timings=timings, episode_cpu=cpu)


def augment(source: Path, stage: Path, job: FormatJob) -> Augmented:
    """The whole job in this process: every unit, then finalize. The shard result takes the same
    JSON round trip as across pods, so the bytes are those of any sharded run."""
    prep = prepare(source, job)
    body = json.loads(json.dumps(run_units(prep, stage, job, prep.units)))
    return finalize(prep, source, stage, job, [body])
