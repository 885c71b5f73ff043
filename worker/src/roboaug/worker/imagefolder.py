"""`imagefolder` datasets: folders of image files described by a metadata.jsonl or metadata.csv.

`datasets.load_dataset("imagefolder", data_dir=...)` (or `load_dataset(path)` on such a folder)
reads each metadata file's rows in file order, each row's `file_name` (or `<name>_file_name` for
several image columns) a path relative to the metadata file's folder; splits come from the folder
layout (`train/`, `test/`, ... each with its metadata file, or one flat folder: `train`). Every
metadata file under the root is handled on its own, so each layout `datasets` accepts is.

Every row is a one-frame episode, as in image_dataset.py: its global row number (metadata files
in sorted order) keys the sampled parameters, its image column's position is the camera. Output
keeps the layout. copy: every source file byte for byte; for copy j of a row, its images written
next to their originals as `<stem>.roboaug-<j><suffix>` (the source's suffix; the written
format's one appended where the encoding changes, e.g. a GIF written as PNG), and one metadata
row appended per copy (the source row with its file names replaced), copy after copy: metadata
order is load order, so the originals come first and the augmented rows after them. inplace:
each image rewritten in place, the metadata file unchanged. Images are written by image_codec in
their source's encoding and mode. Undecodable or missing images fail the job, or with
`on_bad_sample: skip` are left out (copy) or kept as they were (inplace) and listed under
`skipped`. metadata.parquet and list-valued `file_names` are not supported (refused by name).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Optional

import numpy as np

from roboaug.worker.transforms import apply_clip, sample_copy_params

from . import provenance
from .dataset_card import read_card_yaml
from .errors import ExitCode, WorkerError
from .files import CACHE_DIR, copy_tree
from .handler import PREVIEW_ROWS, Augmented, FormatJob
from .image_codec import EXTENSIONS, decode_image, encode_image
from .pool import iter_tasks

METADATA_NAMES = ("metadata.jsonl", "metadata.csv")
UNSUPPORTED_METADATA = ("metadata.parquet",)
AUGMENTED_TAG = ".roboaug-"
ROWS_PER_TASK = 16
"""Rows per task: a task holds one image at a time, so this only sets how often results come back."""
_FORMAT_OF_SUFFIX = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG", ".png": "PNG", ".webp": "WEBP"}


def _unsupported(msg: str) -> WorkerError:
    return WorkerError(ExitCode.UNSUPPORTED_FORMAT, msg)


def metadata_files(root: Path) -> list[str]:
    """Metadata files under `root` (hidden folders and the download cache excluded), sorted."""
    found = []
    for name in (*METADATA_NAMES, *UNSUPPORTED_METADATA):
        for p in root.rglob(name):
            rel = p.relative_to(root)
            if p.is_file() and not any(part.startswith(".") for part in rel.parts) and rel.parts[0] != CACHE_DIR:
                found.append(rel.as_posix())
    return sorted(found)


def is_imagefolder(root: Path) -> bool:
    return bool(metadata_files(root))


@dataclass
class MetaFile:
    rel: str  # the metadata file, relative to the root
    kind: str  # "jsonl" | "csv"
    columns: list[str]  # image columns: datasets' names ("image", "<x>") in the file's key order
    keys: list[str]  # the metadata keys holding them ("file_name", "<x>_file_name")
    rows: list[Any]  # jsonl: the parsed objects; csv: the rows as lists of strings
    header: list[str] = field(default_factory=list)  # csv only

    @property
    def folder(self) -> str:
        parent = PurePosixPath(self.rel).parent.as_posix()
        return "" if parent == "." else parent

    def file_names(self, i: int) -> dict[str, Any]:
        """Image column -> file name (as written in the metadata) of row i."""
        row = self.rows[i]
        if self.kind == "jsonl":
            return {c: row.get(k) for c, k in zip(self.columns, self.keys)}
        return {c: row[self.header.index(k)] if self.header.index(k) < len(row) else None
                for c, k in zip(self.columns, self.keys)}

    def with_file_names(self, i: int, names: dict[str, str]) -> str:
        """Row i as a line of the metadata file, its image file names replaced."""
        row = self.rows[i]
        if self.kind == "jsonl":
            new = dict(row)
            for c, k in zip(self.columns, self.keys):
                new[k] = names[c]
            return json.dumps(new, ensure_ascii=False)
        new = list(row)
        for c, k in zip(self.columns, self.keys):
            new[self.header.index(k)] = names[c]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(new)
        return buf.getvalue()


def _image_keys(keys: list[str], where: str) -> tuple[list[str], list[str]]:
    cols, found = [], []
    for k in keys:
        if k == "file_name" or k.endswith("_file_name"):
            cols.append(k[: -len("_file_name")] or "image")
            found.append(k)
        elif k == "file_names" or k.endswith("_file_names"):
            raise _unsupported(f"{where}: list-valued {k!r} (several images per row) is not supported")
    if not found:
        raise _unsupported(f"{where}: no 'file_name' (or '<column>_file_name') key: `datasets` needs one")
    return cols, found


def read_metadata(root: Path, rel: str) -> MetaFile:
    name = PurePosixPath(rel).name
    if name in UNSUPPORTED_METADATA:
        raise _unsupported(f"{rel}: metadata.parquet is not supported (metadata.jsonl and metadata.csv are)")
    try:
        text = (root / rel).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _unsupported(f"{rel} is unreadable: {exc}") from exc
    if name.endswith(".jsonl"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise _unsupported(f"{rel} line {n}: not JSON: {exc}") from exc
            if not isinstance(obj, dict):
                raise _unsupported(f"{rel} line {n}: not a JSON object")
            rows.append(obj)
        keys = list(dict.fromkeys(k for r in rows for k in r))
        cols, found = _image_keys(keys, rel)
        return MetaFile(rel, "jsonl", cols, found, rows)
    table = list(csv.reader(io.StringIO(text, newline="")))
    if not table:
        raise _unsupported(f"{rel} is empty: a header with 'file_name' is needed")
    header, rows = table[0], [r for r in table[1:] if r]
    cols, found = _image_keys(header, rel)
    return MetaFile(rel, "csv", cols, found, rows, header)


def _image_path(meta: MetaFile, name: Any, row: int) -> str:
    """A row's image file relative to the root, if its name stays inside the metadata's folder
    by its text alone (datasets refuses the others too)."""
    where = f"{meta.rel} row {row}"
    if not isinstance(name, str) or not name:
        raise _unsupported(f"{where}: the image file name must be a non-empty string, got {name!r}")
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or "\0" in name or "://" in name or any(p in ("", ".", "..") for p in parts):
        raise _unsupported(f"{where}: image file name {name!r} must be a relative path inside the metadata "
                           "file's folder, without '.', '..' or empty segments")
    return f"{meta.folder}/{name}" if meta.folder else name


def load(root: Path) -> list[MetaFile]:
    metas = [read_metadata(root, rel) for rel in metadata_files(root)]
    if not metas:
        raise _unsupported("no metadata.jsonl or metadata.csv: not an imagefolder dataset")
    return metas


def source_frames(source: Path) -> int:
    """The source's rows (one frame each): the rows of its metadata files."""
    return sum(len(m.rows) for m in load(source))


