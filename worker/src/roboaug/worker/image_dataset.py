"""Plain `datasets` image datasets: parquet files with Image columns (struct<bytes, path>).

Every row is treated as a one-frame episode: its global row number (files in sorted order) keys
the sampled parameters, the image column's position is the camera. Output keeps the layout:
copy mode keeps each source file byte for byte and writes `<stem>-roboaug.parquet` beside it
(same split prefix, so `datasets`' split patterns pick it up) holding the augmented copies in
plan order; inplace mode rewrites each file with the same rows and augmented images.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from roboaug.worker.transforms import apply_clip, sample_copy_params

from .episode_task import decode_png, png_bytes
from .errors import ExitCode, WorkerError

AUGMENTED_SUFFIX = "-roboaug"


def _is_image_type(t: pa.DataType) -> bool:
    if not pa.types.is_struct(t):
        return False
    i = t.get_field_index("bytes")
    return i >= 0 and (pa.types.is_binary(t.field(i).type) or pa.types.is_large_binary(t.field(i).type))


def image_columns(schema: pa.Schema) -> list[str]:
    """Image columns: declared `Image` in the huggingface features metadata, else struct<bytes, path>."""
    meta = (schema.metadata or {}).get(b"huggingface")
    if meta:
        try:
            feats = json.loads(meta).get("info", {}).get("features", {})
            declared = [k for k, v in feats.items() if isinstance(v, dict) and v.get("_type") == "Image"]
            if declared:
                return [k for k in schema.names if k in declared]
        except (ValueError, AttributeError):
            pass
    return [f.name for f in schema if _is_image_type(f.type)]


def data_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.parquet")
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


@dataclass
class ImageDataset:
    root: Path
    files: list[str]
    columns: list[str]
    rows_per_file: list[int]

    @property
    def total_rows(self) -> int:
        return sum(self.rows_per_file)


def load(root: Path) -> ImageDataset:
    files = data_files(root)
    if not files:
        raise WorkerError(
            ExitCode.UNSUPPORTED_FORMAT,
            "not a LeRobot dataset (no meta/info.json) and no parquet files: format not recognised",
        )
    try:
        schemas = [pq.read_schema(root / f) for f in files]
        rows = [pq.ParquetFile(root / f).metadata.num_rows for f in files]
    except (OSError, pa.ArrowException) as exc:
        raise WorkerError(ExitCode.UNSUPPORTED_FORMAT, f"parquet file unreadable: {exc}") from exc
    columns = image_columns(schemas[0])
    if not columns:
        raise WorkerError(
            ExitCode.NO_CAMERA_FEATURE,
            f"{files[0]} has no image column (struct<bytes, path> / datasets Image): nothing to augment",
        )
    for f, s in zip(files, schemas):
        if image_columns(s) != columns:
            raise WorkerError(ExitCode.UNSUPPORTED_FORMAT, f"{f}: image columns differ from {files[0]}'s {columns}")
    return ImageDataset(root, files, columns, rows)


@dataclass(frozen=True)
class RowJob:
    row_in_file: int
    global_row: int
    copy: int
    transforms: tuple[str, ...]


@dataclass(frozen=True)
class ImageTask:
    """Augment the listed rows of one file (each row's image columns)."""

    task_index: int
    path: str
    columns: tuple[str, ...]
    rows: tuple[RowJob, ...]
    spec: Any
    preview: int = 0  # how many rows to keep original/augmented previews for


@dataclass
class ImageResult:
    task_index: int
    images: dict[str, list[bytes]] = field(default_factory=dict)
    params: list[dict[str, dict]] = field(default_factory=list)
    preview: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    frames: int = 0


def run_image_task(task: ImageTask) -> ImageResult:
    table = pq.read_table(task.path, columns=list(task.columns))
    cols = {c: table.column(c).to_pylist() for c in task.columns}
    res = ImageResult(task_index=task.task_index, images={c: [] for c in task.columns})
    for job in task.rows:
        row_params = {}
        for cam, col in enumerate(task.columns):
            cell = cols[col][job.row_in_file]
            if not cell or cell.get("bytes") is None:
                raise WorkerError(ExitCode.UNSUPPORTED_FORMAT, f"{Path(task.path).name}: row {job.row_in_file} of {col!r} has no image bytes")
            try:
                rgb = decode_png(cell["bytes"])
            except WorkerError as exc:
                raise WorkerError(ExitCode.CORRUPT_VIDEO, f"{Path(task.path).name}: row {job.row_in_file} of {col!r}: {exc.message}") from exc
            h, w = rgb.shape[:2]
            params = sample_copy_params(
                task.spec, job.transforms, seed=int(task.spec.augment_seed), episode=job.global_row,
                copy=job.copy, camera=cam, width=w, height=h,
            )
            out = apply_clip(rgb[None], params, np.zeros(1, dtype=np.int64))[0]
            res.images[col].append(png_bytes(out))
            row_params[col] = params.to_dict()
            if cam == 0 and len(res.preview) < task.preview:
                res.preview.append((rgb, out))
            res.frames += 1
        res.params.append(row_params)
    return res


def augmented_name(rel: str) -> str:
    p = Path(rel)
    return (p.parent / f"{p.stem}{AUGMENTED_SUFFIX}{p.suffix}").as_posix()


def write_table(ds: ImageDataset, rel: str, target: Path, row_sources: list[int], images: dict[str, list[bytes]]) -> None:
    """Write rows `row_sources` of source file `rel` (repeats allowed), image columns replaced, to `target`."""
    src = pq.read_table(ds.root / rel)
    table = src.take(pa.array(row_sources, type=pa.int64()))
    for col, pngs in images.items():
        i = table.schema.get_field_index(col)
        old = table.column(col).to_pylist()
        new = [{"bytes": b, "path": (o or {}).get("path")} for b, o in zip(pngs, old)]
        table = table.set_column(i, table.schema.field(i), pa.array(new, type=table.schema.field(i).type))
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.cast(src.schema), target)


