"""The worker's own last look at an output before it is published.

Cheap structural checks only (metadata re-read, row and frame counts): a failure here is a bug in
the writer, so it exits INTERNAL and nothing is published. The full, independent check of every
frame lives in the tests (tests/worker/checker.py).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

from . import image_dataset, lerobot_dataset
from .errors import ExitCode, WorkerError
from .provenance import PROVENANCE_PATH
from .video import probe


def _fail(msg: str) -> WorkerError:
    return WorkerError(ExitCode.INTERNAL, f"output self-check failed: {msg}")


def _skipped_episodes(root: Path) -> set[int]:
    """Source episodes left out as undecodable (on_bad_sample: skip), from the provenance file."""
    try:
        doc = json.loads((root / PROVENANCE_PATH).read_text())
    except (OSError, ValueError):
        return set()
    return {int(s["episode_index"]) for s in doc.get("skipped") or [] if "episode_index" in s}


def check_output(root: Path) -> None:
    if not lerobot_dataset.is_lerobot(root):
        image_dataset.check_output(root)
        return
    try:
        ds = lerobot_dataset.load(root)
    except WorkerError as exc:
        raise _fail(exc.message) from exc
    if sum(e.length for e in ds.episodes) != ds.total_frames:
        raise _fail("episode lengths do not add up to total_frames")
    rows = sum(pq.ParquetFile(root / f).metadata.num_rows for f in ds.data_files())
    if rows != ds.total_frames:
        raise _fail(f"{rows} data rows, total_frames is {ds.total_frames}")
    per_file: dict[str, int] = defaultdict(int)
    for ep in ds.episodes:
        for rel, _ in ep.videos.values():
            per_file[rel] += ep.length
    # a skipped episode's original is the source's file, copied as it was: it does not probe
    unreadable = {rel for i in _skipped_episodes(root) if i < len(ds.episodes) for rel, _ in ds.episodes[i].videos.values()}
    for rel, frames in per_file.items():
        if rel in unreadable:
            continue
        got = probe(root / rel).frames
        if got != frames:
            raise _fail(f"{rel} has {got} frames, its episodes {frames}")