def augmented_name(name: str, copy: int, fmt: str) -> str:
    """The file name of copy `copy` of image `name` (as the metadata writes it) written as `fmt`:
    beside the original, unique (the original's whole name is in it) and deterministic."""
    p = PurePosixPath(name)
    suffix = p.suffix if _FORMAT_OF_SUFFIX.get(p.suffix.lower()) == fmt else p.suffix + EXTENSIONS[fmt]
    return str(p.with_name(f"{p.stem}{AUGMENTED_TAG}{copy}{suffix}"))


@dataclass(frozen=True)
class FolderRow:
    meta_row: int  # row of the metadata file
    global_row: int
    copy: int
    transforms: tuple[str, ...]
    images: tuple[tuple[str, str, str], ...]  # (column, name in the metadata, path relative to the root)


@dataclass(frozen=True)
class FolderTask:
    task_index: int
    source: str
    stage: str
    meta: str
    rows: tuple[FolderRow, ...]
    spec: Any
    preview: int = 0
    inplace: bool = False


@dataclass
class FolderResult:
    """Per output row (`kept` indexes task.rows): the file names written and the parameters."""

    names: list[dict[str, str]] = field(default_factory=list)
    params: list[Optional[dict]] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    preview: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def run_folder_task(task: FolderTask) -> FolderResult:
    """Augment the task's rows, writing each image into the stage itself (only names come back)."""
    from .image_dataset import preview_copy

    source, stage = Path(task.source), Path(task.stage)
    skip = getattr(task.spec.on_bad_sample, "value", task.spec.on_bad_sample) == "skip"
    res = FolderResult()
    for i, row in enumerate(task.rows):
        decoded = {}
        try:
            for col, name, rel in row.images:
                try:
                    try:
                        data = (source / rel).read_bytes()
                    except OSError as exc:
                        raise WorkerError(ExitCode.CORRUPT_VIDEO, f"the image file is unreadable: {exc.strerror}") from exc
                    decoded[col] = decode_image(data)
                except WorkerError as exc:
                    raise WorkerError(exc.code, f"{rel} ({task.meta} row {row.meta_row}, {col!r}): {exc.message}"
                                      + (" (on_bad_sample: skip leaves such images out)"
                                         if exc.code == ExitCode.CORRUPT_VIDEO else "")) from exc
        except WorkerError as exc:
            if not skip or exc.code != ExitCode.CORRUPT_VIDEO:
                raise
            res.skipped.append({"file": task.meta, "row": row.meta_row, "column": col, "error": exc.message})
            continue  # inplace: the file stays as it was copied
        names, row_params = {}, {}
        for cam, (col, name, rel) in enumerate(row.images):
            img = decoded[col]
            h, w = img.rgb.shape[:2]
            params = sample_copy_params(task.spec, row.transforms, seed=int(task.spec.augment_seed),
                                        episode=row.global_row, copy=row.copy, camera=cam, width=w, height=h)
            out = apply_clip(img.rgb[None], params, np.zeros(1, dtype=np.int64))[0]
            if task.inplace:
                new_name, target = name, rel
            else:
                new_name = augmented_name(name, row.copy, img.source.format)
                target = str(PurePosixPath(rel).parent / PurePosixPath(new_name).name)
            (stage / target).write_bytes(encode_image(out, img.alpha, img.source))
            names[col] = new_name
            row_params[col] = params.to_dict()
            if cam == 0 and len(res.preview) < task.preview:
                res.preview.append((preview_copy(img.rgb), preview_copy(out)))
        res.names.append(names)
        res.params.append(row_params)
        res.kept.append(i)
    return res


