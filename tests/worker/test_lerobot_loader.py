"""lerobot's own LeRobotDataset loads what the worker published: every sample, every camera frame.

The independent checker (checker.py) asserts the format's invariants from the spec; this test asks
the real consumer, the way its users load a dataset: the worker publishes to the local Hub test
server (a private repo, read with a read token), and lerobot loads it by repo id with its default
revision (which lerobot resolves through the repo's tags to the `codebase_version` tag), a fresh
cache and no `root=`. It runs lerobot in its own virtual environment (torch and lerobot's pins would
not fit ours), dumps every sample, and compares each camera frame with the frame PyAV decodes at
the sample's timestamp from the file the episode metadata names, and each image feature with its
PNG. lerobot 0.4 reads LeRobot v3.0 only, so the v2.1 writer is covered by checker.py alone.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from roboaug.api.models import DatasetRef
from roboaug.devstack.hubserver import READ_TOKEN, WRITE_TOKEN
from roboaug.devstack.hubserver.fixtures import hub_env, local_hub, local_hub_session  # noqa: F401
from roboaug.worker import hub
from tests.worker.helpers import make_spec, run_worker

HERE = Path(__file__).resolve().parent
LEROBOT_VENV = Path(os.environ.get("ROBOAUG_LEROBOT_VENV") or Path.home() / ".cache/roboaug/lerobot-venv")
LEROBOT_PYTHON = LEROBOT_VENV / "bin" / "python"
_INSTALLED = LEROBOT_PYTHON.exists() and any(LEROBOT_VENV.glob(".installed-*"))  # ./dev's stamp: complete

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _INSTALLED, reason=(
        f"lerobot is not installed in {LEROBOT_VENV}: `./dev setup-lerobot` installs lerobot with torch "
        "(about 8 GB) there; `./dev test` does it itself when CI=true or ROBOAUG_LEROBOT_CHECK=1")),
]


def _load_with_lerobot(local_hub, repo_id: str, tmp_path: Path) -> tuple[dict, dict]:
    out = tmp_path / "lerobot_samples.npz"
    env = hub_env(local_hub, str(tmp_path / "hf_fresh"), HF_TOKEN=READ_TOKEN, SVT_LOG="1")
    env.pop("PYTHONPATH", None)
    res = subprocess.run([str(LEROBOT_PYTHON), str(HERE / "lerobot_load.py"), repo_id, str(out)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, f"lerobot could not load the dataset:\n{res.stderr[-4000:]}"
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    with np.load(out) as z:
        return summary, {k: z[k] for k in z.files}


def _decoded(path: Path) -> tuple[list[float], np.ndarray]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [(float(f.pts * s.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(s)]
    return [t for t, _ in frames], np.stack([f for _, f in frames])


@pytest.mark.parametrize("source", ["multicam", "v3.0"])
def test_lerobot_loads_every_sample_of_the_output(local_hub, sources, tmp_path, source):
    repo_id = f"roboaug-test/lerobot-check-{source.replace('.', '')}"
    spec = make_spec(sources[source], repo_id, augment_copies=1)
    res = run_worker(spec, env=hub_env(local_hub, str(tmp_path / "hf_worker"), HF_TOKEN=WRITE_TOKEN,
                                       ROBOAUG_WORKDIR=str(tmp_path / "wd")))
    assert res.returncode == 0, res.stderr[-3000:]
    commit = json.loads(res.stdout.strip().splitlines()[-1])["commit"]
    root = hub.download(DatasetRef.parse(f"hf://{repo_id}@{commit}"), tmp_path / "out", READ_TOKEN)
    info = json.loads((root / "meta/info.json").read_text())
    summary, got = _load_with_lerobot(local_hub, repo_id, tmp_path)
    assert summary["revision"] == info["codebase_version"] == "v3.0"  # found through the tag
    fps = info["fps"]

    n = info["total_frames"]
    assert summary["samples"] == n and summary["episodes"] == info["total_episodes"]
    assert got["index"].tolist() == list(range(n))
    rows = pq.read_table(sorted(root.glob("data/*/*.parquet"))).to_pydict()
    order = np.argsort(rows["index"])
    for col in ("episode_index", "frame_index", "task_index"):
        assert got[col].tolist() == np.asarray(rows[col])[order].tolist(), col
    assert np.allclose(got["timestamp"], got["frame_index"] / fps, atol=1e-4)

    episodes = {r["episode_index"]: r for r in
                pq.read_table(sorted(root.glob("meta/episodes/*/*.parquet"))).to_pylist()}
    video_keys = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    image_keys = [k for k, f in info["features"].items() if f["dtype"] == "image"]
    assert set(summary["cameras"]) == set(video_keys + image_keys)
    for key in video_keys:
        cache: dict[str, tuple] = {}
        for i in range(n):
            ep = episodes[int(got["episode_index"][i])]
            rel = info["video_path"].format(video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"],
                                            file_index=ep[f"videos/{key}/file_index"])
            if rel not in cache:
                cache[rel] = _decoded(root / rel)
            times, frames = cache[rel]
            t = ep[f"videos/{key}/from_timestamp"] + got["frame_index"][i] / fps
            k = int(np.argmin(np.abs(np.asarray(times) - t)))
            assert abs(times[k] - t) <= 1e-4, f"{key} sample {i}: no frame at {t:.4f}s in {rel}"
            assert np.array_equal(got[f"cam:{key}"][i], frames[k]), f"{key} sample {i}: pixels differ"
    for key in image_keys:
        pngs = np.asarray(rows[key], dtype=object)[order]
        for i in range(n):
            ref = np.asarray(Image.open(io.BytesIO(pngs[i]["bytes"])).convert("RGB"))
            assert np.array_equal(got[f"cam:{key}"][i], ref), f"{key} sample {i}: pixels differ"
    # and the augmented copies are not the originals
    n_src = json.loads((sources[source] / "meta/info.json").read_text())["total_frames"]
    first = video_keys[0]
    assert not np.array_equal(got[f"cam:{first}"][:n_src], got[f"cam:{first}"][n_src:2 * n_src])
