"""The preview (issue 15 item 6): its frames are the job's pre-encode frames, byte for byte.

A real job runs in this process (one process, so the hooks see every episode) with the video
encoder and the PNG encoder of `episode_task` wrapped to record what they are handed; the
preview of the same request must hold exactly those frames for its picks. Mutations checked by
hand: preview.py keying the parameters by copy 0 for every copy, by frame 0 for the noise, or
picking the neighbouring frame (`source_chunks(..., f + 1, 1)`) each fail
test_preview_frames_are_the_jobs_pre_encode_frames.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from roboaug.api.models import AugmentationJobSpec
from roboaug.api.models.preview import MAX_PREVIEW_IMAGES, AugmentationPreviewRequest
from roboaug.worker import episode_task, image_dataset, lerobot, lerobot_dataset, pipeline, preview
from roboaug.worker.errors import WorkerError
from roboaug.worker.png import decode_png
from roboaug.worker.progress import ProgressReporter
from tests.worker.helpers import JOB, PROJECT, make_spec


class Recorder:
    """Pre-encode frames of a job: video segments by (out episode, camera), PNG frames in order."""

    def __init__(self, monkeypatch):
        self.segments: dict[tuple[int, str], list[np.ndarray]] = defaultdict(list)
        self.pngs: list[np.ndarray] = []
        rec = self

        class RecordingEncoder(episode_task.SegmentEncoder):
            def __init__(self, path, **kw):
                super().__init__(path, **kw)
                key, _, index = Path(path).stem.rpartition("__")
                self._rec_key = (int(index), key)

            def write(self, frames):
                rec.segments[self._rec_key].extend(f.copy() for f in frames)
                super().write(frames)

        real_png = episode_task.png_bytes

        def recording_png(rgb):
            rec.pngs.append(rgb.copy())
            return real_png(rgb)

        monkeypatch.setattr(episode_task, "SegmentEncoder", RecordingEncoder)
        monkeypatch.setattr(episode_task, "png_bytes", recording_png)


def run_job(spec: dict, tmp: Path) -> None:
    opts = pipeline.RunOptions(job_id=JOB, workdir=tmp / "wd", processes=1)
    pipeline.run(AugmentationJobSpec.model_validate(spec), opts, ProgressReporter(stream=io.StringIO()))


def job_frames(rec: Recorder, source: Path, spec: dict) -> dict[tuple[int, int, str], np.ndarray]:
    """(source episode, copy, camera) -> the job's pre-encode frames, from the recorder."""
    ds = lerobot_dataset.load(source)
    request = AugmentationJobSpec.model_validate(spec)
    out: dict = {}
    pngs = iter(rec.pngs)
    for oe in lerobot.plan(ds, request):  # run_tasks with one process: the plan's order
        for key in ds.camera_keys:
            if ds.features[key]["dtype"] == "video":
                out[oe.source.index, oe.copy, key] = rec.segments[oe.out_index, key]
            else:
                out[oe.source.index, oe.copy, key] = [next(pngs) for _ in range(oe.source.length)]
    assert next(pngs, None) is None
    return out