def plan_tasks(metas: list[MetaFile], spec, source: Path, stage: Path) -> list[FolderTask]:
    """Per metadata file, its output rows (copy: every row once per transform set, copy after copy;
    inplace: each row once) in tasks of ROWS_PER_TASK."""
    sets = spec.copies_plan()
    copy_mode = spec.augment_dataset_mode == "copy"
    tasks: list[FolderTask] = []
    offset, planned = 0, 0
    for meta in metas:
        images = []
        for r in range(len(meta.rows)):
            images.append(tuple((c, n, _image_path(meta, n, r)) for c, n in meta.file_names(r).items()))
        if copy_mode:
            rows = [FolderRow(r, offset + r, j, ts, images[r]) for j, ts in enumerate(sets) for r in range(len(meta.rows))]
        else:
            rows = [FolderRow(r, offset + r, 0, sets[(offset + r) % len(sets)], images[r]) for r in range(len(meta.rows))]
        for start in range(0, len(rows), ROWS_PER_TASK):
            chunk = tuple(rows[start:start + ROWS_PER_TASK])
            tasks.append(FolderTask(len(tasks), str(source), str(stage), meta.rel, chunk, spec,
                                    preview=max(0, PREVIEW_ROWS - planned), inplace=not copy_mode))
            planned += len(chunk)
        offset += len(meta.rows)
    return tasks


def _card(source: Path, copy_mode: bool) -> dict:
    """The source's card YAML; in copy mode without split sizes (the rows changed; `datasets`
    recounts them when it builds the dataset)."""
    card = read_card_yaml(source)
    info = card.get("dataset_info")
    if copy_mode and info:
        for entry in info if isinstance(info, list) else [info]:
            if isinstance(entry, dict):
                for k in ("splits", "dataset_size", "download_size"):
                    entry.pop(k, None)
    return card


