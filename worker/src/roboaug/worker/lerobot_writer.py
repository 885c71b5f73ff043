"""Writing the augmented LeRobot dataset (v2.1 or v3.0, the version that was read).

copy mode: every source file is copied byte for byte and the augmented episodes are appended in
new files that sort after the existing ones; inplace mode: same episodes, indices and totals,
every video file re-encoded with the same frame count and timing.
Either way the per-episode stats of every episode the output holds are recomputed from the data
(episode_stats.py; originals too, their episode rows rewritten), every video we write gets its
from/to timestamps from where its frames sit, and info.json's video fields describe the files
written. `write` returns the input inconsistencies found on the way, as warning messages.
The invariants are the ones listed in shared/LEROBOT_FORMAT.md.

Writing is split along units of work (`layout`): a unit is the smallest set of output episodes
whose data and video files hold no other episode, decided from the source's metadata alone
(v3.0 copy: a run of new episodes sharing one new data file and one new mp4 per camera, cut by
the files' size limits estimated from the source's file sizes, and by `UNIT_FRAMES`; v3.0 in
place: the episodes sharing source files; v2.1: one episode). `write_unit` writes one unit's
files and returns its records (per-episode stats, where its frames sit in its mp4s, the videos'
fields); `write_meta` writes everything else from the records of all units (originals, episode
tables, info.json, stats.json). Both depend only on the layout and the records, never on which
process ran which unit, so a job split into any number of shards writes the same bytes.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .episode_stats import StatsWarnings, episode_numeric_stats
from .episode_task import EpisodeResult
from .files import copy_tree, write_json
from .lerobot_dataset import Episode, LeRobotDataset, video_feature_info
from .plan import Unit
from .stats import aggregate
from .video import GRID_TOLERANCE_S, concat_segments, probe

MB = 1024 * 1024
UNIT_FRAMES = 10_000
"""The most frames of new episodes one v3.0 copy-mode unit (its data file and mp4s) holds, so a
source stored in a few large files still splits into units that shards can share. A dataset
under it is written exactly as before units existed: one new file per kind."""


@dataclass(frozen=True)
class OutputEpisode:
    """What the plan (lerobot.plan) decided for one output episode; the results hold what it computed."""

    out_index: int
    source: Episode
    copy: int
    transforms: tuple[str, ...]


# -- small helpers ----------------------------------------------------------------------------
def _jsonl_line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def stats_lists(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list]]:
    return {f: {k: np.asarray(v).tolist() for k, v in s.items()} for f, s in stats.items()}


def _next_index(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file + 1 >= chunks_size else (chunk, file + 1)


def _replace_image_columns(table: pa.Table, images: dict[str, list[bytes]]) -> pa.Table:
    for key, pngs in images.items():
        col_idx = table.schema.get_field_index(key)
        old = table.column(key).to_pylist()
        new = [{"bytes": b, "path": (o or {}).get("path") if isinstance(o, dict) else None} for b, o in zip(pngs, old)]
        table = table.set_column(col_idx, table.schema.field(col_idx), pa.array(new, type=table.schema.field(col_idx).type))
    return table


def _set_int_column(table: pa.Table, name: str, values: np.ndarray) -> pa.Table:
    idx = table.schema.get_field_index(name)
    field = table.schema.field(idx)
    return table.set_column(idx, field, pa.array(values, type=field.type))


def quantile_flags(ds: LeRobotDataset) -> dict[str, bool]:
    """Whether each feature's stats carry quantiles: as the input's do (lerobot >= 0.4 writes
    them, v2.1 datasets do not); a feature without input stats follows the others."""
    given = ds.episodes[0].stats if ds.episodes else {}
    default = any("q01" in s for s in given.values())
    return {k: ("q01" in given[k]) if k in given else default for k in ds.features}


class _Stats:
    """The recomputed per-episode stats of one write, and the warnings found on the way."""

    def __init__(self, ds: LeRobotDataset, source_cameras: dict[int, dict[str, dict[str, np.ndarray]]],
                 source_numeric: Optional[dict[int, dict[str, dict[str, np.ndarray]]]] = None):
        self.ds, self.quantiles, self.warnings = ds, quantile_flags(ds), StatsWarnings()
        # camera stats of each original episode: measured by the task of its first copy; its
        # numeric stats, where given, computed from its rows by the shard that ran that task
        self.source_cameras = source_cameras
        self.source_numeric = source_numeric or {}

    def numeric(self, table: pa.Table) -> dict[str, dict[str, np.ndarray]]:
        return episode_numeric_stats(self.ds.features, table, self.quantiles)

    def original(self, ep: Episode, rows: Callable[[], pa.Table]) -> dict[str, dict[str, np.ndarray]]:
        """Stats of an original episode from its rows (`rows()`, read only when no shard computed
        them) and decoded frames, checked against the input's."""
        # an episode left out as undecodable (on_bad_sample: skip) keeps the input's camera stats
        cameras = self.source_cameras.get(ep.index) or {
            k: {s: np.asarray(v) for s, v in ep.stats[k].items()} for k in self.ds.camera_keys if k in ep.stats}
        numeric = self.source_numeric.get(ep.index)
        stats = {**(numeric if numeric is not None else self.numeric(rows())), **cameras}
        self.warnings.check(ep.index, ep.stats, stats, set(self.ds.camera_keys))
        return stats

    def check_timestamps(self, ep: Episode, row: dict) -> None:
        """An original v3.0 episode's to_timestamp against its frames: an episode's frames end at
        from_timestamp + length/fps (not (length-1)/fps); a wrong one is corrected in `row`."""
        for key in self.ds.video_keys:
            start, end = ep.meta.get(f"videos/{key}/from_timestamp"), ep.meta.get(f"videos/{key}/to_timestamp")
            if start is not None and end is not None and abs(end - start - ep.length / self.ds.fps) > GRID_TOLERANCE_S:
                self.warnings.add(f"videos/{key}/to_timestamp", "is not from_timestamp + length/fps (corrected)",
                                  ep.index)
                row[f"videos/{key}/to_timestamp"] = start + ep.length / self.ds.fps


