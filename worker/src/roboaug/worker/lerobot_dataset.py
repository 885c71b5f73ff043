"""Reading a LeRobot dataset (v2.1 or v3.0) into one in-memory description.

Only metadata is loaded eagerly (info, episodes, stats, tasks); frames stay in their mp4 files and
data rows are read per file on demand. Both versions map onto the same `Episode` records so the
augmentation and writing code handles episodes, not layouts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import dataset_bounds as bounds
from .errors import ExitCode, WorkerError

SUPPORTED_VERSIONS = ("v2.1", "v3.0")
STAT_KEYS = ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99")
CAMERA_DTYPES = ("video", "image")


@dataclass
class Episode:
    index: int
    length: int
    tasks: list[str]
    meta: dict[str, Any]  # the episodes row (v3.0) or episodes.jsonl line (v2.1), as read
    stats: dict[str, dict[str, np.ndarray]]
    data_file: str  # relative path of the data parquet holding its rows
    videos: dict[str, tuple[str, float]] = field(default_factory=dict)  # key -> (relative mp4, from_ts)


@dataclass
class LeRobotDataset:
    root: Path
    info: dict[str, Any]
    episodes: list[Episode]
    sizes: dict[str, int] | None = None
    """Path -> bytes of every source file, when the files are not all here yet (a Hub source
    fetched in parts: hub.SourceParts); None: the files are on disk, asked there."""

    def file_size(self, rel: str) -> int:
        if self.sizes is not None:
            return self.sizes[rel]
        return (self.root / rel).stat().st_size

    @property
    def version(self) -> str:
        return self.info["codebase_version"]

    @property
    def fps(self) -> int:
        return int(self.info["fps"])

    @property
    def features(self) -> dict[str, dict]:
        return self.info["features"]

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] == "video"]

    @property
    def image_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] == "image"]

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] in CAMERA_DTYPES]

    @property
    def total_frames(self) -> int:
        return int(self.info["total_frames"])

    def data_files(self) -> list[str]:
        return sorted({e.data_file for e in self.episodes})

    def read_episode_rows(self, episode: Episode, table_cache: dict[str, pa.Table] | None = None) -> pa.Table:
        """The data rows of one episode, in frame order."""
        if table_cache is not None and episode.data_file in table_cache:
            table = table_cache[episode.data_file]
        else:
            table = pq.read_table(self.root / episode.data_file)
            if table_cache is not None:
                table_cache.clear()  # one file at a time: bounded memory
                table_cache[episode.data_file] = table
        if self.version == "v2.1":
            return table
        ep = table.column("episode_index").to_numpy()
        rows = np.nonzero(ep == episode.index)[0]
        if len(rows) != episode.length:
            raise WorkerError(
                ExitCode.UNSUPPORTED_FORMAT,
                f"{episode.data_file}: episode {episode.index} has {len(rows)} rows, meta says {episode.length}",
            )
        return table.take(pa.array(rows))


def video_feature_info(feature: dict) -> dict:
    """A video feature's codec info: `info` in current datasets, `video_info` in older ones."""
    return feature.get("info") or feature.get("video_info") or {}