def augment(source: Path, stage: Path, job: FormatJob) -> Augmented:
    spec, reporter = job.spec, job.reporter
    metas = load(source)
    copy_mode = spec.augment_dataset_mode == "copy"
    copy_tree(source, stage)  # originals (and the metadata files, extended below in copy mode)
    tasks = plan_tasks(metas, spec, source, stage)
    total = sum(len(t.rows) for t in tasks)
    done = {"rows": 0}
    reporter.update("augmenting", episodes_total=total, frames_total=total, force=True)

    def on_done(task, result) -> None:
        done["rows"] += len(task.rows)
        reporter.update("augmenting", episodes_done=done["rows"], episodes_total=total,
                        frames_done=done["rows"], frames_total=total)

    by_meta = {m.rel: m for m in metas}
    appended: dict[str, list[str]] = {m.rel: [] for m in metas}
    entries, preview, skipped = [], [], {}
    augmented = 0
    for task, res in zip(tasks, iter_tasks(run_folder_task, tasks, job.processes, on_done, window=2 * job.processes)):
        meta = by_meta[task.meta]
        for i, names, params in zip(res.kept, res.names, res.params):
            row = task.rows[i]
            if copy_mode:
                out_row = len(meta.rows) + len(appended[meta.rel])
                appended[meta.rel].append(meta.with_file_names(row.meta_row, names))
            else:
                out_row = row.meta_row
            augmented += 1
            entries.append({"file": meta.rel, "row": out_row, "source_file": meta.rel, "source_row": row.meta_row,
                            "copy": row.copy, "transforms": list(row.transforms), "images": names, "params": params})
        for s in res.skipped:
            key = (s["file"], s["row"], s["column"])
            if key not in skipped:
                skipped[key] = s["error"]
                reporter.warn(f"skipped an undecodable image: {s['error']}")
        preview.extend(res.preview)
    if copy_mode:
        for rel, lines in appended.items():
            if lines:
                path = stage / rel
                text = path.read_text(encoding="utf-8")
                newline = "\r\n" if "\r\n" in text else "\n"
                with path.open("a", encoding="utf-8", newline="") as f:
                    f.write(("" if not text or text.endswith("\n") else newline) + newline.join(lines) + newline)
    if skipped:
        reporter.update("augmenting", episodes_done=done["rows"], episodes_total=total, frames_done=done["rows"],
                        frames_total=total, message=f"{len(skipped)} undecodable image(s) skipped", force=True)
    skipped_list = [{"file": f, "row": r, "column": c, "error": e} for (f, r, c), e in skipped.items()]
    provenance.write_provenance(stage, spec=spec, source=job.source_id, fmt="imagefolder", entries=iter(entries),
                                skipped=skipped_list or None)
    provenance.write_preview(stage, preview[:PREVIEW_ROWS])
    rows = sum(len(m.rows) for m in metas)
    counts = {"rows": rows + (augmented if copy_mode else 0), "augmented rows": augmented}
    if skipped:
        counts["skipped images"] = len(skipped)
    columns = list(dict.fromkeys(c for m in metas for c in m.columns))
    provenance.write_card(stage, spec=spec, source=job.source_id, fmt="imagefolder dataset",
                          base_yaml=_card(source, copy_mode), counts=counts, cameras=columns)
    return Augmented("imagefolder", augmented, augmented)


def check_output(root: Path) -> None:
    """The output's own last look (verify.py): its metadata files read and every augmented image
    they list exists (the source's rows are the source's: a file it lacks, skipped, stays listed)."""
    metas = load(root)
    if not any(m.rows for m in metas):
        raise WorkerError(ExitCode.INTERNAL, "output self-check failed: no rows written")
    for m in metas:
        for r in range(len(m.rows)):
            for _, name in m.file_names(r).items():
                if AUGMENTED_TAG in str(name) and not (root / _image_path(m, name, r)).is_file():
                    raise WorkerError(ExitCode.INTERNAL, f"output self-check failed: {m.rel} row {r}: {name} is missing")
