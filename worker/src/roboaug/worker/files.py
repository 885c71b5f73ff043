"""Folders and files the worker's modules share: scratch and staging folders, copying a dataset
tree, writing JSON metadata.

Nothing partial becomes visible: an output is assembled in a staging folder (a hidden sibling of
a `file://` destination, renamed into place once checked; for the Hub, a folder under the workdir
uploaded in one commit) and removed if anything fails.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional

from .errors import ExitCode, WorkerError

CACHE_DIR = ".cache"
"""huggingface_hub's download bookkeeping inside a dataset folder: never part of an output."""


def make_workdir(path: Optional[str]) -> tuple[Path, bool]:
    """(workdir, created here and to be removed at the end)."""
    if path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        return p, False
    return Path(tempfile.mkdtemp(prefix="roboaug-")), True


def fresh_dir(path: Path) -> Path:
    """`path` as an empty folder: leftovers of an earlier, killed attempt removed."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def staging_for(output_id: str, source_root: Path, workdir: Path) -> tuple[Path, Optional[Path]]:
    """(staging folder, final folder for file:// outputs or None for the Hub)."""
    if output_id.startswith("file://"):
        dest = Path(output_id[len("file://"):]).resolve()
        src = source_root.resolve()
        if dest == src or src in dest.parents or dest in src.parents:
            raise WorkerError(ExitCode.INVALID_SPEC, f"output_dataset_id {output_id} overlaps the source dataset")
        if dest.exists():
            raise WorkerError(ExitCode.INVALID_SPEC, f"output_dataset_id {output_id} already exists; refusing to overwrite")
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest.parent / f".{dest.name}.roboaug-partial", dest
    return workdir / "output", None


def copy_tree(src: Path, dst: Path, skip: Iterable[str] = ()) -> None:
    """Every file under `src` (but the `skip` relative paths and the download cache) copied byte
    for byte to the same relative path under `dst`."""
    skip = set(skip)
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src).as_posix()
        if path.is_dir() or rel in skip or rel.startswith(CACHE_DIR + "/") or rel == CACHE_DIR:
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def write_json(path: Path, obj: Any) -> None:
    """JSON the way LeRobot's own metadata files are written: 4-space indent, UTF-8, final newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=4, ensure_ascii=False) + "\n")
