"""A preview: a few source frames and each augmented copy of them, exactly as the job would make
them (the frames handed to the encoder), without a job.

Nothing here augments on its own account: the episodes and copies come from the format
handlers' own plans (`lerobot.plan`, `lerobot.episode_tasks`; image datasets: `run_image_task`
over the picked rows), each camera's parameters from `episode_task.camera_params`, the frames
from `episode_task.source_chunks` (the video sought to the picked frame) and their augmentation
from `episode_task.augment_chunk`: the functions `run_episode` calls. So a preview frame is
byte-identical to the job's pre-encode frame (tests/worker/test_preview.py checks it).

Reading is partial: a Hub LeRobot source is fetched as meta/ plus the files of the picked
episodes only (a v3.0 file may hold many episodes; the decoder seeks in it by timestamp). Image
datasets and file:// sources are read where they lie or whole. Sources are read without a Hub
token (see docs/architecture.md, "Preview").
"""

from __future__ import annotations

import base64
import dataclasses
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from roboaug.api.models import DatasetRef
from roboaug.api.models.preview import (
    MAX_PREVIEW_IMAGES,
    MAX_PREVIEW_PIXELS,
    AugmentationPreviewRequest,
    AugmentationPreviewResponse,
    PreviewImage,
    PreviewPair,
)

from . import image_dataset, lerobot, lerobot_dataset
from .episode_task import augment_chunk, camera_params, source_chunks
from .errors import ExitCode, WorkerError
from .png import decode_png, png_bytes


class PickError(WorkerError):
    """A pick the source cannot honour, or an answer over its bounds: names the request field."""

    def __init__(self, field: str, message: str):
        super().__init__(ExitCode.INVALID_SPEC, f"{field}: {message}")
        self.field = field

    def __reduce__(self):
        return (type(self), (self.field, self.message.split(": ", 1)[1]))


@dataclass(frozen=True)
class Copy:
    copy: int
    transforms: tuple[str, ...]
    frame: np.ndarray  # (H, W, 3) uint8: the job's pre-encode frame


@dataclass(frozen=True)
class Pair:
    episode: int
    frame: int
    camera: str
    original: np.ndarray  # (H, W, 3) uint8: the decoded source frame
    augmented: tuple[Copy, ...]


@dataclass(frozen=True)
class Preview:
    source: str  # what was read: a Hub source pinned to its commit
    pairs: tuple[Pair, ...]


def copies_per_frame(spec) -> int:
    """Augmented versions of each source frame in the output: one per transform set in copy
    mode, one in inplace mode."""
    return len(spec.copies_plan()) if spec.augment_dataset_mode == "copy" else 1


def check_size(picks: int, cameras: int, spec, sizes: list[tuple[int, int]]) -> None:
    """The answer's bounds, before any pixel is decoded: images and pixels."""
    images = picks * cameras * (1 + copies_per_frame(spec))
    if images > MAX_PREVIEW_IMAGES:
        raise PickError("frames", f"{picks} picked frames x {cameras} cameras x (1 original + "
                                  f"{copies_per_frame(spec)} copies) = {images} images, more than a preview "
                                  f"holds ({MAX_PREVIEW_IMAGES}); pick fewer episodes, frames or copies")
    pixels = picks * (1 + copies_per_frame(spec)) * sum(w * h for w, h in sizes)
    if pixels > MAX_PREVIEW_PIXELS:
        raise PickError("frames", f"the preview would hold {pixels} pixels, more than {MAX_PREVIEW_PIXELS}; "
                                  "pick fewer episodes, frames or copies")


# -- LeRobot ----------------------------------------------------------------------------------
def _episodes(request: AugmentationPreviewRequest, total: int) -> list[int]:
    picked = request.episodes or [0]
    for e in picked:
        if e >= total:
            raise PickError("episodes", f"episode {e} does not exist (the source has {total}: 0..{total - 1})")
    return picked


