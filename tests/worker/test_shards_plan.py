"""The plan of a sharded job: units split into contiguous shards balanced by frames, from the
unit sizes and the shard count alone; the automatic count; a one-pod run that wants several
pods exits SHARD_PLAN with the plan as its last line and writes nothing."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest

from roboaug.api.contract import ExitCode, ShardPlan, find_shard_plan
from roboaug.worker import plan
from roboaug.worker.plan import Unit, auto_shards, shard_of_units, shard_plan, units_of_shard
from tests.worker.helpers import make_spec


def units(*frames) -> list[Unit]:
    return [Unit(i, (i,), f) for i, f in enumerate(frames)]


def test_shards_are_contiguous_and_balanced_by_frames():
    owner = shard_of_units([100] * 10, 2)
    assert owner == [0] * 5 + [1] * 5
    owner = shard_of_units([500, 100, 100, 100, 100, 100], 2)  # the big unit alone is half the work
    assert owner == [0, 1, 1, 1, 1, 1]
    for n in (1, 2, 3, 7, 13):
        o = shard_of_units([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5], n)
        assert o == sorted(o) and o[0] == 0 and max(o) <= n - 1  # contiguous runs, in order


def test_more_shards_than_units_leaves_some_empty():
    got = [len(units_of_shard(units(10, 10, 10), 7, i)) for i in range(7)]
    assert sum(got) == 3 and max(got) == 1
    with pytest.raises(ValueError, match="shard index must be 0..6"):
        units_of_shard(units(1), 7, 7)


def test_zero_frame_units_are_split_by_count():
    assert shard_of_units([0, 0, 0, 0], 2) == [0, 0, 1, 1]


def test_automatic_count():
    small = units(*[1000] * 10)
    assert auto_shards(small) == 1
    big = units(*[plan.AUTO_FRAMES_PER_SHARD // 4] * 10)  # 2.5 x the threshold
    assert auto_shards(big) == 3
    assert auto_shards(units(plan.AUTO_FRAMES_PER_SHARD * 5)) == 1  # one unit cannot be split
    assert shard_plan(big, None) == ShardPlan(3, 10, sum(u.frames for u in big))
    assert shard_plan(big, 7).shards == 7 and shard_plan(small, 4).shards == 4  # a given count wins


def test_the_projects_max_shards_caps_the_automatic_count_not_a_given_one():
    big = units(*[plan.AUTO_FRAMES_PER_SHARD // 4] * 10)  # 3 shards uncapped
    assert auto_shards(big, 2) == 2 and auto_shards(big, 5) == 3 and auto_shards(big, None) == 3
    assert shard_plan(big, None, 2).shards == 2
    assert shard_plan(big, 7, 2).shards == 7  # a given count is the policy's to refuse, not the plan's to cut


def test_the_pools_frames_per_shard_is_the_automatic_threshold():
    small = units(*[1000] * 10)  # 10,000 frames: one shard at the default threshold
    assert auto_shards(small, per_shard=2500) == 4 and auto_shards(small, per_shard=10_000) == 1
    assert shard_plan(small, None, 3, 2500).shards == 3  # and the project's cap still holds


def test_a_single_run_over_the_threshold_exits_with_the_plan(sources, tmp_path, monkeypatch):
    import shutil

    from roboaug.worker.__main__ import main

    src = tmp_path.parent / f"{tmp_path.name}-src"
    shutil.copytree(sources["v3.0"], src)
    info = json.loads((src / "meta/info.json").read_text())
    info["video_files_size_in_mb"] = 0  # a unit per new episode: 8 units
    (src / "meta/info.json").write_text(json.dumps(info))
    monkeypatch.setenv("ROBOAUG_FRAMES_PER_SHARD", "20")  # the pool's threshold; 2 copies x 45 frames: 5 shards
    spec = make_spec(src, tmp_path / "out", augment_transforms="lighting")
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        code = main(["--spec", json.dumps(spec), "--processes", "1"])
    assert code == ExitCode.SHARD_PLAN
    last = err.getvalue().strip().splitlines()[-1]
    got = find_shard_plan(last)
    assert got == ShardPlan(shards=5, units=8, frames=2 * info["total_frames"])
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging either
    # the project's limits.max_shards (ROBOAUG_MAX_SHARDS) caps the plan the pod hands back
    monkeypatch.setenv("ROBOAUG_MAX_SHARDS", "3")
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        assert main(["--spec", json.dumps(spec), "--processes", "1"]) == ExitCode.SHARD_PLAN
    assert find_shard_plan(err.getvalue().strip().splitlines()[-1]).shards == 3
    monkeypatch.delenv("ROBOAUG_MAX_SHARDS")
    # a fixed count (the spec's shards: 1) runs in this pod
    spec["shards"] = 1
    with redirect_stderr(io.StringIO()), redirect_stdout(io.StringIO()):
        assert main(["--spec", json.dumps(spec), "--processes", "1"]) == 0
    assert (tmp_path / "out/meta/info.json").is_file()
