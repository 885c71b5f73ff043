"""Writing the augmented LeRobot dataset (v2.1 or v3.0, the version that was read).

copy mode: every source file is copied byte for byte and the augmented episodes are appended in
new files that sort after the existing ones; inplace mode: same episodes, indices and totals,
every video file re-encoded with the same frame count and timing.
Either way the per-episode stats of every episode the output holds are recomputed from the data
(episode_stats.py; originals too, their episode rows rewritten), every video we write gets its
from/to timestamps from where its frames sit, and info.json's video fields describe the files
written. `write` returns the input inconsistencies found on the way, as warning messages.
The invariants are the ones listed in shared/LEROBOT_FORMAT.md.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .episode_stats import StatsWarnings, episode_numeric_stats
from .episode_task import EpisodeResult
from .files import copy_tree, write_json
from .lerobot_dataset import Episode, LeRobotDataset, video_feature_info
from .stats import aggregate
from .video import GRID_TOLERANCE_S, concat_segments, probe

MB = 1024 * 1024


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


def _stats_lists(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list]]:
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

    def __init__(self, ds: LeRobotDataset, results: dict[int, EpisodeResult], plan: list[OutputEpisode]):
        self.ds, self.quantiles, self.warnings = ds, quantile_flags(ds), StatsWarnings()
        # camera stats of each original episode: measured by the task of its first copy
        self.source_cameras = {oe.source.index: results[oe.out_index].source_stats for oe in plan if oe.copy == 0}

    def numeric(self, table: pa.Table) -> dict[str, dict[str, np.ndarray]]:
        return episode_numeric_stats(self.ds.features, table, self.quantiles)

    def original(self, ep: Episode, table: pa.Table) -> dict[str, dict[str, np.ndarray]]:
        """Stats of an original episode from its rows and decoded frames, checked against the input's."""
        # an episode left out as undecodable (on_bad_sample: skip) keeps the input's camera stats
        cameras = self.source_cameras.get(ep.index) or {
            k: {s: np.asarray(v) for s, v in ep.stats[k].items()} for k in self.ds.camera_keys if k in ep.stats}
        stats = {**self.numeric(table), **cameras}
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


def _describe_videos(info: dict, out: Path, written: dict[str, str]) -> None:
    """info.json's video fields from the files written (`written`: key -> one of its files)."""
    for key, rel in written.items():
        p = probe(out / rel)
        feature = info["features"][key]
        fields = video_feature_info(feature)
        if not fields:
            fields = feature["info"] = {}
        fps = int(p.fps) if p.fps.denominator == 1 else float(p.fps)
        fields.update({"video.height": p.height, "video.width": p.width, "video.codec": p.codec,
                       "video.pix_fmt": p.pix_fmt, "video.fps": fps})


def _info_copy(ds: LeRobotDataset) -> dict:
    return json.loads(json.dumps(ds.info))  # deep: feature dicts get edited


def _aggregate_all(per_episode: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, list]]:
    features = sorted({f for s in per_episode for f in s})
    return _stats_lists({f: aggregate([s[f] for s in per_episode if f in s]) for f in features})


# -- entry point ------------------------------------------------------------------------------
def write(ds: LeRobotDataset, out: Path, mode: str, plan: list[OutputEpisode],
          results: dict[int, EpisodeResult]) -> list[str]:
    """Write the output dataset; returns warnings about the input (inconsistent stats, timestamps)."""
    out.mkdir(parents=True, exist_ok=True)
    st = _Stats(ds, results, plan)
    if ds.version == "v3.0":
        (_write_v30_copy if mode == "copy" else _write_v30_inplace)(ds, out, plan, results, st)
    else:
        (_write_v21_copy if mode == "copy" else _write_v21_inplace)(ds, out, plan, results, st)
    return st.warnings.messages()


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


def _v30_file_positions(sizes: list[int], limit_bytes: int, start: tuple[int, int], chunks_size: int) -> list[tuple[int, int]]:
    """(chunk, file) of each item when items go into files in order, a new file when one is full."""
    out, pos, used = [], _next_index(*start, chunks_size), 0
    for size in sizes:
        if used and used + size > limit_bytes:
            pos, used = _next_index(*pos, chunks_size), 0
        out.append(pos)
        used += size
    return out