def _parse_stats_columns(row: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    stats: dict[str, dict[str, np.ndarray]] = {}
    for col, value in row.items():
        if col.startswith("stats/") and value is not None:
            feat, _, key = col[len("stats/"):].rpartition("/")
            stats.setdefault(feat, {})[key] = np.asarray(value)
    return stats


def is_lerobot(root: Path) -> bool:
    """A LeRobot dataset is a folder with meta/info.json; anything else is read as an image dataset."""
    return (root / "meta" / "info.json").is_file()


def load(root: Path, *, check_files: bool = True, sizes: dict[str, int] | None = None) -> LeRobotDataset:
    """Read a LeRobot dataset's metadata; UNSUPPORTED_FORMAT for another version or a broken layout.
    `check_files=False`: only meta/ is read (a preview fetches just the picked episodes' files and
    checks those with `check_episode_files`). `sizes` (the source's file list, only meta/ on disk):
    every episode's files are checked against it instead, with the same errors as on disk."""
    info_path = root / "meta" / "info.json"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WorkerError(ExitCode.UNSUPPORTED_FORMAT, f"meta/info.json is unreadable: {exc}") from exc
    version = info.get("codebase_version")
    if version not in SUPPORTED_VERSIONS:
        raise WorkerError(
            ExitCode.UNSUPPORTED_FORMAT,
            f"LeRobot codebase_version {version!r} is not supported (supported: {', '.join(SUPPORTED_VERSIONS)})",
        )
    for key in ("fps", "features", "total_episodes", "total_frames", "data_path"):
        if key not in info:
            raise WorkerError(ExitCode.UNSUPPORTED_FORMAT, f"meta/info.json has no {key!r}")
    check_info(info, version)
    if not any(f.get("dtype") in CAMERA_DTYPES for f in info["features"].values()):
        raise WorkerError(
            ExitCode.NO_CAMERA_FEATURE,
            "the dataset has no camera feature (no feature of dtype 'video' or 'image'): nothing to augment",
        )
    try:
        episodes = _load_v30(root, info) if version == "v3.0" else _load_v21(root, info)
    except WorkerError:
        raise
    except (OSError, KeyError, ValueError, pa.ArrowException) as exc:
        raise WorkerError(ExitCode.UNSUPPORTED_FORMAT, f"LeRobot {version} metadata is unreadable: {exc}") from exc
    if [e.index for e in episodes] != list(range(len(episodes))) or len(episodes) != info["total_episodes"]:
        raise WorkerError(ExitCode.UNSUPPORTED_FORMAT, "episode indices are not 0..total_episodes-1")
    ds = LeRobotDataset(root=root, info=info, episodes=episodes, sizes=sizes)
    if check_files:
        for ep in episodes:
            check_episode_files(root, ep, listed=sizes)
    return ds


def check_episode_files(root: Path, ep: Episode, *, data: bool = True, listed: dict[str, int] | None = None) -> None:
    """The episode's video files (and data file) exist: on disk, or in `listed` when given."""
    def exists(rel: str) -> bool:
        return rel in listed if listed is not None else (root / rel).is_file()

    for key, (rel, _) in ep.videos.items():
        if not exists(rel):
            raise WorkerError(ExitCode.CORRUPT_VIDEO, f"video file {rel} of episode {ep.index} is missing")
    if data and not exists(ep.data_file):
        raise WorkerError(ExitCode.UNSUPPORTED_FORMAT, f"data file {ep.data_file} of episode {ep.index} is missing")


def check_info(info: dict, version: str) -> None:
    """meta/info.json's fields that name files or scale work, within dataset_bounds' rules; checked
    once here, so the writer may render the same templates for the output's files."""
    bounds.check_fps(info["fps"])
    if not isinstance(info["features"], dict) or not all(isinstance(f, dict) for f in info["features"].values()):
        raise bounds.invalid("meta/info.json: features must be an object of objects")
    chunks = info.get("chunks_size", 1000)
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise bounds.invalid(f"meta/info.json: chunks_size must be an integer >= 1, got {chunks!r}")
    fields = bounds.TEMPLATE_FIELDS[version]
    bounds.check_template("data_path", info["data_path"], fields["data_path"])
    zeros = {name: 0 for name in fields["video_path"] | fields["data_path"]}
    bounds.render_relative("data_path", info["data_path"], **zeros)
    video_keys = [k for k, f in info["features"].items() if f.get("dtype") == "video"]
    if video_keys:
        if "video_path" not in info:
            raise bounds.invalid("meta/info.json has no 'video_path' but declares video features")
        bounds.check_template("video_path", info["video_path"], fields["video_path"])
        for key in video_keys:  # feature names become path segments: each one checked here
            bounds.render_relative("video_path", info["video_path"], **{**zeros, "video_key": key})


def _load_v30(root: Path, info: dict) -> list[Episode]:
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise WorkerError(ExitCode.UNSUPPORTED_FORMAT, "meta/episodes/ has no parquet files")
    video_keys = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    episodes = []
    for f in files:
        for row in pq.read_table(f).to_pylist():
            ep = int(row["episode_index"])
            data_file = bounds.render_path(
                root, "data_path", info["data_path"],
                chunk_index=int(row["data/chunk_index"]), file_index=int(row["data/file_index"]),
            )
            videos = {
                k: (
                    bounds.render_path(
                        root, "video_path", info["video_path"],
                        video_key=k,
                        chunk_index=int(row[f"videos/{k}/chunk_index"]),
                        file_index=int(row[f"videos/{k}/file_index"]),
                    ),
                    float(row[f"videos/{k}/from_timestamp"]),
                )
                for k in video_keys
            }
            episodes.append(
                Episode(ep, int(row["length"]), list(row["tasks"]), row, _parse_stats_columns(row), data_file, videos)
            )
    return episodes


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _load_v21(root: Path, info: dict) -> list[Episode]:
    chunks_size = info.get("chunks_size", 1000)  # check_info: an integer >= 1
    stats_by_ep = {}
    stats_path = root / "meta" / "episodes_stats.jsonl"
    if stats_path.is_file():
        for line in _read_jsonl(stats_path):
            stats_by_ep[int(line["episode_index"])] = {
                feat: {k: np.asarray(v) for k, v in s.items()} for feat, s in line["stats"].items()
            }
    video_keys = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    episodes = []
    for line in _read_jsonl(root / "meta" / "episodes.jsonl"):
        ep = int(line["episode_index"])
        chunk = ep // chunks_size
        data_file = bounds.render_path(root, "data_path", info["data_path"], episode_chunk=chunk, episode_index=ep)
        videos = {
            k: (bounds.render_path(root, "video_path", info["video_path"], episode_chunk=chunk, video_key=k,
                                   episode_index=ep), 0.0)
            for k in video_keys
        }
        episodes.append(
            Episode(ep, int(line["length"]), list(line["tasks"]), line, stats_by_ep.get(ep, {}), data_file, videos)
        )
    episodes.sort(key=lambda e: e.index)
    return episodes
