"""Sharded jobs, worker side: the same job run as 1, 2 or 7 shards (shard stages in any order,
then finalize) writes exactly the bytes of the one-pod run, nothing is visible at the output
before finalize, and no staging is left behind. In-process runs with file:// outputs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from roboaug.api.contract import Stage
from roboaug.api.models import AugmentationJobSpec
from roboaug.worker import pipeline, stages
from roboaug.worker.progress import ProgressReporter
from tests.worker.helpers import JOB, PROJECT, tree_digest


def spec_for(src: Path, out: Path, **fields) -> AugmentationJobSpec:
    return AugmentationJobSpec.model_validate({
        "project_id": PROJECT, "job_id": JOB, "dataset_id": f"file://{src}", "output_dataset_id": f"file://{out}",
        "augment_transforms": "lighting,noise,occlusion", "augment_copies": 2, **fields})


def run_stage(spec, workdir: Path, stage: str = Stage.SINGLE, shards=None, index=None) -> ProgressReporter:
    reporter = ProgressReporter(stream=io.StringIO())
    opts = pipeline.RunOptions(job_id=JOB, workdir=workdir, processes=1, stage=stage, shards=shards, shard_index=index)
    pipeline.run(spec, opts, reporter)
    return reporter


def run_sharded(src: Path, out: Path, shards: int, tmp: Path, **fields) -> list[ProgressReporter]:
    spec = spec_for(src, out, **fields)
    reports = []
    for i in reversed(range(shards)):  # any order: nothing depends on which shard runs first
        reports.append(run_stage(spec, tmp / f"wd-{out.name}-{i}", Stage.SHARD, shards, i))
        assert not out.exists(), "a shard made the output visible"
    run_stage(spec, tmp / f"wd-{out.name}-fin", Stage.FINALIZE, shards)
    assert out.is_dir()
    assert not stages.staging_dir(out.resolve(), JOB).exists(), "staging left behind"
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []
    return reports


def shrink_files(src: Path) -> None:
    """Every new episode in its own data file and mp4 (a unit each): many units on a small source."""
    info = json.loads((src / "meta/info.json").read_text())
    info["video_files_size_in_mb"] = 0
    (src / "meta/info.json").write_text(json.dumps(info, indent=4))


@pytest.mark.parametrize("name, fields, small_units", [
    ("v3.0", {}, True),
    ("v3.0", {"augment_dataset_mode": "inplace"}, False),
    ("v2.1", {}, False),
    ("multicam", {}, True),
    ("image", {}, False),
])
def test_any_shard_count_writes_the_same_bytes(sources, copy_source, tmp_path, name, fields, small_units):
    src = copy_source(sources[name])
    if small_units:
        shrink_files(src)
    single = tmp_path / "single"
    run_stage(spec_for(src, single, **fields), tmp_path / "wd-single")
    want = tree_digest(single)
    for shards in (1, 2, 7):
        out = tmp_path / f"sharded-{shards}"
        reports = run_sharded(src, out, shards, tmp_path, **fields)
        got = tree_digest(out)
        assert sorted(got) == sorted(want)
        assert [rel for rel in want if got[rel] != want[rel]] == [], f"{shards} shards changed these files"
        if shards == 7 and small_units:  # the work really was split: several shards augmented frames
            busy = [r for r in reports if any(x.get("frames_total") for x in r.reports if x["phase"] == "augmenting")]
            assert len(busy) >= 4


def test_shard_progress_counts_only_its_own_frames(sources, copy_source, tmp_path):
    src = copy_source(sources["v3.0"])
    shrink_files(src)
    reports = run_sharded(src, tmp_path / "out", 2, tmp_path)
    totals = [max(x.get("frames_total", 0) for x in r.reports if x["phase"] == "augmenting") for r in reports]
    assert sum(totals) == 2 * (12 + 15 + 10 + 8) and all(totals)


def test_a_retried_shard_replaces_its_own_files(sources, copy_source, tmp_path):
    src = copy_source(sources["v3.0"])
    shrink_files(src)
    out = tmp_path / "out"
    spec = spec_for(src, out)
    run_stage(spec, tmp_path / "wd-a", Stage.SHARD, 2, 0)
    run_stage(spec, tmp_path / "wd-b", Stage.SHARD, 2, 0)  # the same shard again
    run_stage(spec, tmp_path / "wd-c", Stage.SHARD, 2, 1)
    run_stage(spec, tmp_path / "wd-d", Stage.FINALIZE, 2)
    run_stage(spec_for(src, tmp_path / "single"), tmp_path / "wd-e")
    assert tree_digest(out) == tree_digest(tmp_path / "single")


def test_finalize_before_every_shard_is_done_publishes_nothing(sources, copy_source, tmp_path):
    from roboaug.worker.errors import ExitCode, WorkerError

    src = copy_source(sources["v3.0"])
    shrink_files(src)
    out = tmp_path / "out"
    spec = spec_for(src, out)
    run_stage(spec, tmp_path / "wd-a", Stage.SHARD, 3, 2)
    with pytest.raises(WorkerError) as err:
        run_stage(spec, tmp_path / "wd-b", Stage.FINALIZE, 3)
    assert err.value.code == ExitCode.INTERNAL and "shard 0's result" in err.value.message
    assert not out.exists()
    run_stage(spec, tmp_path / "wd-c", Stage.CLEANUP)  # a failed job: the cleanup pod
    assert not stages.staging_dir(out.resolve(), JOB).exists()
    assert not out.exists()