def _rewrite_v30_original_stats(ds: LeRobotDataset, out: Path, ep_files: list[str], st: _Stats) -> list[dict]:
    """Recompute the stats of the original episodes and rewrite their episode rows; their stats."""
    all_stats, cache = [], {}
    for rel in ep_files:
        table = pq.read_table(ds.root / rel)
        rows = table.to_pylist()
        for row in rows:
            ep = ds.episodes[int(row["episode_index"])]
            stats = st.original(ep, ds.read_episode_rows(ep, cache))
            st.check_timestamps(ep, row)
            _set_stats_columns(row, stats)
            all_stats.append(stats)
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out / rel)
    return all_stats


def _write_v30_copy(ds, out, plan, results, st):
    info = _info_copy(ds)
    chunks_size = int(info.get("chunks_size", 1000))
    copy_tree(ds.root, out)
    old_total = ds.total_frames
    index_starts, running = {}, old_total
    for oe in plan:
        index_starts[oe.out_index] = running
        running += oe.source.length

    # data rows of the new episodes, in output order, rolled into files of data_files_size_in_mb
    data_limit = int(info.get("data_files_size_in_mb", 100)) * MB
    cache: dict[str, pa.Table] = {}
    tables, numeric = [], {}
    for oe in plan:
        t = ds.read_episode_rows(oe.source, cache)
        t = _set_int_column(t, "episode_index", np.full(t.num_rows, oe.out_index, dtype=np.int64))
        t = _set_int_column(t, "index", np.arange(index_starts[oe.out_index], index_starts[oe.out_index] + t.num_rows))
        numeric[oe.out_index] = st.numeric(t)  # the rows as written: index and episode_index included
        t = _replace_image_columns(t, results[oe.out_index].images)
        tables.append(t)
    cache.clear()
    data_pos = _v30_file_positions([t.nbytes for t in tables], data_limit, _last_index(ds.data_files()), chunks_size)
    schema = pq.read_schema(ds.root / ds.data_files()[0])
    for pos in sorted(set(data_pos)):
        part = pa.concat_tables([t for t, p in zip(tables, data_pos) if p == pos]).cast(schema)
        path = out / info["data_path"].format(chunk_index=pos[0], file_index=pos[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, path)
    del tables

    # videos: segments concatenated per key into new files of video_files_size_in_mb
    video_limit = int(info.get("video_files_size_in_mb", 200)) * MB
    video_pos: dict[str, list[tuple[int, int]]] = {}
    video_start: dict[tuple[str, int], float] = {}
    written: dict[str, str] = {}
    for key in ds.video_keys:
        segs = [results[oe.out_index].segments[key] for oe in plan]
        sizes = [Path(p).stat().st_size for p, _ in segs]
        last = _last_index(ep.videos[key][0] for ep in ds.episodes)
        positions = _v30_file_positions(sizes, video_limit, last, chunks_size)
        video_pos[key] = positions
        for pos in sorted(set(positions)):
            members = [(oe, seg) for oe, seg, p in zip(plan, segs, positions) if p == pos]
            path = out / info["video_path"].format(video_key=key, chunk_index=pos[0], file_index=pos[1])
            path.parent.mkdir(parents=True, exist_ok=True)
            written[key] = path.relative_to(out).as_posix()
            starts = concat_segments([(Path(s), n) for _, (s, n) in members], path, ds.fps)
            for (oe, _), start in zip(members, starts):
                video_start[(key, oe.out_index)] = start

    # episode rows, one new meta/episodes file
    ep_files = sorted(p.relative_to(ds.root).as_posix() for p in (ds.root / "meta/episodes").glob("chunk-*/file-*.parquet"))
    meta_pos = _next_index(*_last_index(ep_files), chunks_size)
    rows, all_stats = [], _rewrite_v30_original_stats(ds, out, ep_files, st)
    for i, oe in enumerate(plan):
        res = results[oe.out_index]
        row = dict(oe.source.meta)
        stats = {**numeric[oe.out_index], **res.stats}
        all_stats.append(stats)
        row.update(
            {
                "episode_index": oe.out_index,
                "data/chunk_index": data_pos[i][0],
                "data/file_index": data_pos[i][1],
                "dataset_from_index": index_starts[oe.out_index],
                "dataset_to_index": index_starts[oe.out_index] + oe.source.length,
                "meta/episodes/chunk_index": meta_pos[0],
                "meta/episodes/file_index": meta_pos[1],
            }
        )
        for key in ds.video_keys:
            start = video_start[(key, oe.out_index)]
            row[f"videos/{key}/chunk_index"] = video_pos[key][i][0]
            row[f"videos/{key}/file_index"] = video_pos[key][i][1]
            row[f"videos/{key}/from_timestamp"] = start
            row[f"videos/{key}/to_timestamp"] = start + oe.source.length / ds.fps
        _set_stats_columns(row, stats)
        rows.append(row)
    ep_schema = pq.read_schema(ds.root / ep_files[0])
    path = out / f"meta/episodes/chunk-{meta_pos[0]:03d}/file-{meta_pos[1]:03d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=ep_schema), path)

    total_eps = len(ds.episodes) + len(plan)
    info.update(total_episodes=total_eps, total_frames=running, splits={"train": f"0:{total_eps}"})
    _describe_videos(info, out, written)
    write_json(out / "meta/info.json", info)
    write_json(out / "meta/stats.json", _aggregate_all(all_stats))


def _write_v30_inplace(ds, out, plan, results, st):
    ep_files = sorted(p.relative_to(ds.root).as_posix() for p in (ds.root / "meta/episodes").glob("chunk-*/file-*.parquet"))
    video_files = sorted({ep.videos[k][0] for ep in ds.episodes for k in ds.video_keys})
    data_files = ds.data_files() if ds.image_keys else []
    copy_tree(ds.root, out, skip=[*ep_files, *video_files, *data_files, "meta/stats.json"])
    by_source = {oe.source.index: oe for oe in plan}

    # every video file rebuilt from its episodes' segments, in the order they sat in it
    new_start: dict[tuple[str, int], float] = {}
    written: dict[str, str] = {}
    for key in ds.video_keys:
        files: dict[str, list[Episode]] = {}
        for ep in ds.episodes:
            files.setdefault(ep.videos[key][0], []).append(ep)
        for rel, eps in sorted(files.items()):
            eps.sort(key=lambda e: e.videos[key][1])
            segs = [results[by_source[e.index].out_index].segments[key] for e in eps]
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            starts = concat_segments([(Path(s), n) for s, n in segs], out / rel, ds.fps)
            written[key] = rel
            for e, start in zip(eps, starts):
                # every file is rebuilt (packed, even where the source had gaps): record where each sits
                new_start[(key, e.index)] = start

    for rel in data_files:
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

    all_stats, cache = [], {}
    for rel in ep_files:
        table = pq.read_table(ds.root / rel)
        rows = table.to_pylist()
        for row in rows:
            ep = ds.episodes[int(row["episode_index"])]
            res = results[by_source[ep.index].out_index]
            rows_of_ep = ds.read_episode_rows(ep, cache)  # numeric rows are written unchanged
            st.original(ep, rows_of_ep)  # only to check the input's stats: the pixels are replaced
            st.check_timestamps(ep, row)  # reported; the timestamps are rewritten below anyway
            stats = {**st.numeric(rows_of_ep), **res.stats}
            all_stats.append(stats)
            _set_stats_columns(row, stats)
            for key in ds.video_keys:
                start = new_start[(key, ep.index)]
                row[f"videos/{key}/from_timestamp"] = start
                row[f"videos/{key}/to_timestamp"] = start + ep.length / ds.fps
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out / rel)
    write_json(out / "meta/stats.json", _aggregate_all(all_stats))
    if written:
        info = _info_copy(ds)
        _describe_videos(info, out, written)
        write_json(out / "meta/info.json", info)