def lerobot_pairs(ds: lerobot_dataset.LeRobotDataset, request: AugmentationPreviewRequest, workdir: Path) -> list[Pair]:
    spec = request
    picked = _episodes(request, len(ds.episodes))
    frames_of = {}
    for e in picked:
        length = ds.episodes[e].length
        frames = request.frames or [length // 2]
        for f in frames:
            if f >= length:
                raise PickError("frames", f"frame {f} is beyond episode {e}'s {length} frames (0..{length - 1})")
        frames_of[e] = frames
    planned = [oe for oe in lerobot.plan(ds, spec) if oe.source.index in frames_of]
    tasks = lerobot.episode_tasks(ds, planned, spec, workdir)
    by_episode: dict[int, list] = {}
    for task in tasks:
        by_episode.setdefault(task.source_index, []).append(task)
    first = tasks[0]
    check_size(sum(len(v) for v in frames_of.values()), len(first.cameras), spec,
               [(c.width, c.height) for c in first.cameras])
    pairs = []
    for e in picked:
        ep_tasks = by_episode[e]  # one per augmented version, in copy order
        for f in frames_of[e]:
            for cam_pos, cam in enumerate(ep_tasks[0].cameras):
                original = next(source_chunks(ep_tasks[0], cam, f, 1))
                copies = []
                for task in ep_tasks:
                    params = camera_params(task, task.cameras[cam_pos])
                    copies.append(Copy(task.copy, task.transforms, augment_chunk(original, params, f)[0]))
                pairs.append(Pair(e, f, cam.key, original[0].copy(), tuple(copies)))
    return pairs


# -- image datasets ---------------------------------------------------------------------------
def image_pairs(ds: image_dataset.ImageDataset, request: AugmentationPreviewRequest) -> list[Pair]:
    """Rows stand for episodes (one frame each): `episodes` picks rows, `frames` is ignored."""
    spec = request
    rows = _episodes(request, ds.total_rows)
    sets = spec.copies_plan()
    located = []
    for r in rows:
        offset = 0
        for rel, n in zip(ds.files, ds.rows_per_file):
            if r < offset + n:
                located.append((r, rel, r - offset))
                break
            offset += n
    check_size(len(rows), len(ds.columns), spec, [])  # sizes: known once decoded (check below)
    pairs = []
    for r, rel, in_file in located:
        # the same row jobs as image_dataset.plan_tasks: copy j of row r, or in place the set r mod n
        if spec.augment_dataset_mode == "copy":
            jobs = tuple(image_dataset.RowJob(in_file, r, j, ts) for j, ts in enumerate(sets))
        else:
            jobs = (image_dataset.RowJob(in_file, r, 0, sets[r % len(sets)]),)
        path = str(ds.root / rel)
        result = image_dataset.run_image_task(image_dataset.ImageTask(0, path, tuple(ds.columns), jobs, spec))
        cells = image_dataset.read_rows(path, list(ds.columns), {in_file})[in_file]
        for col in ds.columns:
            original = decode_png(cells[col]["bytes"])
            copies = tuple(Copy(job.copy, job.transforms, decode_png(png)) for job, png in zip(jobs, result.images[col]))
            pairs.append(Pair(r, 0, col, original, copies))
    check_size(len(rows), len(ds.columns), spec, [(p.original.shape[1], p.original.shape[0]) for p in pairs[:len(ds.columns)]])
    return pairs


# -- the source -------------------------------------------------------------------------------
def _exact(rel: str) -> str:
    """An fnmatch pattern matching exactly `rel`."""
    return re.sub(r"([*?\[])", r"[\1]", rel)


def fetch(request: AugmentationPreviewRequest, workdir: Path) -> tuple[Path, str]:
    """The source on local disk, read as little as the picks allow, and its pinned name."""
    ref = DatasetRef.parse(request.dataset_id)
    if ref.scheme == "file":
        root = Path(ref.path)
        if not root.is_dir():
            raise WorkerError(ExitCode.DATASET_NOT_FOUND, f"dataset {request.dataset_id} not found (no such directory)")
        return root, request.dataset_id
    from . import hub

    pinned = hub.resolve(ref, None)
    at = dataclasses.replace(ref, revision=pinned.sha)
    name = f"hf://{ref.repo_id}@{pinned.sha}"
    dest = workdir / "source"
    if hub.read_file(at, "meta/info.json", None) is None:  # an image dataset: read whole
        return hub.download(at, dest, None), name
    hub.download(at, dest, None, only=["meta/*"])
    ds = lerobot_dataset.load(dest, check_files=False)
    wanted = {"meta/*"}
    for e in _episodes(request, len(ds.episodes)):
        ep = ds.episodes[e]
        wanted |= {_exact(rel) for rel, _ in ep.videos.values()}
        if ds.image_keys:
            wanted.add(_exact(ep.data_file))
    return hub.download(at, dest, None, only=sorted(wanted)), name


def run(request: AugmentationPreviewRequest, workdir: Optional[Path] = None) -> Preview:
    """The preview of `request` (the effective request: project defaults applied by the caller)."""
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="roboaug-preview-")) if own else workdir
    try:
        root, name = fetch(request, work)
        if lerobot_dataset.is_lerobot(root):
            ds = lerobot_dataset.load(root, check_files=False)
            for e in _episodes(request, len(ds.episodes)):
                lerobot_dataset.check_episode_files(root, ds.episodes[e], data=bool(ds.image_keys))
            pairs = lerobot_pairs(ds, request, work)
        else:
            pairs = image_pairs(image_dataset.load(root), request)
        return Preview(name, tuple(pairs))
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