_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n?", re.S)


def read_card_yaml(root: Path) -> dict:
    readme = root / "README.md"
    if not readme.is_file():
        return {}
    m = _FRONT_MATTER.match(readme.read_text())
    if not m:
        return {}
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def scale_split_counts(card: dict, factor: int) -> dict:
    """`dataset_info` split sizes after every row got `factor - 1` augmented copies.

    `datasets` compares recorded num_examples with what it reads, so they must follow the rows;
    byte sizes are dropped rather than guessed.
    """
    infos = card.get("dataset_info")
    for info in infos if isinstance(infos, list) else [infos] if isinstance(infos, dict) else []:
        for split in info.get("splits", []) or []:
            if "num_examples" in split:
                split["num_examples"] = int(split["num_examples"]) * factor
            split.pop("num_bytes", None)
        info.pop("dataset_size", None)
        info.pop("download_size", None)
    return card


def _glob_regex(pattern: str) -> "re.Pattern[str]":
    """A data_files pattern as `datasets` resolves it (fsspec glob, relative to the repo root):
    `**` spans folders, `*` and `?` stay within one, `[...]` is a class."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            if pattern.startswith("/", i):  # "**/" also matches no folder at all
                out[-1] = "(?:.*/)?"
                i += 1
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _extend_paths(paths, added: dict[str, str]):
    """`paths` (one pattern or a list) plus every augmented file whose source file they match
    but which they do not match themselves (explicit file lists; globs that exclude the suffix)."""
    patterns = [paths] if isinstance(paths, str) else list(paths)
    regexes = [_glob_regex(p.removeprefix("./")) for p in patterns if isinstance(p, str)]
    extra = [aug for src, aug in added.items()
             if any(r.match(src) for r in regexes) and not any(r.match(aug) for r in regexes)]
    if not extra:
        return paths
    return patterns + extra


def extend_data_files(card: dict, added: dict[str, str]) -> dict:
    """The card's `configs[].data_files` reaching the augmented files `added` (source -> new file).

    A card that names its files one by one (or whose globs leave our suffix out) would otherwise
    load only the original rows, while the split sizes we record count the augmented ones too.
    Accepts every form the Hub's card metadata allows: a pattern, a list of patterns, a list of
    {split, path} entries (path a pattern or a list), and a {split: paths} mapping.
    """
    for cfg in card.get("configs") or []:
        if not isinstance(cfg, dict) or "data_files" not in cfg:
            continue
        files = cfg["data_files"]
        if isinstance(files, dict):
            cfg["data_files"] = {split: _extend_paths(p, added) for split, p in files.items()}
        elif isinstance(files, list) and any(isinstance(e, dict) for e in files):
            for entry in files:
                if isinstance(entry, dict) and "path" in entry:
                    entry["path"] = _extend_paths(entry["path"], added)
        else:
            cfg["data_files"] = _extend_paths(files, added)
    return card
