"""Worker test helpers: generated source datasets (made once per session) and a runner."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import fixtures  # noqa: E402

PROJECT = "00000000-0000-4000-8000-000000000001"
JOB = "11111111-2222-4333-8444-555555555555"
G1 = Path(__file__).resolve().parents[3] / "shared" / "datasets"
if not G1.is_dir():
    G1 = Path("/work/shared/datasets")


@pytest.fixture(scope="session")
def sources(tmp_path_factory):
    """Generated datasets, read-only by convention: tests copy before writing."""
    base = tmp_path_factory.mktemp("sources")
    return {
        "v3.0": fixtures.make_lerobot(base / "v30", "v3.0", lengths=(12, 15, 10, 8), episodes_per_file=3),
        "v2.1": fixtures.make_lerobot(base / "v21", "v2.1", lengths=(12, 15, 10)),
        "image": fixtures.make_image_dataset(base / "img", rows=6),
        "multicam": fixtures.make_lerobot(
            base / "multi", "v3.0", lengths=(11, 14, 9),
            cameras={"observation.images.top": "av1", "observation.images.wrist": "h264"},
            image_keys=("observation.images.side",), episodes_per_file=2,
        ),
    }


def make_spec(dataset: Path | str, out: Path | str, **kw) -> dict:
    spec = {
        "project_id": PROJECT, "job_id": JOB,
        "dataset_id": dataset if isinstance(dataset, str) else f"file://{dataset}",
        "output_dataset_id": out if isinstance(out, str) else f"file://{out}",
        "augment_transforms": "lighting,noise,blur,occlusion", "augment_copies": 2,
    }
    spec.update(kw)
    return spec


def run_worker(spec: dict, *, processes: int = 1, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """The real command line, in a fresh interpreter.

    It runs in its own process group: on a timeout the whole group (episode processes included)
    is killed and the test fails with the output so far, instead of waiting on pipes that a
    surviving child still holds open.
    """
    argv = [sys.executable, "-m", "roboaug_worker", "--spec", json.dumps(spec), "--processes", str(processes)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"worker did not finish in {timeout}s\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def worker_run():
    return run_worker


@pytest.fixture
def copy_source(tmp_path):
    def _copy(src: Path) -> Path:
        dst = tmp_path / ("src_" + src.name)
        shutil.copytree(src, dst)
        return dst
    return _copy
