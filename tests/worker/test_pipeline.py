"""End to end through `python -m roboaug.worker` on generated and real datasets, each output
verified by the independent checker."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.worker import checker
from tests.worker.helpers import G1, make_spec, run_worker, tree_digest

N_TRANSFORMS = 4


def _ok(res):
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _video_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _expected_new(n_eps: int, spec: dict) -> int:
    if spec.get("augment_dataset_mode", "copy") == "inplace":
        return 0
    per = spec["augment_copies"] * (N_TRANSFORMS if spec.get("augment_mode") == "independent" else 1)
    return n_eps * per


@pytest.mark.parametrize("augment_mode", ["stacked", "independent"])
@pytest.mark.parametrize("mode", ["copy", "inplace"])
@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_lerobot_formats(sources, tmp_path, version, mode, augment_mode):
    src = sources[version]
    copies = 1 if augment_mode == "independent" else 2
    spec = make_spec(src, tmp_path / "out", augment_dataset_mode=mode, augment_mode=augment_mode, augment_copies=copies)
    _ok(run_worker(spec))
    out = tmp_path / "out"
    src_info = json.loads((src / "meta/info.json").read_text())
    n = src_info["total_episodes"]
    report = checker.check_lerobot(out)
    assert report["episodes"] == n + _expected_new(n, spec)
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == version
    before, after = tree_digest(src), tree_digest(out)
    if mode == "copy":
        # originals byte for byte (metadata files that list episodes necessarily grow)
        grown = {"meta/info.json", "meta/stats.json", "meta/episodes.jsonl", "meta/episodes_stats.jsonl"}
        # the originals' episode rows are rewritten with stats recomputed from the data: all else equal
        restated = {rel for rel in before if rel.startswith("meta/episodes/")}
        for rel, digest in before.items():
            if rel in restated:
                a, b = pq.read_table(src / rel), pq.read_table(out / rel)
                keep = [c for c in a.column_names if not c.startswith("stats/")]
                assert a.schema == b.schema and a.select(keep).equals(b.select(keep)), rel
            elif rel not in grown:
                assert after.get(rel) == digest, rel
        assert report["frames"] == src_info["total_frames"] * (1 + _expected_new(n, spec) // n)
    else:
        assert info["total_frames"] == src_info["total_frames"] and info["total_episodes"] == n
        videos = [rel for rel in before if rel.endswith(".mp4")]
        assert videos and all(after[rel] != before[rel] for rel in videos)
        for rel in videos:  # same frame count and timing, different pixels
            a, b = _video_frames(src / rel), _video_frames(out / rel)
            assert a.shape == b.shape and np.abs(a.astype(int) - b).mean() > 1
    prov = json.loads((out / "meta/augmentation.json").read_text())
    assert prov["seed"] == 42 and prov["augment_dataset_mode"] == mode
    assert len(prov["episodes"]) == (n if mode == "inplace" else _expected_new(n, spec))
    for entry in prov["episodes"]:
        assert set(entry["params"]) == {"observation.images.top"}
        assert entry["params"]["observation.images.top"]["transforms"] == entry["transforms"]
        if augment_mode == "independent":
            assert len(entry["transforms"]) == 1
        else:
            assert entry["transforms"] == ["lighting", "occlusion", "blur", "noise"]
    card = (out / "README.md").read_text()
    assert "meta/preview.png" in card and (out / "meta/preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_multicamera_v30_with_image_feature(sources, tmp_path):
    src = sources["multicam"]
    spec = make_spec(src, tmp_path / "out", augment_copies=1)
    _ok(run_worker(spec))
    out = tmp_path / "out"
    report = checker.check_lerobot(out)
    assert report["episodes"] == 6
    prov = json.loads((out / "meta/augmentation.json").read_text())
    cams = ["observation.images.top", "observation.images.wrist", "observation.images.side"]
    for entry in prov["episodes"]:
        assert sorted(entry["params"]) == sorted(cams)
        # one light per copy for every camera, own lens and sensor per camera
        lights = {json.dumps(entry["params"][c]["lighting"], sort_keys=True) for c in cams}
        assert len(lights) == 1
    # the h264 camera stays h264, AV1 stays AV1
    info = json.loads((out / "meta/info.json").read_text())
    with av.open(str(out / "videos/observation.images.wrist/chunk-000/file-002.mp4")) as c:
        assert c.streams.video[0].codec_context.codec.canonical_name == "h264"
    assert info["features"]["observation.images.top"]["info"]["video.codec"] == "av1"


@pytest.mark.parametrize("mode", ["copy", "inplace"])
def test_image_dataset(sources, tmp_path, mode):
    src = sources["image"]
    spec = make_spec(src, tmp_path / "out", augment_dataset_mode=mode)
    _ok(run_worker(spec))
    out = tmp_path / "out"
    rows = 6 * (3 if mode == "copy" else 1)
    checker.check_image_dataset(out, rows)
    if mode == "copy":
        assert tree_digest(out)["data/train-00000-of-00001.parquet"] == tree_digest(src)["data/train-00000-of-00001.parquet"]
        assert (out / "data/train-00000-of-00001.roboaug.parquet").is_file()
    prov = json.loads((out / "meta/augmentation.json").read_text())
    assert len(prov["episodes"]) == (12 if mode == "copy" else 6)
    assert "num_examples: %d" % rows in (out / "README.md").read_text()


def test_image_card_listing_files_by_name_reaches_the_augmented_files(tmp_path):
    """A card whose data_files name each file (not push_to_hub's globs): the output's card lists
    the augmented files too, so `datasets` loads every row of every split and the recorded split
    sizes hold."""
    import datasets
    import yaml

    from roboaug.devstack import synthetic as fixtures

    src = fixtures.make_image_dataset(tmp_path / "src", splits={"train": 4, "test": 3}, explicit_files=True)
    spec = make_spec(src, tmp_path / "out", augment_dataset_mode="copy", augment_copies=1)
    _ok(run_worker(spec))
    out = tmp_path / "out"
    card = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert card["configs"][0]["data_files"] == [
        {"split": "train", "path": ["data/train-00000-of-00001.parquet", "data/train-00000-of-00001.roboaug.parquet"]},
        {"split": "test", "path": ["data/test-00000-of-00001.parquet", "data/test-00000-of-00001.roboaug.parquet"]},
    ]
    loaded = datasets.load_dataset(str(out))  # verifies the recorded split sizes against the rows
    assert {k: len(v) for k, v in loaded.items()} == {"train": 8, "test": 6}


def test_same_seed_same_bytes_other_seed_other_pixels(sources, tmp_path):
    src = sources["multicam"]
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _ok(run_worker(make_spec(src, a, augment_copies=1)))
    _ok(run_worker(make_spec(src, b, augment_copies=1)))
    _ok(run_worker(make_spec(src, c, augment_copies=1, augment_seed=7)))
    da, db, dc = tree_digest(a), tree_digest(b), tree_digest(c)
    assert da == db
    new_video = "videos/observation.images.top/chunk-000/file-002.mp4"
    assert da[new_video] != dc[new_video]
    diff = np.abs(_video_frames(a / new_video).astype(int) - _video_frames(c / new_video)).mean()
    assert diff > 1.0


def test_two_processes_same_bytes_as_one(sources, tmp_path):
    src = sources["v3.0"]
    one, two = tmp_path / "one", tmp_path / "two"
    _ok(run_worker(make_spec(src, one), processes=1))
    _ok(run_worker(make_spec(src, two), processes=2))
    assert tree_digest(one) == tree_digest(two)


def test_v30_small_file_limit_rolls_new_files_that_sort_last(sources, tmp_path, copy_source):
    src = copy_source(sources["v3.0"])
    info = json.loads((src / "meta/info.json").read_text())
    info["video_files_size_in_mb"] = 0  # every new episode gets its own mp4
    (src / "meta/info.json").write_text(json.dumps(info, indent=4))
    _ok(run_worker(make_spec(src, tmp_path / "out", augment_copies=1)))
    out = tmp_path / "out"
    checker.check_lerobot(out)
    files = sorted(p.name for p in (out / "videos/observation.images.top/chunk-000").glob("*.mp4"))
    assert files == [f"file-{i:03d}.mp4" for i in range(2 + 4)]


@pytest.mark.slow
@pytest.mark.parametrize("version,mode", [("v3.0", "copy"), ("v2.1", "inplace")])
def test_real_g1_dataset(tmp_path, version, mode):
    src = G1 / f"g1_pick_bottle_{version}"
    if not src.is_dir():
        pytest.skip(f"{src} is not available")
    before = tree_digest(src)
    spec = make_spec(src, tmp_path / "out", augment_copies=1, augment_dataset_mode=mode)
    _ok(run_worker(spec, processes=2, timeout=600))
    assert tree_digest(src) == before  # the shared sample is never written to
    report = checker.check_lerobot(tmp_path / "out")
    assert report["frames"] == 736 * (2 if mode == "copy" else 1)
