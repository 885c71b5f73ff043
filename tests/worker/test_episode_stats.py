"""Stats you can trust: every output episode's stats come from the data (originals too), every
video written gets its timestamps from where its frames sit, and the input's inconsistencies
reach the job's events through the warnings every progress report carries (Progress.warnings)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roboaug.devstack import synthetic
from roboaug.worker.episode_stats import StatsWarnings
from roboaug.worker.stats import numeric_stats
from tests.worker import checker
from tests.worker.helpers import make_spec, run_worker

KEY = "observation.images.top"
EP_FILE = "meta/episodes/chunk-000/file-000.parquet"


def test_numeric_stats_equal_numpy_for_scalar_and_vector_columns():
    vec = np.random.default_rng(0).normal(size=(37, 3)).astype(np.float32)
    got = numeric_stats(vec, with_quantiles=True)
    f = vec.astype(np.float64)
    np.testing.assert_allclose(got["mean"], f.mean(0))
    np.testing.assert_allclose(got["std"], f.std(0))
    np.testing.assert_allclose(got["q90"], np.quantile(f, 0.9, axis=0))
    assert got["min"].dtype == np.float32 and got["count"].tolist() == [37]
    idx = numeric_stats(np.arange(5, 12), with_quantiles=False)
    assert idx["min"].tolist() == [5] and idx["max"].tolist() == [11] and idx["mean"].shape == (1,)
    assert "q01" not in idx


def test_warnings_name_the_feature_and_episodes():
    w = StatsWarnings()
    new = {"index": numeric_stats(np.arange(10), False), KEY: {"mean": np.full((3, 1, 1), .5), "std": np.full((3, 1, 1), .2),
                                                              "count": np.array([10])}}
    old = {"index": numeric_stats(np.arange(10) + 1000, False), KEY: {**new[KEY], "std": np.zeros((3, 1, 1))}}
    for ep in range(7):
        w.check(ep, old, new, {KEY})
    w.check(7, new, new, {KEY})  # consistent: nothing to say
    msgs = w.messages()
    assert len(msgs) == 2
    assert any("'index'" in m and "min/max/mean differ" in m and "0, 1, 2, 3, 4 and 2 more" in m for m in msgs), msgs
    assert any(KEY in m and "image std 0" in m for m in msgs), msgs


def _corrupt_source(root: Path) -> Path:
    """A v3.0 source whose episode rows lie: index stats of a larger parent dataset, image std 0,
    to_timestamp = from + (len-1)/fps."""
    src = synthetic.make_lerobot(root, "v3.0", lengths=(12, 15, 10), episodes_per_file=3)
    table = pq.read_table(src / EP_FILE)
    rows = table.to_pylist()
    for row in rows:
        for k in ("min", "max", "mean", "q01", "q10", "q50", "q90", "q99"):
            row[f"stats/index/{k}"] = [v + 1000 for v in row[f"stats/index/{k}"]]
        row[f"stats/{KEY}/std"] = np.zeros((3, 1, 1)).tolist()
        row[f"videos/{KEY}/to_timestamp"] = row[f"videos/{KEY}/from_timestamp"] + (row["length"] - 1) / synthetic.FPS
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), src / EP_FILE)
    return src


def _episode_rows(out: Path) -> list[dict]:
    return [r for f in sorted((out / "meta/episodes").rglob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def _warnings(stdout: str) -> list[str]:
    """The warnings of the last progress report (every report carries all of them so far)."""
    lines = [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]
    reports = [x for x in lines if x.get("event") == "progress"]
    return reports[-1].get("warnings", []) if reports else []


@pytest.mark.parametrize("mode", ["copy", "inplace"])
def test_stats_are_recomputed_and_input_lies_are_reported(tmp_path, mode):
    src = _corrupt_source(tmp_path / "src")
    spec = make_spec(src, tmp_path / "out", augment_transforms="lighting", augment_copies=1, augment_dataset_mode=mode)
    res = run_worker(spec)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "out"
    checker.check_lerobot(out)
    rows = _episode_rows(out)
    assert len(rows) == (6 if mode == "copy" else 3)
    for row in rows:
        lo, n = row["dataset_from_index"], row["length"]
        # index stats are those of the rows as written, not the input's (+1000) nor shifted copies of them
        assert row["stats/index/min"] == [lo] and row["stats/index/max"] == [lo + n - 1]
        assert row["stats/index/mean"] == pytest.approx([lo + (n - 1) / 2])
        assert row["stats/episode_index/min"] == [row["episode_index"]] == row["stats/episode_index/max"]
        assert min(np.ravel(row[f"stats/{KEY}/std"])) > 0  # from the pixels, not the input's zeros
        # videos we wrote, and the originals' whose input to_timestamp was (len-1)/fps: from + length/fps
        assert row[f"videos/{KEY}/to_timestamp"] == pytest.approx(row[f"videos/{KEY}/from_timestamp"] + n / synthetic.FPS)
    stats = json.loads((out / "meta/stats.json").read_text())
    total = sum(r["length"] for r in rows)
    assert stats["index"]["min"] == [0] and stats["index"]["max"] == [total - 1]
    msgs = _warnings(res.stdout)
    assert any("'index'" in m and "differ from the data" in m for m in msgs), msgs
    assert any(KEY in m and "image std 0" in m for m in msgs), msgs
    assert any("to_timestamp" in m for m in msgs), msgs


def test_info_json_codec_describes_the_written_videos(tmp_path):
    src = synthetic.make_lerobot(tmp_path / "src", "v3.0", lengths=(6, 6), cameras={KEY: "mpeg4"})
    info_path = src / "meta/info.json"
    info = json.loads(info_path.read_text())
    info["features"][KEY]["info"]["video.codec"] = "h264"  # the input's claim, wrong
    info_path.write_text(json.dumps(info, indent=4))
    spec = make_spec(src, tmp_path / "out", augment_transforms="lighting", augment_copies=1)
    res = run_worker(spec)
    assert res.returncode == 0, res.stderr[-3000:]
    out_info = json.loads((tmp_path / "out/meta/info.json").read_text())
    assert out_info["features"][KEY]["info"]["video.codec"] == "mpeg4"
