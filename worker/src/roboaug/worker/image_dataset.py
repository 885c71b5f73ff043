"""Plain `datasets` image datasets: parquet files with Image columns (struct<bytes, path>).

Every row is treated as a one-frame episode: its global row number (files in sorted order) keys
the sampled parameters, the image column's position is the camera. Output keeps the layout:
copy mode keeps each source file byte for byte and writes `<stem>-roboaug.parquet` beside it
(same split prefix, so `datasets`' split patterns pick it up) holding the augmented copies in
plan order; inplace mode rewrites each file with the same rows and augmented images.
`augment` is the one entry (see handler.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from roboaug.worker.transforms import apply_clip, sample_copy_params

from . import provenance
from .dataset_card import extend_data_files, read_card_yaml, scale_split_counts
from .errors import ExitCode, WorkerError
from .files import copy_tree
from .handler import PREVIEW_ROWS, Augmented, FormatJob
from .png import decode_png, png_bytes
from .pool import run_tasks

AUGMENTED_SUFFIX = "-roboaug"
ROWS_PER_TASK = 256


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


def source_frames(source: Path) -> int:
    """The source's rows (one frame each), from the parquet footers (handler.py): the same count
    `augment` works through, so the pipeline's check before it is the only one needed."""
    return load(source).total_rows


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


def augment(source: Path, stage: Path, job: FormatJob) -> Augmented:
    spec, reporter = job.spec, job.reporter
    ds = load(source)
    sets = spec.copies_plan()
    copy_mode = spec.augment_dataset_mode == "copy"
    tasks: list[ImageTask] = []
    layout: list[tuple[str, list[int]]] = []  # per output file: source file and its row sources
    offset = 0
    for rel, n_rows in zip(ds.files, ds.rows_per_file):
        jobs = []
        if copy_mode:
            for j, ts in enumerate(sets):
                jobs += [RowJob(r, offset + r, j, ts) for r in range(n_rows)]
        else:
            jobs = [RowJob(r, offset + r, 0, sets[(offset + r) % len(sets)]) for r in range(n_rows)]
        layout.append((rel, [j.row_in_file for j in jobs]))
        for start in range(0, len(jobs), ROWS_PER_TASK):
            tasks.append(ImageTask(len(tasks), str(source / rel), tuple(ds.columns),
                                   tuple(jobs[start:start + ROWS_PER_TASK]), spec,
                                   preview=PREVIEW_ROWS if not tasks else 0))
        offset += n_rows
    total = sum(len(t.rows) for t in tasks)
    done = {"rows": 0}
    reporter.update("augmenting", episodes_total=total, frames_total=total, force=True)

    def on_done(task, result) -> None:
        done["rows"] += len(task.rows)
        reporter.update("augmenting", episodes_done=done["rows"], episodes_total=total,
                        frames_done=done["rows"], frames_total=total)

    results = run_tasks(run_image_task, tasks, job.processes, on_done)
    # write: originals kept (copy) or replaced (inplace), results consumed in task order
    copy_tree(source, stage, skip=() if copy_mode else ds.files)
    entries = []
    by_file: dict[str, list] = {}
    for task, res in zip(tasks, results):
        by_file.setdefault(task.path, []).append((task, res))
    for rel, row_sources in layout:
        images: dict[str, list[bytes]] = {c: [] for c in ds.columns}
        jobs, params = [], []
        for task, res in by_file.get(str(source / rel), []):
            jobs.extend(task.rows)
            params.extend(res.params)
            for c in ds.columns:
                images[c].extend(res.images[c])
        out_rel = augmented_name(rel) if copy_mode else rel
        write_table(ds, rel, stage / out_rel, row_sources, images)
        for i, (row_job, p) in enumerate(zip(jobs, params)):
            entries.append({"file": out_rel, "row": i, "source_file": rel, "source_row": row_job.row_in_file,
                            "copy": row_job.copy, "transforms": list(row_job.transforms), "params": p})
    provenance.write_provenance(stage, spec=spec, source=job.source_id, fmt="datasets-image", entries=entries)
    provenance.write_preview(stage, [p for r in results for p in r.preview][:PREVIEW_ROWS])
    card = read_card_yaml(source)
    if copy_mode:
        card = scale_split_counts(card, 1 + len(sets))
        card = extend_data_files(card, {rel: augmented_name(rel) for rel in ds.files})
    provenance.write_card(stage, spec=spec, source=job.source_id, fmt="datasets image dataset", base_yaml=card,
                          counts={"rows": ds.total_rows * ((1 + len(sets)) if copy_mode else 1), "augmented rows": total},
                          cameras=ds.columns)
    return Augmented("image", total, total)