# -- v2.1 -------------------------------------------------------------------------------------
def _v21_paths(info: dict, ep: int, key: str | None = None) -> str:
    chunk = ep // int(info.get("chunks_size", 1000))
    if key is None:
        return info["data_path"].format(episode_chunk=chunk, episode_index=ep)
    return info["video_path"].format(episode_chunk=chunk, video_key=key, episode_index=ep)


def _write_v21_copy(ds, out, plan, results, st):
    info = _info_copy(ds)
    copy_tree(ds.root, out)
    running = ds.total_frames
    ep_lines, stat_lines, all_stats = [], [], []
    written: dict[str, str] = {}
    cache: dict[str, pa.Table] = {}
    for ep in ds.episodes:
        stats = st.original(ep, ds.read_episode_rows(ep, cache))
        all_stats.append(stats)
        stat_lines.append(_jsonl_line({"episode_index": ep.index, "stats": _stats_lists(stats)}))
    for oe in plan:
        res = results[oe.out_index]
        t = ds.read_episode_rows(oe.source, cache)
        t = _set_int_column(t, "episode_index", np.full(t.num_rows, oe.out_index, dtype=np.int64))
        t = _set_int_column(t, "index", np.arange(running, running + t.num_rows))
        stats = {**st.numeric(t), **res.stats}
        t = _replace_image_columns(t, res.images)
        path = out / _v21_paths(info, oe.out_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, path)
        for key in ds.video_keys:
            seg, _ = res.segments[key]
            vpath = out / _v21_paths(info, oe.out_index, key)
            vpath.parent.mkdir(parents=True, exist_ok=True)
            # a one-episode file is the segment itself (pts from 0, muxed bitexact)
            shutil.copyfile(seg, vpath)
            written[key] = vpath.relative_to(out).as_posix()
        all_stats.append(stats)
        ep_lines.append(_jsonl_line({**oe.source.meta, "episode_index": oe.out_index}))
        stat_lines.append(_jsonl_line({"episode_index": oe.out_index, "stats": _stats_lists(stats)}))
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
    _describe_videos(info, out, written)
    write_json(out / "meta/info.json", info)
    if (ds.root / "meta/stats.json").is_file():  # not read by v2.1 loaders; kept consistent anyway
        write_json(out / "meta/stats.json", _aggregate_all(all_stats))


