"""Plain `datasets` image datasets: parquet files with Image columns (struct<bytes, path>).

Every row is treated as a one-frame episode: its global row number (files in sorted order) keys
the sampled parameters, the image column's position is the camera. Images are read as `datasets`
shows them (EXIF orientation applied) and written in their source's encoding and mode
(image_codec.py). Output keeps the layout: copy mode keeps each source file byte for byte and
writes `<stem>.roboaug.parquet` beside it holding the augmented copies in plan order; inplace mode
rewrites each file with the same rows and augmented images. The card's `configs` list every
split's files explicitly, originals first, so `load_dataset` returns the original rows at their
indices and the augmented ones after them; its split sizes are recounted.
Undecodable images fail the job, or with `on_bad_sample: skip` are left out (copy) or kept as
they were (inplace) and listed under `skipped` in the provenance file.
`augment` is the one entry (see handler.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from roboaug.worker.transforms import apply_clip, sample_copy_params

from . import imagefolder, provenance
from .dataset_card import config_splits, read_card_yaml, with_data_files, with_split_sizes
from .errors import ExitCode, WorkerError
from .files import copy_tree
from .handler import PREVIEW_ROWS, Augmented, FormatJob
from .image_codec import decode_image, encode_image
from .pool import iter_tasks

AUGMENTED_SUFFIX = ".roboaug"
ROWS_PER_TASK = 256
TASK_SOURCE_BYTES = 16 * 1024 * 1024
"""A task holds at most ROWS_PER_TASK rows and, beyond one row, about this many bytes of source
images (by the parquet footer's sizes): 256 thumbnails or a few 12 MP photos, so memory per task
does not grow with the images' size."""
READ_BATCH_ROWS = 16
"""Source rows are read in batches of this many, not whole row groups (those of `datasets`' image
parquet hold 100 rows: 400 MB of 12 MP photos)."""
PREVIEW_MAX_HEIGHT = 480
"""Preview pairs are kept at most this tall (the grid's tiles are smaller): not 12 MP each."""
ROW_GROUP_BYTES = 64 * 1024 * 1024
"""An output file's row group is written once its images reach this many bytes (memory: one
row group per output file being written)."""
ROW_GROUP_ROWS = 1000
"""... or once it holds this many rows: each buffered cell costs ~250 bytes of Python objects
besides its image, so 64 MiB of thumbnails (100,000s of rows) would hold far more than 64 MiB."""


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
            "not a LeRobot dataset (no meta/info.json), no parquet files and no imagefolder metadata "
            "(metadata.jsonl / metadata.csv): format not recognised",
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


def _is_imagefolder(source: Path) -> bool:
    """No parquet data files but metadata.jsonl/csv: an imagefolder dataset (imagefolder.py)."""
    return not data_files(source) and imagefolder.is_imagefolder(source)


def source_frames(source: Path) -> int:
    """The source's rows (one frame each), from the parquet footers (handler.py): the same count
    `augment` works through, so the pipeline's check before it is the only one needed."""
    if _is_imagefolder(source):
        return imagefolder.source_frames(source)
    return load(source).total_rows


def check_output(root: Path) -> None:
    """The output's last look before publishing (verify.py): rows were written."""
    if _is_imagefolder(root):
        imagefolder.check_output(root)
    elif load(root).total_rows == 0:
        raise WorkerError(ExitCode.INTERNAL, "output self-check failed: no rows written")


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
    inplace: bool = False


@dataclass
class ImageResult:
    """The task's output rows: one per RowJob, but for skipped rows in copy mode (`kept` says
    which); a skipped row in inplace mode is kept with its source cells."""

    task_index: int
    images: dict[str, list[bytes]] = field(default_factory=dict)
    paths: dict[str, list[Optional[str]]] = field(default_factory=dict)  # each source cell's `path`
    params: list[Optional[dict[str, dict]]] = field(default_factory=list)  # None: a skipped row
    kept: list[int] = field(default_factory=list)  # indices into task.rows of the output rows
    skipped: list[dict] = field(default_factory=list)  # {row, column, error} of each skipped row
    preview: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    frames: int = 0


def _bad_sample(task: ImageTask, job: RowJob, col: str, exc: WorkerError) -> WorkerError:
    return WorkerError(exc.code, f"{Path(task.path).name}: row {job.row_in_file} of {col!r}: {exc.message}"
                       + (" (on_bad_sample: skip leaves such images out)" if exc.code == ExitCode.CORRUPT_VIDEO else ""))


def preview_copy(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    if h <= PREVIEW_MAX_HEIGHT:
        return rgb
    import cv2

    return cv2.resize(rgb, (max(1, round(w * PREVIEW_MAX_HEIGHT / h)), PREVIEW_MAX_HEIGHT), interpolation=cv2.INTER_AREA)


def read_rows(path: str, columns: list[str], rows: set[int]) -> dict[int, dict[str, Any]]:
    """Cells of `columns` in `rows` of a parquet file, read in batches of READ_BATCH_ROWS from the
    row groups that hold them: a task holds the images it needs, not its whole source file."""
    pf = pq.ParquetFile(path, buffer_size=1 << 20)
    cells: dict[int, dict[str, Any]] = {}
    first = 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        wanted = sorted(r for r in rows if first <= r < first + n)
        if wanted:
            start = first
            for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS, row_groups=[g], columns=columns):
                for r in wanted:
                    if start <= r < start + batch.num_rows:
                        cells[r] = {c: batch.column(c)[r - start].as_py() for c in columns}
                start += batch.num_rows
                if start > wanted[-1]:
                    break
        first += n
    return cells


def run_image_task(task: ImageTask) -> ImageResult:
    cells = read_rows(task.path, list(task.columns), {job.row_in_file for job in task.rows})
    res = ImageResult(task_index=task.task_index, images={c: [] for c in task.columns}, paths={c: [] for c in task.columns})
    policy = getattr(task.spec, "on_bad_sample", "fail")
    skip = getattr(policy, "value", policy) == "skip"
    for i, job in enumerate(task.rows):
        row = cells[job.row_in_file]
        decoded = {}
        try:
            for col in task.columns:
                cell = row[col]
                if not cell or cell.get("bytes") is None:
                    raise _bad_sample(task, job, col, WorkerError(ExitCode.CORRUPT_VIDEO, "no image bytes"))
                try:
                    decoded[col] = decode_image(cell["bytes"])
                except WorkerError as exc:
                    # the code decode_image chose: undecodable (corrupt) or over the size limit (invalid)
                    raise _bad_sample(task, job, col, exc) from exc
        except WorkerError as exc:
            if not skip or exc.code != ExitCode.CORRUPT_VIDEO:
                raise
            res.skipped.append({"row": job.row_in_file, "column": col, "error": exc.message})
            if task.inplace:  # the row stays, as it was
                for c in task.columns:
                    res.images[c].append((row[c] or {}).get("bytes"))
                    res.paths[c].append((row[c] or {}).get("path"))
                res.params.append(None)
                res.kept.append(i)
            continue
        row_params = {}
        for cam, col in enumerate(task.columns):
            img = decoded[col]
            h, w = img.rgb.shape[:2]
            params = sample_copy_params(
                task.spec, job.transforms, seed=int(task.spec.augment_seed), episode=job.global_row,
                copy=job.copy, camera=cam, width=w, height=h,
            )
            out = apply_clip(img.rgb[None], params, np.zeros(1, dtype=np.int64))[0]
            res.images[col].append(encode_image(out, img.alpha, img.source))
            res.paths[col].append(row[col].get("path"))
            row_params[col] = params.to_dict()
            if cam == 0 and len(res.preview) < task.preview:
                res.preview.append((preview_copy(img.rgb), preview_copy(out)))
            res.frames += 1
        res.params.append(row_params)
        res.kept.append(i)
    return res


def augmented_name(rel: str) -> str:
    p = Path(rel)
    return (p.parent / f"{p.stem}{AUGMENTED_SUFFIX}{p.suffix}").as_posix()


class OutputFile:
    """One output parquet file, written a row group at a time: rows of source file `rel` (repeats
    allowed), image columns replaced. A row group is written once its images reach
    ROW_GROUP_BYTES or ROW_GROUP_ROWS rows, so memory holds one row group, however large the
    file; a file under both is one row group, as one `pq.write_table` of the whole table writes it."""

    def __init__(self, ds: ImageDataset, rel: str, target: Path):
        self.rel = rel
        self.schema = pq.read_schema(ds.root / rel)
        self.columns = ds.columns
        others = [n for n in self.schema.names if n not in ds.columns]
        self.others = pq.read_table(ds.root / rel, columns=others) if others else None
        self.target = target
        self._writer: Optional[pq.ParquetWriter] = None
        self._rows: list[int] = []
        self._cells: dict[str, list[dict]] = {c: [] for c in ds.columns}
        self._bytes = 0
        self.rows = 0

    def add(self, row_sources: list[int], images: dict[str, list[bytes]], paths: dict[str, list[Optional[str]]]) -> None:
        for i, r in enumerate(row_sources):  # row by row: where a row group ends depends on the bytes alone
            self._rows.append(r)
            for c in self.columns:
                self._cells[c].append({"bytes": images[c][i], "path": paths[c][i]})
                self._bytes += len(images[c][i])
            if self._bytes >= ROW_GROUP_BYTES or len(self._rows) >= ROW_GROUP_ROWS:
                self._flush()

    def _flush(self) -> None:
        if not self._rows and self._writer is not None:  # the last row group ended at the file's end
            return
        indices = pa.array(self._rows, type=pa.int64())
        arrays = []
        for f in self.schema:
            if f.name in self._cells:
                arrays.append(pa.array(self._cells[f.name], type=f.type))
            else:
                arrays.append(self.others.column(f.name).take(indices))
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        if self._writer is None:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.target, self.schema)
        self._writer.write_table(table)
        self.rows += table.num_rows
        self._rows, self._bytes = [], 0
        self._cells = {c: [] for c in self.columns}

    def close(self) -> None:
        self._flush()  # an empty source file still gives its (empty) output file
        self._writer.close()


