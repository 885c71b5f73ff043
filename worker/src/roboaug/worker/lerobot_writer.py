"""Writing the augmented LeRobot dataset (v2.1 or v3.0, the version that was read).

copy mode: every source file is copied byte for byte and the augmented episodes are appended in
new files that sort after the existing ones; inplace mode: same episodes, indices and totals,
every video file re-encoded with the same frame count and timing, camera stats recomputed.
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

from .episode_task import EpisodeResult
from .files import copy_tree, write_json
from .lerobot_dataset import Episode, LeRobotDataset
from .stats import aggregate, constant_stats, shift_stats
from .video import GRID_TOLERANCE_S, concat_segments

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


def new_episode_stats(ds: LeRobotDataset, oe: OutputEpisode, res: EpisodeResult, index_start: int) -> dict:
    """Stats of an output episode: numeric ones carried over (index and episode_index shifted),
    camera ones from the augmented pixels."""
    stats = {f: dict(s) for f, s in oe.source.stats.items()}
    src_from = _source_from_index(ds, oe.source)
    if "index" in stats:
        stats["index"] = shift_stats(stats["index"], index_start - src_from)
    if "episode_index" in stats:
        stats["episode_index"] = constant_stats(oe.out_index, oe.source.length, stats["episode_index"])
    stats.update(res.stats)
    return stats


def _source_from_index(ds: LeRobotDataset, ep: Episode) -> int:
    if "dataset_from_index" in ep.meta:
        return int(ep.meta["dataset_from_index"])
    return sum(e.length for e in ds.episodes[: ep.index])


def _aggregate_all(per_episode: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, list]]:
    features = sorted({f for s in per_episode for f in s})
    return _stats_lists({f: aggregate([s[f] for s in per_episode if f in s]) for f in features})


# -- entry point ------------------------------------------------------------------------------
def write(ds: LeRobotDataset, out: Path, mode: str, plan: list[OutputEpisode], results: dict[int, EpisodeResult]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if ds.version == "v3.0":
        (_write_v30_copy if mode == "copy" else _write_v30_inplace)(ds, out, plan, results)
    else:
        (_write_v21_copy if mode == "copy" else _write_v21_inplace)(ds, out, plan, results)


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


def _write_v30_copy(ds, out, plan, results):
    info = dict(ds.info)
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
    tables = []
    for oe in plan:
        t = ds.read_episode_rows(oe.source, cache)
        t = _set_int_column(t, "episode_index", np.full(t.num_rows, oe.out_index, dtype=np.int64))
        t = _set_int_column(t, "index", np.arange(index_starts[oe.out_index], index_starts[oe.out_index] + t.num_rows))
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
            starts = concat_segments([(Path(s), n) for _, (s, n) in members], path, ds.fps)
            for (oe, _), start in zip(members, starts):
                video_start[(key, oe.out_index)] = start

    # episode rows, one new meta/episodes file
    ep_files = sorted(p.relative_to(ds.root).as_posix() for p in (ds.root / "meta/episodes").glob("chunk-*/file-*.parquet"))
    meta_pos = _next_index(*_last_index(ep_files), chunks_size)
    rows, all_stats = [], [e.stats for e in ds.episodes]
    for i, oe in enumerate(plan):
        res = results[oe.out_index]
        row = dict(oe.source.meta)
        stats = new_episode_stats(ds, oe, res, index_starts[oe.out_index])
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
        for feat, s in stats.items():
            for k, v in s.items():
                if f"stats/{feat}/{k}" in row:
                    row[f"stats/{feat}/{k}"] = np.asarray(v).tolist()
        rows.append(row)
    ep_schema = pq.read_schema(ds.root / ep_files[0])
    path = out / f"meta/episodes/chunk-{meta_pos[0]:03d}/file-{meta_pos[1]:03d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=ep_schema), path)

    total_eps = len(ds.episodes) + len(plan)
    info.update(total_episodes=total_eps, total_frames=running, splits={"train": f"0:{total_eps}"})
    write_json(out / "meta/info.json", info)
    write_json(out / "meta/stats.json", _aggregate_all(all_stats))


def _write_v30_inplace(ds, out, plan, results):
    ep_files = sorted(p.relative_to(ds.root).as_posix() for p in (ds.root / "meta/episodes").glob("chunk-*/file-*.parquet"))
    video_files = sorted({ep.videos[k][0] for ep in ds.episodes for k in ds.video_keys})
    data_files = ds.data_files() if ds.image_keys else []
    copy_tree(ds.root, out, skip=[*ep_files, *video_files, *data_files, "meta/stats.json"])
    by_source = {oe.source.index: oe for oe in plan}

    # every video file rebuilt from its episodes' segments, in the order they sat in it
    new_start: dict[tuple[str, int], float] = {}
    for key in ds.video_keys:
        files: dict[str, list[Episode]] = {}
        for ep in ds.episodes:
            files.setdefault(ep.videos[key][0], []).append(ep)
        for rel, eps in sorted(files.items()):
            eps.sort(key=lambda e: e.videos[key][1])
            segs = [results[by_source[e.index].out_index].segments[key] for e in eps]
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            starts = concat_segments([(Path(s), n) for s, n in segs], out / rel, ds.fps)
            for e, start in zip(eps, starts):
                if abs(start - e.videos[key][1]) > GRID_TOLERANCE_S:
                    # a source with gaps between episodes: the rebuilt file is packed, so record where
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

    all_stats = []
    for rel in ep_files:
        table = pq.read_table(ds.root / rel)
        rows = table.to_pylist()
        for row in rows:
            ep = ds.episodes[int(row["episode_index"])]
            res = results[by_source[ep.index].out_index]
            stats = {**ep.stats, **res.stats}
            all_stats.append(stats)
            for feat, s in res.stats.items():
                for k, v in s.items():
                    if f"stats/{feat}/{k}" in row:
                        row[f"stats/{feat}/{k}"] = np.asarray(v).tolist()
            for key in ds.video_keys:
                if (key, ep.index) in new_start:
                    start = new_start[(key, ep.index)]
                    row[f"videos/{key}/from_timestamp"] = start
                    row[f"videos/{key}/to_timestamp"] = start + ep.length / ds.fps
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out / rel)
    write_json(out / "meta/stats.json", _aggregate_all(all_stats))


# -- v2.1 -------------------------------------------------------------------------------------
def _v21_paths(info: dict, ep: int, key: str | None = None) -> str:
    chunk = ep // int(info.get("chunks_size", 1000))
    if key is None:
        return info["data_path"].format(episode_chunk=chunk, episode_index=ep)
    return info["video_path"].format(episode_chunk=chunk, video_key=key, episode_index=ep)


def _write_v21_copy(ds, out, plan, results):
    info = dict(ds.info)
    copy_tree(ds.root, out)
    running = ds.total_frames
    ep_lines, stat_lines, all_stats = [], [], [e.stats for e in ds.episodes]
    cache: dict[str, pa.Table] = {}
    for oe in plan:
        res = results[oe.out_index]
        t = ds.read_episode_rows(oe.source, cache)
        t = _set_int_column(t, "episode_index", np.full(t.num_rows, oe.out_index, dtype=np.int64))
        t = _set_int_column(t, "index", np.arange(running, running + t.num_rows))
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
        stats = new_episode_stats(ds, oe, res, running)
        all_stats.append(stats)
        ep_lines.append(_jsonl_line({**oe.source.meta, "episode_index": oe.out_index}))
        stat_lines.append(_jsonl_line({"episode_index": oe.out_index, "stats": _stats_lists(stats)}))
        running += oe.source.length
    _append_lines(out / "meta/episodes.jsonl", ep_lines)
    _append_lines(out / "meta/episodes_stats.jsonl", stat_lines)
    total_eps = len(ds.episodes) + len(plan)
    chunks_size = int(info.get("chunks_size", 1000))
    info.update(
        total_episodes=total_eps,
        total_frames=running,
        total_videos=total_eps * len(ds.video_keys),
        total_chunks=math.ceil(total_eps / chunks_size),
        splits={"train": f"0:{total_eps}"},
    )
    write_json(out / "meta/info.json", info)
    if (ds.root / "meta/stats.json").is_file():  # not read by v2.1 loaders; kept consistent anyway
        write_json(out / "meta/stats.json", _aggregate_all(all_stats))


def _append_lines(path: Path, lines: list[str]) -> None:
    text = path.read_text() if path.is_file() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    path.write_text(text + "".join(line + "\n" for line in lines))


def _write_v21_inplace(ds, out, plan, results):
    info = ds.info
    skip = [ep.videos[k][0] for ep in ds.episodes for k in ds.video_keys] + ["meta/episodes_stats.jsonl"]
    if ds.image_keys:
        skip += [ep.data_file for ep in ds.episodes]
    copy_tree(ds.root, out, skip=skip)
    stat_lines, all_stats = [], []
    for oe in sorted(plan, key=lambda o: o.source.index):
        res = results[oe.out_index]
        for key in ds.video_keys:
            seg, _ = res.segments[key]
            vpath = out / _v21_paths(info, oe.source.index, key)
            vpath.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(seg, vpath)
        if ds.image_keys:
            t = _replace_image_columns(pq.read_table(ds.root / oe.source.data_file), res.images)
            (out / oe.source.data_file).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(t, out / oe.source.data_file)
        stats = {**oe.source.stats, **res.stats}
        all_stats.append(stats)
        stat_lines.append(_jsonl_line({"episode_index": oe.source.index, "stats": _stats_lists(stats)}))
    (out / "meta/episodes_stats.jsonl").write_text("".join(line + "\n" for line in stat_lines))
    if (ds.root / "meta/stats.json").is_file():
        write_json(out / "meta/stats.json", _aggregate_all(all_stats))