def _append_lines(path: Path, lines: list[str]) -> None:
    text = path.read_text() if path.is_file() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    path.write_text(text + "".join(line + "\n" for line in lines))


def _write_v21_inplace(ds, out, plan, results, st):
    info = _info_copy(ds)
    skip = [ep.videos[k][0] for ep in ds.episodes for k in ds.video_keys] + ["meta/episodes_stats.jsonl"]
    if ds.image_keys:
        skip += [ep.data_file for ep in ds.episodes]
    copy_tree(ds.root, out, skip=skip)
    stat_lines, all_stats = [], []
    written: dict[str, str] = {}
    for oe in sorted(plan, key=lambda o: o.source.index):
        res = results[oe.out_index]
        for key in ds.video_keys:
            seg, _ = res.segments[key]
            vpath = out / _v21_paths(info, oe.source.index, key)
            vpath.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(seg, vpath)
            written[key] = vpath.relative_to(out).as_posix()
        rows = ds.read_episode_rows(oe.source)
        st.original(oe.source, rows)  # only to check the input's stats: the pixels are replaced
        if ds.image_keys:
            t = _replace_image_columns(pq.read_table(ds.root / oe.source.data_file), res.images)
            (out / oe.source.data_file).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(t, out / oe.source.data_file)
        stats = {**st.numeric(rows), **res.stats}
        all_stats.append(stats)
        stat_lines.append(_jsonl_line({"episode_index": oe.source.index, "stats": _stats_lists(stats)}))
    (out / "meta/episodes_stats.jsonl").write_text("".join(line + "\n" for line in stat_lines))
    if (ds.root / "meta/stats.json").is_file():
        write_json(out / "meta/stats.json", _aggregate_all(all_stats))
    if written:
        _describe_videos(info, out, written)
        write_json(out / "meta/info.json", info)