def _rows_per_task(path: Path) -> int:
    meta = pq.ParquetFile(path).metadata
    rows = max(1, meta.num_rows)
    per_row = sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups)) / rows
    return int(max(1, min(ROWS_PER_TASK, TASK_SOURCE_BYTES // max(1.0, per_row))))


def plan_tasks(ds: ImageDataset, spec, source: Path) -> Iterator[ImageTask]:
    """The tasks in output order: per source file, its output rows (copy: every row once per
    transform set, copy after copy; inplace: each row once) in chunks of `_rows_per_task`."""
    sets = spec.copies_plan()
    copy_mode = spec.augment_dataset_mode == "copy"
    offset, index, planned = 0, 0, 0
    for rel, n_rows in zip(ds.files, ds.rows_per_file):
        if copy_mode:
            jobs = [RowJob(r, offset + r, j, ts) for j, ts in enumerate(sets) for r in range(n_rows)]
        else:
            jobs = [RowJob(r, offset + r, 0, sets[(offset + r) % len(sets)]) for r in range(n_rows)]
        step = _rows_per_task(source / rel) if jobs else 1
        for start in range(0, len(jobs), step):
            yield ImageTask(index, str(source / rel), tuple(ds.columns), tuple(jobs[start:start + step]),
                            spec, preview=max(0, PREVIEW_ROWS - planned), inplace=not copy_mode)
            planned += len(jobs[start:start + step])
            index += 1
        offset += n_rows


def arrow_size(path: Path) -> tuple[int, int]:
    """(rows, Arrow bytes) of a parquet file as `datasets` counts a split's num_bytes (the tables it
    reads back; the tables written can differ by validity buffers), a row group at a time."""
    pf = pq.ParquetFile(path)
    total = 0
    for g in range(pf.metadata.num_row_groups):
        total += pf.read_row_group(g).nbytes
    return pf.metadata.num_rows, total


def card_for(source: Path, ds: ImageDataset, copy_mode: bool, stage: Path) -> dict:
    """The output's card YAML: every config's splits listing their files explicitly (originals,
    then their augmented files), and split sizes recounted from the files written."""
    card = read_card_yaml(source)
    splits = config_splits(card, ds.files)
    out_splits: dict[str, dict[str, list[str]]] = {}
    sizes: dict[str, dict[str, tuple[int, int, int]]] = {}
    for cfg, per_split in splits.items():
        out_splits[cfg], sizes[cfg] = {}, {}
        for split, files in per_split.items():
            listed = list(files) + ([augmented_name(f) for f in files] if copy_mode else [])
            out_splits[cfg][split] = listed
            n = nbytes = file_bytes = 0
            for f in listed:
                rows, arrow = arrow_size(stage / f)
                n, nbytes, file_bytes = n + rows, nbytes + arrow, file_bytes + (stage / f).stat().st_size
            sizes[cfg][split] = (n, nbytes, file_bytes)
    return with_split_sizes(with_data_files(card, out_splits), sizes)


def augment(source: Path, stage: Path, job: FormatJob) -> Augmented:
    """Streams: at most `2 x processes` tasks' results wait here, each output file holds one row
    group, and provenance entries go through a spool file: memory does not grow with the output."""
    if _is_imagefolder(source):
        return imagefolder.augment(source, stage, job)
    spec, reporter = job.spec, job.reporter
    ds = load(source)
    sets = spec.copies_plan()
    copy_mode = spec.augment_dataset_mode == "copy"
    tasks = list(plan_tasks(ds, spec, source))
    file_of = {str(source / rel): rel for rel in ds.files}
    total = sum(len(t.rows) for t in tasks)
    done = {"rows": 0}
    reporter.update("augmenting", episodes_total=total, frames_total=total, force=True)

    def on_done(task, result) -> None:
        done["rows"] += len(task.rows)
        reporter.update("augmenting", episodes_done=done["rows"], episodes_total=total,
                        frames_done=done["rows"], frames_total=total)

    # originals kept (copy) or replaced (inplace); augmented rows written as their tasks finish, in task order
    copy_tree(source, stage, skip=() if copy_mode else ds.files)
    spool = job.workdir / "image-provenance.jsonl"
    spool.parent.mkdir(parents=True, exist_ok=True)
    preview: list = []
    skipped: dict[tuple[str, int, str], str] = {}  # (file, row, column) -> error, first seen
    written: dict[str, int] = {}  # output file -> rows
    augmented = 0
    out: Optional[OutputFile] = None
    out_rel, row = "", 0

    def close(f: OutputFile, rel: str) -> None:
        f.close()
        written[rel] = f.rows

    try:
        with spool.open("w") as entries:
            for task, res in zip(tasks, iter_tasks(run_image_task, tasks, job.processes, on_done,
                                                   window=2 * job.processes)):
                rel = file_of[task.path]
                if out is None or out.rel != rel:
                    if out is not None:
                        close(out, out_rel)
                    out_rel, row = (augmented_name(rel) if copy_mode else rel), 0
                    out = OutputFile(ds, rel, stage / out_rel)
                out.add([task.rows[i].row_in_file for i in res.kept], res.images, res.paths)
                for i, p in zip(res.kept, res.params):
                    row_job = task.rows[i]
                    if p is not None:
                        augmented += 1
                        entries.write(json.dumps({"file": out_rel, "row": row, "source_file": rel,
                                                  "source_row": row_job.row_in_file, "copy": row_job.copy,
                                                  "transforms": list(row_job.transforms), "params": p}) + "\n")
                    row += 1
                for s in res.skipped:
                    key = (rel, s["row"], s["column"])
                    if key not in skipped:
                        skipped[key] = s["error"]
                        reporter.warn(f"skipped an undecodable image: {s['error']}")
                preview.extend(res.preview)
            if out is not None:
                close(out, out_rel)
        for rel, n_rows in zip(ds.files, ds.rows_per_file):
            target = augmented_name(rel) if copy_mode else rel
            if target not in written:  # no task or no row kept: an (empty) output file as the source has
                close(OutputFile(ds, rel, stage / target), target)
        skipped_list = [{"file": f, "row": r, "column": c, "error": e} for (f, r, c), e in skipped.items()]
        with spool.open() as entries:
            provenance.write_provenance(stage, spec=spec, source=job.source_id, fmt="datasets-image",
                                        entries=(json.loads(line) for line in entries),
                                        skipped=skipped_list if skipped_list else None)
    finally:
        spool.unlink(missing_ok=True)
    if skipped:
        reporter.update("augmenting", episodes_done=done["rows"], episodes_total=total, frames_done=done["rows"],
                        frames_total=total, message=f"{len(skipped)} undecodable image(s) skipped", force=True)
    provenance.write_preview(stage, preview[:PREVIEW_ROWS])
    card = card_for(source, ds, copy_mode, stage)
    counts = {"rows": sum(written.values()) + (ds.total_rows if copy_mode else 0),
              "augmented rows": augmented}
    if skipped:
        counts["skipped images"] = len(skipped)
    provenance.write_card(stage, spec=spec, source=job.source_id, fmt="datasets image dataset", base_yaml=card,
                          counts=counts, cameras=ds.columns)
    return Augmented("image", augmented, augmented)
