"""Golden output: one fixed job's bytes, pinned.

A refactor (layout, registry, pipeline boundaries) must not change a single output byte; an
intended change of the output updates tests/worker/golden/ in the same commit, with the reason.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.worker.helpers import G1, make_spec, run_worker

GOLDEN = Path(__file__).with_name("golden") / "g1_v30_all_transforms.json"
SOURCE_MARK = b"file://{SOURCE}"
PATH_FILES = {"README.md", "meta/augmentation.json"}  # they name the source, a per-run tmp path


def output_digest(root: Path, source_url: str) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            data = p.read_bytes()
            if rel in PATH_FILES:
                data = data.replace(source_url.encode(), SOURCE_MARK)
            out[rel] = hashlib.sha256(data).hexdigest()
    return out


@pytest.mark.slow
def test_fixed_job_output_bytes_match_the_golden_digest(tmp_path):
    source = G1 / "g1_pick_bottle_v3.0"
    if not source.is_dir():
        pytest.skip(f"the real LeRobot v3.0 dataset is missing at {source} (shared/datasets beside the checkout)")
    src = tmp_path / "src"
    shutil.copytree(source, src)
    spec = make_spec(src, tmp_path / "out", augment_copies=1)  # all four transforms, stacked
    res = run_worker(spec, processes=2, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    want = json.loads(GOLDEN.read_text())["files"]
    got = output_digest(tmp_path / "out", spec["dataset_id"])
    assert sorted(got) == sorted(want)
    changed = sorted(rel for rel in want if got[rel] != want[rel])
    assert not changed, f"output bytes changed: {changed}"
