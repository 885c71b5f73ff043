"""Image datasets are written as a stream (issue 14 item 15): output bytes as before streaming
(pinned digests, recorded with the code before the change), row groups of bounded size for
larger outputs with the same rows, the same bytes for 1 and 2 processes, and a bounded number of
results waiting in the parent."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from roboaug.api.models import AugmentationJobSpec
from roboaug.devstack import synthetic as fixtures
from roboaug.worker import image_dataset, pipeline, pool
from roboaug.worker.progress import ProgressReporter
from tests.worker.helpers import JOB, PROJECT

GOLDEN = Path(__file__).with_name("golden") / "image_datasets.json"
PATH_FILES = {"README.md", "meta/augmentation.json"}  # they name the source, a per-run tmp path

CASES = {
    # name: (dataset maker arguments, spec fields)
    "small_copy": ({"rows": 6}, {"augment_copies": 2}),
    "splits_copy": ({"size": (64, 64), "splits": {"train": 300, "test": 40}},
                    {"augment_transforms": "lighting,noise", "augment_copies": 2}),
    "splits_inplace_independent": ({"size": (64, 64), "splits": {"train": 300, "test": 40}},
                                   {"augment_transforms": "lighting,occlusion", "augment_mode": "independent",
                                    "augment_dataset_mode": "inplace"}),
}


def run_case(tmp: Path, name: str, processes: int = 1) -> tuple[Path, str]:
    """(output folder, source url) of the case's job, run in this process."""
    make, fields = CASES[name]
    src = tmp / f"src_{name}"
    if not src.is_dir():
        fixtures.make_image_dataset(src, **make)
    out = tmp / f"out_{name}_p{processes}"
    spec = {"project_id": PROJECT, "job_id": JOB, "dataset_id": f"file://{src}", "output_dataset_id": f"file://{out}",
            "augment_transforms": "lighting,noise,blur,occlusion", **fields}
    opts = pipeline.RunOptions(job_id=JOB, workdir=tmp / f"wd_{name}_p{processes}", processes=processes)
    pipeline.run(AugmentationJobSpec.model_validate(spec), opts, ProgressReporter(stream=io.StringIO()))
    return out, spec["dataset_id"]


def digest(root: Path, source_url: str) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            data = p.read_bytes()
            if rel in PATH_FILES:
                data = data.replace(source_url.encode(), b"file://{SOURCE}")
            out[rel] = hashlib.sha256(data).hexdigest()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_image_output_bytes_are_the_pinned_ones(tmp_path, name):
    want = json.loads(GOLDEN.read_text())["cases"][name]
    got = digest(*run_case(tmp_path, name))
    changed = sorted(rel for rel in set(want) | set(got) if got.get(rel) != want.get(rel))
    assert not changed, f"output bytes changed: {changed}"


@pytest.mark.slow
def test_large_outputs_are_written_in_bounded_row_groups_with_the_same_rows(tmp_path, monkeypatch):
    name = "splits_copy"
    one, url = run_case(tmp_path, name)
    monkeypatch.setattr(image_dataset, "ROW_GROUP_BYTES", 200_000)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    small1, _ = run_case(tmp_path / "a", name)
    small2, _ = run_case(tmp_path / "b", name, processes=2)
    rel = "data/train-00000-of-00001.roboaug.parquet"
    meta = pq.ParquetFile(small1 / rel).metadata
    assert meta.num_rows == 600 and meta.num_row_groups > 5  # 600 images of several KB each
    assert pq.ParquetFile(one / rel).metadata.num_row_groups == 1
    assert pq.read_table(small1 / rel).equals(pq.read_table(one / rel))
    # the same bytes whatever the number of processes, and the same provenance as one row group
    assert digest(small1, url.replace("/src_", "/a/src_")) == digest(small2, url.replace("/src_", "/b/src_"))
    assert (small1 / "meta/augmentation.json").read_text().replace("/a/src_", "/src_") == \
        (one / "meta/augmentation.json").read_text()


def _mark_and_square(args: tuple[str, int]) -> int:
    marker_dir, i = args
    Path(marker_dir, str(i)).touch()
    time.sleep(0.3 if i == 0 else 0.01)
    return i * i


def test_iter_tasks_yields_in_order_with_a_bounded_window(tmp_path):
    tasks = [(str(tmp_path), i) for i in range(12)]
    seen = []
    for k, result in enumerate(pool.iter_tasks(_mark_and_square, tasks, 2, lambda t, r: None, window=3)):
        assert result == k * k
        seen.append(len(os.listdir(tmp_path)))
    # when result k arrives, at most k + 3 tasks have started (3 in flight beyond those yielded)
    assert all(started <= k + 3 for k, started in enumerate(seen)), seen
    assert pool.run_tasks(_mark_and_square, tasks, 2, lambda t, r: None) == [i * i for i in range(12)]
