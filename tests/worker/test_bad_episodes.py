"""on_bad_sample for LeRobot datasets: an undecodable source episode fails the job (default) or,
with `skip`, is left out of the augmented copies, the copies after it renumbered, and listed in
the provenance file, the job's warnings and the card."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from roboaug.api.contract import ExitCode
from roboaug.api.models import AugmentationJobSpec
from roboaug.worker import pipeline
from roboaug.worker.errors import WorkerError
from roboaug.worker.progress import ProgressReporter
from tests.worker.helpers import JOB, PROJECT


def run(src: Path, out: Path, **fields) -> ProgressReporter:
    spec = {"project_id": PROJECT, "job_id": JOB, "dataset_id": f"file://{src}", "output_dataset_id": f"file://{out}",
            "augment_transforms": "lighting", "augment_copies": 2, **fields}
    reporter = ProgressReporter(stream=io.StringIO())
    pipeline.run(AugmentationJobSpec.model_validate(spec),
                 pipeline.RunOptions(job_id=JOB, workdir=out.parent / f"wd-{out.name}", processes=1), reporter)
    return reporter


def _trash_frames(path: Path) -> None:
    """Keep the mp4's header (it still probes), replace its frames with noise: decoding fails mid-file."""
    data = bytearray(path.read_bytes())
    data[len(data) // 3:] = np.random.default_rng(0).integers(0, 256, len(data) - len(data) // 3, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _v30_episodes(root: Path) -> list[dict]:
    rows = []
    for f in sorted((root / "meta/episodes").rglob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    return rows


def test_v30_undecodable_episode_is_left_out_of_the_copies(sources, copy_source, tmp_path):
    # 4 episodes, 3 to a video file: file-001 holds episode 3 alone; its frames cannot be decoded
    src = copy_source(sources["v3.0"])
    _trash_frames(src / "videos/observation.images.top/chunk-000/file-001.mp4")
    with pytest.raises(WorkerError) as err:
        run(src, tmp_path / "fail")
    assert err.value.code == ExitCode.CORRUPT_VIDEO and "file-001.mp4" in err.value.message
    assert not (tmp_path / "fail").exists()

    reporter = run(src, tmp_path / "skip", on_bad_sample="skip")
    out = tmp_path / "skip"
    prov = json.loads((out / "meta/augmentation.json").read_text())
    assert [s["episode_index"] for s in prov["skipped"]] == [3]
    assert "file-001.mp4" in prov["skipped"][0]["error"]
    # 4 originals, then copies 0 and 1 of episodes 0..2, numbered on from 4 without a gap
    assert [(e["episode_index"], e["source_episode"], e["copy"]) for e in prov["episodes"]] == [
        (4, 0, 0), (5, 1, 0), (6, 2, 0), (7, 0, 1), (8, 1, 1), (9, 2, 1)]
    info = json.loads((out / "meta/info.json").read_text())
    lengths = (12, 15, 10, 8)
    assert info["total_episodes"] == 10 and info["total_frames"] == sum(lengths) + 2 * sum(lengths[:3])
    eps = _v30_episodes(out)
    assert [r["episode_index"] for r in eps] == list(range(10))
    assert [r["length"] for r in eps[4:]] == [12, 15, 10] * 2
    # data rows: contiguous index, episode_index as the episodes say
    data = pq.read_table(sorted((out / "data").rglob("*.parquet"))[-1]).to_pydict()
    assert sorted(set(data["episode_index"])) == list(range(4, 10))
    # the warning reached the job's status, the card counts it
    assert any("episode 3" in w and "undecodable" in w for w in reporter.warnings)
    assert "skipped episodes: 1" in (out / "README.md").read_text()
    # the bad original keeps the input's camera stats (nothing decodable to recompute them from)
    given = _v30_episodes(src)[3]
    assert eps[3]["stats/observation.images.top/mean"] == given["stats/observation.images.top/mean"]


def test_v21_unprobeable_episode_is_left_out_of_the_copies(sources, copy_source, tmp_path):
    src = copy_source(sources["v2.1"])
    victim = src / "videos/chunk-000/observation.images.top/episode_000001.mp4"
    victim.write_bytes(victim.read_bytes()[:200])  # not even a header: caught when the tasks are planned
    reporter = run(src, tmp_path / "skip", on_bad_sample="skip")
    out = tmp_path / "skip"
    prov = json.loads((out / "meta/augmentation.json").read_text())
    assert [s["episode_index"] for s in prov["skipped"]] == [1]
    assert [(e["episode_index"], e["source_episode"]) for e in prov["episodes"]] == [(3, 0), (4, 2), (5, 0), (6, 2)]
    info = json.loads((out / "meta/info.json").read_text())
    assert info["total_episodes"] == 7
    assert sorted(p.name for p in (out / "videos/chunk-000/observation.images.top").iterdir()) == [
        f"episode_{i:06d}.mp4" for i in range(7)]
    lines = [json.loads(x) for x in (out / "meta/episodes.jsonl").read_text().splitlines()]
    assert [x["episode_index"] for x in lines] == list(range(7))
    stats = [json.loads(x) for x in (out / "meta/episodes_stats.jsonl").read_text().splitlines()]
    assert all("observation.images.top" in s["stats"] for s in stats)  # episode 1's: the input's
    assert any("episode 1" in w for w in reporter.warnings)


def test_inplace_cannot_skip_an_episode(sources, copy_source, tmp_path):
    src = copy_source(sources["v2.1"])
    victim = src / "videos/chunk-000/observation.images.top/episode_000001.mp4"
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(WorkerError) as err:
        run(src, tmp_path / "inplace", on_bad_sample="skip", augment_dataset_mode="inplace")
    assert err.value.code == ExitCode.CORRUPT_VIDEO
    assert "episode_000001.mp4" in err.value.message and "inplace" in err.value.message
    assert not (tmp_path / "inplace").exists()


def test_every_episode_undecodable_fails_even_with_skip(sources, copy_source, tmp_path):
    src = copy_source(sources["v2.1"])
    for victim in (src / "videos/chunk-000/observation.images.top").iterdir():
        victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(WorkerError) as err:
        run(src, tmp_path / "none", on_bad_sample="skip")
    assert "every source episode is undecodable" in err.value.message


def test_an_undecodable_frame_mid_episode_is_caught_while_augmenting(tmp_path):
    """A PNG frame of an image camera, not the first (planning decodes only that one): the task
    augmenting the episode meets it and the episode is skipped then."""
    import pyarrow as pa

    from roboaug.devstack import synthetic as fixtures

    src = fixtures.make_lerobot(tmp_path / "src", "v3.0", lengths=(6, 7, 5), image_keys=("observation.images.side",),
                                episodes_per_file=3)
    rel = sorted((src / "data").rglob("*.parquet"))[0]
    table = pq.read_table(rel)
    col = table.column("observation.images.side").to_pylist()
    eps = table.column("episode_index").to_pylist()
    row = [i for i, e in enumerate(eps) if e == 1][3]
    col[row] = {"bytes": b"\x89PNG\r\n\x1a\n broken", "path": None}
    i = table.schema.get_field_index("observation.images.side")
    pq.write_table(table.set_column(i, table.schema.field(i), pa.array(col, type=table.schema.field(i).type)), rel)
    with pytest.raises(WorkerError) as err:
        run(src, tmp_path / "fail")
    assert err.value.code == ExitCode.CORRUPT_VIDEO
    run(src, tmp_path / "skip", on_bad_sample="skip")
    prov = json.loads((tmp_path / "skip/meta/augmentation.json").read_text())
    assert [s["episode_index"] for s in prov["skipped"]] == [1]
    assert [(e["episode_index"], e["source_episode"]) for e in prov["episodes"]] == [(3, 0), (4, 2), (5, 0), (6, 2)]
    assert json.loads((tmp_path / "skip/meta/info.json").read_text())["total_episodes"] == 7