def _set_stats_columns(row: dict, stats: dict[str, dict[str, np.ndarray]]) -> None:
    for feat, s in stats.items():
        for k, v in s.items():
            if f"stats/{feat}/{k}" in row:
                row[f"stats/{feat}/{k}"] = np.asarray(v).tolist()


def _video_fields(path: Path) -> dict:
    """info.json's fields of one video file we wrote."""
    p = probe(path)
    fps = int(p.fps) if p.fps.denominator == 1 else float(p.fps)
    return {"video.height": p.height, "video.width": p.width, "video.codec": p.codec,
            "video.pix_fmt": p.pix_fmt, "video.fps": fps}


def _describe_videos(info: dict, videos: dict[str, dict]) -> None:
    """info.json's video fields from the files written (`videos`: key -> `_video_fields` of one)."""
    for key, described in videos.items():
        feature = info["features"][key]
        fields = video_feature_info(feature)
        if not fields:
            fields = feature["info"] = {}
        fields.update(described)


def _info_copy(ds: LeRobotDataset) -> dict:
    return json.loads(json.dumps(ds.info))  # deep: feature dicts get edited


def _arrays(stats: dict[str, dict[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    return {f: {k: np.asarray(v) for k, v in s.items()} for f, s in stats.items()}


def _aggregate_all(per_episode: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, list]]:
    features = sorted({f for s in per_episode for f in s})
    return stats_lists({f: aggregate([s[f] for s in per_episode if f in s]) for f in features})


# -- layout: the units of work ----------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """Where the plan's output episodes go, from the source's metadata alone."""

    units: list[Unit]
    index_starts: dict[int, int]
    """copy mode: output episode -> global index of its first frame."""
    data_pos: list[tuple[int, int]]
    """v3.0 copy: (chunk, file) of each unit's data file."""
    video_pos: dict[str, list[tuple[int, int]]]
    """v3.0 copy: (chunk, file) of each unit's mp4 per video key."""

    def unit_of(self) -> dict[int, int]:
        return {e: u.index for u in self.units for e in u.episodes}


def _bytes_per_frame(ds: LeRobotDataset, file_of) -> dict[str, float]:
    """Source file -> its size on disk per frame it holds (`file_of(episode)` names its file)."""
    frames: dict[str, int] = {}
    for ep in ds.episodes:
        frames[file_of(ep)] = frames.get(file_of(ep), 0) + ep.length
    return {rel: ds.file_size(rel) / n if n else 0.0 for rel, n in frames.items()}


def layout(ds: LeRobotDataset, mode: str, plan: list[OutputEpisode]) -> Layout:
    """The units of work of writing `plan` (see the module's docstring)."""
    index_starts, running = {}, ds.total_frames
    if mode == "copy":
        for oe in plan:
            index_starts[oe.out_index] = running
            running += oe.source.length
    if ds.version == "v3.0" and mode == "copy":
        return _v30_copy_layout(ds, plan, index_starts)
    if ds.version == "v3.0":
        return Layout(_v30_inplace_units(ds, plan), index_starts, [], {})
    units = [Unit(i, (oe.out_index,), oe.source.length) for i, oe in enumerate(plan)]
    return Layout(units, index_starts, [], {})


def _v30_copy_layout(ds: LeRobotDataset, plan: list[OutputEpisode], index_starts: dict[int, int]) -> Layout:
    """New episodes in output order, a new unit (one new data file and one new mp4 per key) when
    the current one would pass a file size limit (sizes estimated as the source's bytes per frame
    of the file each episode comes from) or UNIT_FRAMES."""
    info = ds.info
    chunks_size = int(info.get("chunks_size", 1000))
    data_limit = int(info.get("data_files_size_in_mb", 100)) * MB
    video_limit = int(info.get("video_files_size_in_mb", 200)) * MB
    data_rate = _bytes_per_frame(ds, lambda ep: ep.data_file)
    video_rate = {k: _bytes_per_frame(ds, lambda ep, k=k: ep.videos[k][0]) for k in ds.video_keys}
    groups: list[list[OutputEpisode]] = []
    used_data, used_video, frames = 0.0, {k: 0.0 for k in ds.video_keys}, 0
    for oe in plan:
        ep = oe.source
        d = data_rate[ep.data_file] * ep.length
        v = {k: video_rate[k][ep.videos[k][0]] * ep.length for k in ds.video_keys}
        full = groups and groups[-1] and (
            used_data + d > data_limit or frames + ep.length > UNIT_FRAMES
            or any(used_video[k] + v[k] > video_limit for k in ds.video_keys))
        if not groups or full:
            groups.append([])
            used_data, used_video, frames = 0.0, {k: 0.0 for k in ds.video_keys}, 0
        groups[-1].append(oe)
        used_data += d
        frames += ep.length
        for k in ds.video_keys:
            used_video[k] += v[k]
    units = [Unit(i, tuple(oe.out_index for oe in g), sum(oe.source.length for oe in g)) for i, g in enumerate(groups)]
    data_pos, pos = [], _last_index(ds.data_files())
    for _ in units:
        pos = _next_index(*pos, chunks_size)
        data_pos.append(pos)
    video_pos: dict[str, list[tuple[int, int]]] = {}
    for key in ds.video_keys:
        video_pos[key], pos = [], _last_index(ep.videos[key][0] for ep in ds.episodes)
        for _ in units:
            pos = _next_index(*pos, chunks_size)
            video_pos[key].append(pos)
    return Layout(units, index_starts, data_pos, video_pos)


def _v30_inplace_units(ds: LeRobotDataset, plan: list[OutputEpisode]) -> list[Unit]:
    """Episodes that share a rewritten file (an mp4 of any key; a data file when there are image
    features) are one unit: each file is rebuilt whole by one writer."""
    parent = list(range(len(ds.episodes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_of: dict[tuple[str, str], int] = {}
    for ep in ds.episodes:
        files = [(k, ep.videos[k][0]) for k in ds.video_keys]
        if ds.image_keys:
            files.append(("data", ep.data_file))
        for f in files:
            if f in first_of:
                a, b = find(first_of[f]), find(ep.index)
                parent[max(a, b)] = min(a, b)
            else:
                first_of[f] = ep.index
    by_root: dict[int, list[OutputEpisode]] = {}
    for oe in sorted(plan, key=lambda o: o.source.index):
        by_root.setdefault(find(oe.source.index), []).append(oe)
    groups = sorted(by_root.values(), key=lambda g: g[0].source.index)
    return [Unit(i, tuple(oe.out_index for oe in g), sum(oe.source.length for oe in g)) for i, g in enumerate(groups)]


# -- entry points -----------------------------------------------------------------------------
@dataclass
class UnitWritten:
    """What writing one unit left for `write_meta`: JSON-able, so it can cross pods."""

    episodes: dict[int, dict]
    """output episode -> {"stats": {feature: {stat: list}}, "starts": {video key: from_timestamp}}"""
    files: list[str]
    """The output files the unit wrote (relative paths)."""
    videos: dict[str, dict]
    """video key -> info.json's video fields of a file the unit wrote."""

    def to_json(self) -> dict:
        return {"episodes": {str(k): v for k, v in self.episodes.items()}, "files": self.files, "videos": self.videos}

    @classmethod
    def from_json(cls, obj: dict) -> "UnitWritten":
        return cls({int(k): v for k, v in obj["episodes"].items()}, list(obj["files"]), dict(obj["videos"]))


def write_unit(ds: LeRobotDataset, out: Path, mode: str, lay: Layout, unit: Unit, plan: list[OutputEpisode],
               results: dict[int, EpisodeResult]) -> UnitWritten:
    """Write the files of one unit under `out` (only them) from its episodes' results."""
    out.mkdir(parents=True, exist_ok=True)
    by_out = {oe.out_index: oe for oe in plan}
    oes = [by_out[e] for e in unit.episodes]
    if ds.version == "v3.0":
        fn = _unit_v30_copy if mode == "copy" else _unit_v30_inplace
    else:
        fn = _unit_v21_copy if mode == "copy" else _unit_v21_inplace
    return fn(ds, out, lay, unit, oes, results)


def write_meta(ds: LeRobotDataset, out: Path, mode: str, plan: list[OutputEpisode], lay: Layout,
               written: list[UnitWritten], source_cameras: dict[int, dict[str, dict[str, Any]]],
               source_numeric: Optional[dict[int, dict[str, dict[str, Any]]]] = None) -> list[str]:
    """Write everything but the units' files, from the units' records (`written`, in unit order)
    and the originals' camera stats measured by the tasks (`source_cameras`: source episode ->
    camera -> stats); returns warnings about the input (inconsistent stats, timestamps)."""
    out.mkdir(parents=True, exist_ok=True)
    st = _Stats(ds, {ep: _arrays(s) for ep, s in source_cameras.items()},
                {ep: _arrays(s) for ep, s in (source_numeric or {}).items() if s is not None})
    records: dict[int, dict] = {}
    videos: dict[str, dict] = {}
    for w in written:
        records.update(w.episodes)
        videos.update(w.videos)  # the last unit's fields win (all files of a key share them)
    if ds.version == "v3.0":
        (_meta_v30_copy if mode == "copy" else _meta_v30_inplace)(ds, out, plan, lay, records, videos, st)
    else:
        (_meta_v21_copy if mode == "copy" else _meta_v21_inplace)(ds, out, plan, lay, records, videos, st)
    return st.warnings.messages()


def write(ds: LeRobotDataset, out: Path, mode: str, plan: list[OutputEpisode],
          results: dict[int, EpisodeResult]) -> list[str]:
    """Write the whole output dataset in this process; returns warnings about the input. The units'
    records take the same JSON round trip as across pods, so the bytes are the sharded ones."""
    lay = layout(ds, mode, plan)
    written = [UnitWritten.from_json(json.loads(json.dumps(write_unit(ds, out, mode, lay, u, plan, results).to_json())))
               for u in lay.units]
    cams = json.loads(json.dumps({oe.source.index: stats_lists(results[oe.out_index].source_stats)
                                    for oe in plan if oe.copy == 0}))
    return write_meta(ds, out, mode, plan, lay, written, {int(k): v for k, v in cams.items()})


def numeric_stats(ds: LeRobotDataset, table: pa.Table) -> dict[str, dict[str, np.ndarray]]:
    return episode_numeric_stats(ds.features, table, quantile_flags(ds))


# -- v3.0 -------------------------------------------------------------------------------------
def _last_index(paths: Iterable[str]) -> tuple[int, int]:
    """Highest (chunk, file) among `.../chunk-XXX/file-YYY.ext` paths."""
    best = (-1, -1)
    for p in paths:
        parts = Path(p).parts
        chunk = int(parts[-2].split("-")[1])
        file = int(Path(parts[-1]).stem.split("-")[1])
        best = max(best, (chunk, file))
    return best


def _rewrite_v30_original_stats(ds: LeRobotDataset, out: Path, ep_files: list[str], st: _Stats) -> list[dict]:
    """Recompute the stats of the original episodes and rewrite their episode rows; their stats."""
    all_stats, cache = [], {}
    for rel in ep_files:
        table = pq.read_table(ds.root / rel)
        rows = table.to_pylist()
        for row in rows:
            ep = ds.episodes[int(row["episode_index"])]
            stats = st.original(ep, lambda: ds.read_episode_rows(ep, cache))
            st.check_timestamps(ep, row)
            _set_stats_columns(row, stats)
            all_stats.append(stats)
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out / rel)
    return all_stats


def _episode_files(ds: LeRobotDataset) -> list[str]:
    return sorted(p.relative_to(ds.root).as_posix() for p in (ds.root / "meta/episodes").glob("chunk-*/file-*.parquet"))


def _unit_v30_copy(ds, out, lay, unit, oes, results) -> UnitWritten:
    info = ds.info
    cache: dict[str, pa.Table] = {}
    tables, episodes = [], {}
    for oe in oes:
        t = ds.read_episode_rows(oe.source, cache)
        start = lay.index_starts[oe.out_index]
        t = _set_int_column(t, "episode_index", np.full(t.num_rows, oe.out_index, dtype=np.int64))
        t = _set_int_column(t, "index", np.arange(start, start + t.num_rows))
        # the rows as written: index and episode_index included
        episodes[oe.out_index] = {"stats": stats_lists({**numeric_stats(ds, t), **results[oe.out_index].stats}), "starts": {}}
        tables.append(_replace_image_columns(t, results[oe.out_index].images))
    cache.clear()
    schema = pq.read_schema(ds.root / ds.data_files()[0])
    pos = lay.data_pos[unit.index]
    rel = info["data_path"].format(chunk_index=pos[0], file_index=pos[1])
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables(tables).cast(schema), out / rel)
    del tables
    files, videos = [rel], {}
    for key in ds.video_keys:
        pos = lay.video_pos[key][unit.index]
        rel = info["video_path"].format(video_key=key, chunk_index=pos[0], file_index=pos[1])
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        starts = concat_segments([(Path(s), n) for s, n in (results[oe.out_index].segments[key] for oe in oes)],
                                 out / rel, ds.fps)
        for oe, start in zip(oes, starts):
            episodes[oe.out_index]["starts"][key] = start
        files.append(rel)
        videos[key] = _video_fields(out / rel)
    return UnitWritten(episodes, files, videos)


def _meta_v30_copy(ds, out, plan, lay, records, videos, st):
    info = _info_copy(ds)
    chunks_size = int(info.get("chunks_size", 1000))
    copy_tree(ds.root, out)
    unit_of = lay.unit_of()
    ep_files = _episode_files(ds)
    meta_pos = _next_index(*_last_index(ep_files), chunks_size)
    rows, all_stats = [], _rewrite_v30_original_stats(ds, out, ep_files, st)
    running = ds.total_frames
    for oe in plan:
        rec, u = records[oe.out_index], unit_of[oe.out_index]
        stats = _arrays(rec["stats"])
        all_stats.append(stats)
        row = dict(oe.source.meta)
        row.update(
            {
                "episode_index": oe.out_index,
                "data/chunk_index": lay.data_pos[u][0],
                "data/file_index": lay.data_pos[u][1],
                "dataset_from_index": lay.index_starts[oe.out_index],
                "dataset_to_index": lay.index_starts[oe.out_index] + oe.source.length,
                "meta/episodes/chunk_index": meta_pos[0],
                "meta/episodes/file_index": meta_pos[1],
            }
        )
        for key in ds.video_keys:
            start = rec["starts"][key]
            row[f"videos/{key}/chunk_index"] = lay.video_pos[key][u][0]
            row[f"videos/{key}/file_index"] = lay.video_pos[key][u][1]
            row[f"videos/{key}/from_timestamp"] = start
            row[f"videos/{key}/to_timestamp"] = start + oe.source.length / ds.fps
        _set_stats_columns(row, stats)
        rows.append(row)
        running += oe.source.length
    ep_schema = pq.read_schema(ds.root / ep_files[0])
    path = out / f"meta/episodes/chunk-{meta_pos[0]:03d}/file-{meta_pos[1]:03d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=ep_schema), path)

    total_eps = len(ds.episodes) + len(plan)
    info.update(total_episodes=total_eps, total_frames=running, splits={"train": f"0:{total_eps}"})
    _describe_videos(info, videos)
    write_json(out / "meta/info.json", info)
    write_json(out / "meta/stats.json", _aggregate_all(all_stats))


def _inplace_skip_v30(ds: LeRobotDataset) -> tuple[list[str], list[str], list[str]]:
    """(episode files, video files, data files) an in-place v3.0 output rewrites."""
    video_files = sorted({ep.videos[k][0] for ep in ds.episodes for k in ds.video_keys})
    return _episode_files(ds), video_files, (ds.data_files() if ds.image_keys else [])


def _unit_v30_inplace(ds, out, lay, unit, oes, results) -> UnitWritten:
    by_source = {oe.source.index: oe for oe in oes}
    eps_of_unit = [ds.episodes[i] for i in sorted(by_source)]
    episodes = {oe.out_index: {"stats": {}, "starts": {}} for oe in oes}
    files, videos = [], {}
    # every video file of the unit rebuilt from its episodes' segments, in the order they sat in it
    for key in ds.video_keys:
        groups: dict[str, list[Episode]] = {}
        for ep in eps_of_unit:
            groups.setdefault(ep.videos[key][0], []).append(ep)
        for rel, eps in sorted(groups.items()):
            eps.sort(key=lambda e: e.videos[key][1])
            segs = [results[by_source[e.index].out_index].segments[key] for e in eps]
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            starts = concat_segments([(Path(s), n) for s, n in segs], out / rel, ds.fps)
            files.append(rel)
            videos[key] = _video_fields(out / rel)
            for e, start in zip(eps, starts):
                # every file is rebuilt (packed, even where the source had gaps): record where each sits
                episodes[by_source[e.index].out_index]["starts"][key] = start

    for rel in sorted({ep.data_file for ep in eps_of_unit}) if ds.image_keys else []:
        table = pq.read_table(ds.root / rel)
        eps = table.column("episode_index").to_numpy()
        for key in ds.image_keys:
            col = table.column(key).to_pylist()
            for ep_idx in np.unique(eps):
                pngs = results[by_source[int(ep_idx)].out_index].images[key]
                rows = np.nonzero(eps == ep_idx)[0]
                for r, b in zip(rows, pngs):
                    col[r] = {"bytes": b, "path": (col[r] or {}).get("path")}
            i = table.schema.get_field_index(key)
            table = table.set_column(i, table.schema.field(i), pa.array(col, type=table.schema.field(i).type))
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out / rel)
        files.append(rel)

    cache: dict = {}
    for ep in eps_of_unit:
        oe = by_source[ep.index]
        rows_of_ep = ds.read_episode_rows(ep, cache)  # numeric rows are written unchanged
        episodes[oe.out_index]["stats"] = stats_lists({**numeric_stats(ds, rows_of_ep), **results[oe.out_index].stats})
    return UnitWritten(episodes, files, videos)


def _meta_v30_inplace(ds, out, plan, lay, records, videos, st):
    ep_files, video_files, data_files = _inplace_skip_v30(ds)
    copy_tree(ds.root, out, skip=[*ep_files, *video_files, *data_files, "meta/stats.json"])
    by_source = {oe.source.index: oe for oe in plan}
    all_stats, cache = [], {}
    for rel in ep_files:
        table = pq.read_table(ds.root / rel)
        rows = table.to_pylist()
        for row in rows:
            ep = ds.episodes[int(row["episode_index"])]
            rec = records[by_source[ep.index].out_index]
            st.original(ep, lambda: ds.read_episode_rows(ep, cache))  # only to check the input's stats: the pixels are replaced
            st.check_timestamps(ep, row)  # reported; the timestamps are rewritten below anyway
            stats = _arrays(rec["stats"])
            all_stats.append(stats)
            _set_stats_columns(row, stats)
            for key in ds.video_keys:
                start = rec["starts"][key]
                row[f"videos/{key}/from_timestamp"] = start
                row[f"videos/{key}/to_timestamp"] = start + ep.length / ds.fps
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out / rel)
    write_json(out / "meta/stats.json", _aggregate_all(all_stats))
    if videos:
        info = _info_copy(ds)
        _describe_videos(info, videos)
        write_json(out / "meta/info.json", info)


# -- v2.1 -------------------------------------------------------------------------------------
def _v21_paths(info: dict, ep: int, key: str | None = None) -> str:
    chunk = ep // int(info.get("chunks_size", 1000))
    if key is None:
        return info["data_path"].format(episode_chunk=chunk, episode_index=ep)
    return info["video_path"].format(episode_chunk=chunk, video_key=key, episode_index=ep)


def _copy_segments(ds, out, res: EpisodeResult, ep_index: int, files: list[str], videos: dict) -> None:
    for key in ds.video_keys:
        seg, _ = res.segments[key]
        rel = _v21_paths(ds.info, ep_index, key)
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        # a one-episode file is the segment itself (pts from 0, muxed bitexact)
        shutil.copyfile(seg, out / rel)
        files.append(rel)
        videos[key] = _video_fields(out / rel)


def _unit_v21_copy(ds, out, lay, unit, oes, results) -> UnitWritten:
    [oe] = oes
    res = results[oe.out_index]
    start = lay.index_starts[oe.out_index]
    t = ds.read_episode_rows(oe.source)
    t = _set_int_column(t, "episode_index", np.full(t.num_rows, oe.out_index, dtype=np.int64))
    t = _set_int_column(t, "index", np.arange(start, start + t.num_rows))
    stats = {**numeric_stats(ds, t), **res.stats}
    t = _replace_image_columns(t, res.images)
    rel = _v21_paths(ds.info, oe.out_index)
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(t, out / rel)
    files, videos = [rel], {}
    _copy_segments(ds, out, res, oe.out_index, files, videos)
    return UnitWritten({oe.out_index: {"stats": stats_lists(stats), "starts": {}}}, files, videos)


def _meta_v21_copy(ds, out, plan, lay, records, videos, st):
    info = _info_copy(ds)
    copy_tree(ds.root, out)
    running = ds.total_frames
    ep_lines, stat_lines, all_stats = [], [], []
    cache: dict[str, pa.Table] = {}
    for ep in ds.episodes:
        stats = st.original(ep, lambda: ds.read_episode_rows(ep, cache))
        all_stats.append(stats)
        stat_lines.append(_jsonl_line({"episode_index": ep.index, "stats": stats_lists(stats)}))
    for oe in plan:
        stats = _arrays(records[oe.out_index]["stats"])
        all_stats.append(stats)
        ep_lines.append(_jsonl_line({**oe.source.meta, "episode_index": oe.out_index}))
        stat_lines.append(_jsonl_line({"episode_index": oe.out_index, "stats": stats_lists(stats)}))
        running += oe.source.length
    _append_lines(out / "meta/episodes.jsonl", ep_lines)
    (out / "meta/episodes_stats.jsonl").write_text("".join(line + "\n" for line in stat_lines))
    total_eps = len(ds.episodes) + len(plan)
    chunks_size = int(info.get("chunks_size", 1000))
    info.update(
        total_episodes=total_eps,
        total_frames=running,
        total_videos=total_eps * len(ds.video_keys),
        total_chunks=math.ceil(total_eps / chunks_size),
        splits={"train": f"0:{total_eps}"},
    )
    _describe_videos(info, videos)
    write_json(out / "meta/info.json", info)
    if (ds.root / "meta/stats.json").is_file():  # not read by v2.1 loaders; kept consistent anyway
        write_json(out / "meta/stats.json", _aggregate_all(all_stats))


def _append_lines(path: Path, lines: list[str]) -> None:
    text = path.read_text() if path.is_file() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    path.write_text(text + "".join(line + "\n" for line in lines))


def _unit_v21_inplace(ds, out, lay, unit, oes, results) -> UnitWritten:
    [oe] = oes
    res = results[oe.out_index]
    files, videos = [], {}
    _copy_segments(ds, out, res, oe.source.index, files, videos)
    rows = ds.read_episode_rows(oe.source)
    if ds.image_keys:
        t = _replace_image_columns(pq.read_table(ds.root / oe.source.data_file), res.images)
        (out / oe.source.data_file).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, out / oe.source.data_file)
        files.append(oe.source.data_file)
    stats = {**numeric_stats(ds, rows), **res.stats}
    return UnitWritten({oe.out_index: {"stats": stats_lists(stats), "starts": {}}}, files, videos)


def _meta_v21_inplace(ds, out, plan, lay, records, videos, st):
    info = _info_copy(ds)
    skip = [ep.videos[k][0] for ep in ds.episodes for k in ds.video_keys] + ["meta/episodes_stats.jsonl"]
    if ds.image_keys:
        skip += [ep.data_file for ep in ds.episodes]
    copy_tree(ds.root, out, skip=skip)
    stat_lines, all_stats = [], []
    for oe in sorted(plan, key=lambda o: o.source.index):
        st.original(oe.source, lambda: ds.read_episode_rows(oe.source))  # only to check the input's stats
        stats = _arrays(records[oe.out_index]["stats"])
        all_stats.append(stats)
        stat_lines.append(_jsonl_line({"episode_index": oe.source.index, "stats": stats_lists(stats)}))
    (out / "meta/episodes_stats.jsonl").write_text("".join(line + "\n" for line in stat_lines))
    if (ds.root / "meta/stats.json").is_file():
        write_json(out / "meta/stats.json", _aggregate_all(all_stats))
    if videos:
        _describe_videos(info, videos)
        write_json(out / "meta/info.json", info)