CASES = {
    # name: (source, request fields, episodes, frames)
    "stacked_copy": ("v3.0", {}, [0, 3], [0, 5, 7]),
    "multicam_independent": ("multicam", {"augment_mode": "independent", "augment_copies": 1}, [1, 2], [0, 8]),
    "v21_inplace": ("v2.1", {"augment_dataset_mode": "inplace", "augment_transforms": "noise,blur"}, [1], [14, 3]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_preview_frames_are_the_jobs_pre_encode_frames(case, sources, tmp_path, monkeypatch):
    name, fields, episodes, frames = CASES[case]
    source = sources[name]
    spec = make_spec(source, tmp_path / "out", **fields)
    rec = Recorder(monkeypatch)
    run_job(spec, tmp_path)
    expected = job_frames(rec, source, spec)

    request = AugmentationPreviewRequest.model_validate(
        {k: v for k, v in spec.items() if k not in ("job_id",)} | {"episodes": episodes, "frames": frames})
    got = preview.run(request, tmp_path / "preview")
    ds = lerobot_dataset.load(source)
    copies = len(AugmentationJobSpec.model_validate(spec).copies_plan()) if spec.get(
        "augment_dataset_mode", "copy") == "copy" else 1
    assert len(got.pairs) == len(episodes) * len(frames) * len(ds.camera_keys)
    seen = set()
    for pair in got.pairs:
        assert len(pair.augmented) == copies
        for c in pair.augmented:
            want = expected[pair.episode, c.copy, pair.camera][pair.frame]
            assert c.frame.dtype == np.uint8 and c.frame.shape == want.shape
            assert c.frame.tobytes() == want.tobytes(), (case, pair.episode, pair.frame, pair.camera, c.copy)
        seen.add((pair.episode, pair.frame, pair.camera))
    assert seen == {(e, f, k) for e in episodes for f in frames for k in ds.camera_keys}


def test_image_dataset_preview_is_the_jobs_rows(sources, tmp_path):
    """Image datasets: a row is an episode of one frame; the augmented row is PNG in the output
    (lossless), so the output's pixels are the pre-encode pixels."""
    source = sources["image"]
    spec = make_spec(source, tmp_path / "out", augment_copies=2)
    request = AugmentationPreviewRequest.model_validate(
        {k: v for k, v in spec.items() if k != "job_id"} | {"episodes": [1, 4]})
    got = preview.run(request)
    ds = image_dataset.load(source)
    # the job's own per-row function over every row of the file: the preview picks from it
    sets = AugmentationJobSpec.model_validate(spec).copies_plan()
    jobs = tuple(image_dataset.RowJob(r, r, j, ts) for j, ts in enumerate(sets) for r in range(ds.rows_per_file[0]))
    whole = image_dataset.run_image_task(image_dataset.ImageTask(
        0, str(source / ds.files[0]), tuple(ds.columns), jobs, AugmentationJobSpec.model_validate(spec)))
    n = ds.rows_per_file[0]
    assert [p.episode for p in got.pairs] == [1, 4]
    for pair in got.pairs:
        for c in pair.augmented:
            want = decode_png(whole.images[pair.camera][c.copy * n + pair.episode])
            assert c.frame.tobytes() == want.tobytes()


def test_picks_out_of_range_and_over_the_bounds_name_the_field(sources):
    base = make_spec(sources["v3.0"], "file:///tmp/unused")
    base.pop("job_id")
    with pytest.raises(WorkerError, match=r"^episodes: episode 9 does not exist \(the source has 4: 0..3\)"):
        preview.run(AugmentationPreviewRequest.model_validate(base | {"episodes": [9]}))
    with pytest.raises(WorkerError, match=r"^frames: frame 12 is beyond episode 0's 12 frames"):
        preview.run(AugmentationPreviewRequest.model_validate(base | {"frames": [12]}))
    many = base | {"augment_copies": 20, "episodes": [0, 1], "frames": [0, 1]}  # 4 x 21 images
    with pytest.raises(WorkerError, match=rf"^frames: .* = 84 images, more than a preview holds \({MAX_PREVIEW_IMAGES}\)"):
        preview.run(AugmentationPreviewRequest.model_validate(many))


def test_grid_lays_out_mixed_sizes_at_one_height():
    small = np.zeros((10, 20, 3), np.uint8)
    tall = np.full((40, 10, 3), 255, np.uint8)
    p = preview.Preview("x", (
        preview.Pair(0, 0, "a", small, (preview.Copy(0, ("noise",), small), preview.Copy(1, ("noise",), small))),
        preview.Pair(0, 0, "b", tall, (preview.Copy(0, ("noise",), tall),)),
    ))
    g = preview.grid(p, row_height=20)
    gap = preview.GRID_GAP
    # row 1: three 40x20 cells; row 2: two 5x20 cells; width = the wider row
    assert g.shape == (2 * (20 + gap) + gap, 3 * 40 + 4 * gap, 3)
    assert (g[gap + 20 + gap: gap + 40 + gap, gap:gap + 5] == 255).all()
    assert decode_png(preview.grid_png(p)).shape == preview.grid(p).shape
