"""The project's limits.max_frames_per_job, enforced by the worker (only it learns the source's
size): refused from the source's metadata before anything is downloaded or written, with the
contract's one line naming the policy and a permanent exit code; a job at exactly the limit runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from roboaug.api.contract import MAX_FRAMES, find_error_line, is_permanent
from roboaug.api.models import default_output_dataset_id
from roboaug.devstack import synthetic as fixtures
from roboaug.devstack.hubserver import WRITE_TOKEN
from roboaug.devstack.hubserver.fixtures import hub_env, local_hub, local_hub_session  # noqa: F401
from roboaug.worker import hub
from roboaug.worker.errors import ExitCode
from tests.worker.helpers import JOB, PROJECT, error_lines, make_spec, run_worker

# sources (conftest): v3.0 has 12+15+10+8 = 45 frames, v2.1 12+15+10 = 37, image 6 rows


def _limited(limit: int) -> dict[str, str]:
    return {**os.environ, MAX_FRAMES.name: str(limit)}


def _refused(res: subprocess.CompletedProcess, frames: int, limit: int) -> str:
    assert res.returncode == int(ExitCode.INVALID_SPEC) and is_permanent(res.returncode), res.stderr[-2000:]
    lines = error_lines(res.stderr)
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    found = find_error_line(lines[0])
    assert (found.code, found.name) == (15, "invalid_spec")
    assert f"would write {frames} frames" in found.cause
    assert f"limits.max_frames_per_job ({limit})" in found.cause
    return found.cause


def _nothing_written(out: Path) -> None:
    # `out` sits in a folder of its own that the worker would have had to create
    assert not out.parent.exists(), list(out.parent.rglob("*"))


@pytest.mark.parametrize("name, fields, frames", [
    ("v3.0", {"augment_copies": 2}, 45 * 3),  # originals kept plus two copies
    ("v2.1", {"augment_dataset_mode": "inplace"}, 37),
    ("image", {"augment_copies": 1}, 6 * 2),
])
def test_one_frame_over_the_limit_is_refused_before_anything_is_written(sources, tmp_path, name, fields, frames):
    out = tmp_path / "new" / "out"
    res = run_worker(make_spec(sources[name], out, **fields), env=_limited(frames - 1))
    cause = _refused(res, frames, frames - 1)
    assert cause.startswith("dataset_id: ")
    _nothing_written(out)
    assert '"phase": "augmenting"' not in res.stdout  # no work started


@pytest.mark.parametrize("name, fields, frames", [
    ("image", {"augment_copies": 1}, 6 * 2),
    ("v2.1", {"augment_dataset_mode": "inplace", "augment_transforms": "lighting"}, 37),
])
def test_exactly_the_limit_runs(sources, tmp_path, name, fields, frames):
    out = tmp_path / "out"
    res = run_worker(make_spec(sources[name], out, **fields), env=_limited(frames))
    assert res.returncode == 0, res.stderr[-2000:]
    assert out.is_dir()
    done = json.loads(res.stdout.strip().splitlines()[-1])
    assert done["event"] == "done"


def test_an_info_json_that_understates_the_episodes_is_caught_before_any_video_is_read(sources, tmp_path,
                                                                                       copy_source):
    src = copy_source(sources["v3.0"])
    info = json.loads((src / "meta/info.json").read_text())
    info["total_frames"] = 1
    (src / "meta/info.json").write_text(json.dumps(info))
    out = tmp_path / "out"
    res = run_worker(make_spec(src, out, augment_copies=2), env=_limited(100))  # info.json: 3 frames
    _refused(res, 45 * 3, 100)
    assert not out.exists()
    assert not any(p.name.startswith(f".{out.name}") for p in out.parent.iterdir())  # staging removed


def test_a_hub_lerobot_source_over_the_limit_is_refused_before_its_data_is_downloaded(local_hub, tmp_path):
    repo = "roboaug-test/frames-src"
    src = fixtures.make_lerobot(tmp_path / "src", "v3.0", lengths=(6, 8))
    hub.upload(src, repo, WRITE_TOKEN, "source", private=False)
    local_hub.reset()
    spec = {"project_id": PROJECT, "job_id": JOB, "dataset_id": repo, "augment_transforms": "lighting",
            "augment_copies": 1}
    env = hub_env(local_hub, str(tmp_path / "hf_home"), HF_TOKEN=WRITE_TOKEN, ROBOAUG_WORKDIR=str(tmp_path / "wd"),
                  **{MAX_FRAMES.name: "27"})
    res = subprocess.run([sys.executable, "-m", "roboaug.worker", "--spec", json.dumps(spec), "--processes", "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    _refused(res, 28, 27)
    read = {r.path.split("/resolve/", 1)[1].split("/", 1)[1] for r in local_hub.requests(path_regex=r"/resolve/")}
    assert read == {"meta/info.json"}  # no video, no data file, not even the episode index
    assert local_hub.requests("POST") == []  # no repo created, nothing committed
    assert not local_hub.store.exists("dataset", default_output_dataset_id(repo, JOB))