# -- the answer -------------------------------------------------------------------------------
def to_response(preview: Preview) -> AugmentationPreviewResponse:
    def b64(rgb: np.ndarray) -> str:
        return base64.b64encode(png_bytes(rgb)).decode()

    return AugmentationPreviewResponse(source=preview.source, pairs=[
        PreviewPair(episode=p.episode, frame=p.frame, camera=p.camera, original_png=b64(p.original),
                    augmented=[PreviewImage(copy=c.copy, transforms=list(c.transforms), png=b64(c.frame))
                               for c in p.augmented])
        for p in preview.pairs
    ])


GRID_ROW_HEIGHT = 192
"""Every row of the grid is scaled to this height (frames of different cameras and datasets differ)."""
GRID_GAP = 4


def grid(preview: Preview, row_height: int = GRID_ROW_HEIGHT) -> np.ndarray:
    """One row per pair: the original, then each copy, all scaled to `row_height` (aspect kept,
    nearest neighbour below 2x so pixels stay visible, area-averaged when shrinking); rows
    left-aligned on a grey ground."""
    import cv2

    rows = []
    for p in preview.pairs:
        h, w = p.original.shape[:2]
        width = max(1, round(w * row_height / h))
        how = cv2.INTER_AREA if row_height < h else cv2.INTER_NEAREST
        cells = [cv2.resize(img, (width, row_height), interpolation=how)
                 for img in (p.original, *(c.frame for c in p.augmented))]
        rows.append(cells)
    total_w = max((sum(c.shape[1] for c in r) + GRID_GAP * (len(r) + 1) for r in rows), default=1)
    total_h = len(rows) * (row_height + GRID_GAP) + GRID_GAP
    canvas = np.full((total_h, total_w, 3), 48, np.uint8)
    y = GRID_GAP
    for r in rows:
        x = GRID_GAP
        for cell in r:
            canvas[y:y + row_height, x:x + cell.shape[1]] = cell
            x += cell.shape[1] + GRID_GAP
        y += row_height + GRID_GAP
    return canvas


def grid_png(preview: Preview) -> bytes:
    return png_bytes(grid(preview))
