"""Worker test fixtures: generated source datasets (made once per session) and a runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from roboaug.devstack import synthetic as fixtures
from tests.worker.helpers import run_worker


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
