"""Failures: the exit-code contract, one clear line naming the cause, nothing half-written."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


from tests.worker.helpers import make_spec, run_worker
from roboaug.api import joblogs
from roboaug.api.contract import ERROR_LINE_PREFIX, find_error_line
from roboaug.worker.errors import ExitCode


def _error_line(res) -> tuple[int, str, str]:
    """The one error line (the contract's parser, which the operator uses too): the whole `msg`
    of the last JSON log line (roboaug.api.joblogs), at level error."""
    logged = [joblogs.parse(l) for l in res.stderr.splitlines() if l.strip()]
    assert logged and all(logged), res.stderr[-2000:]  # every line a job-log line
    lines = [l for l in logged if l["msg"].startswith(ERROR_LINE_PREFIX + "[")]
    assert len(lines) == 1 and lines[0] is logged[-1] and lines[0]["level"] == "error", res.stderr[-2000:]
    found = find_error_line(json.dumps(lines[0]))
    assert found is not None and found.text == lines[0]["msg"] and found.cause, lines[0]
    return found.code, found.name, found.cause


def _assert_nothing_left(out: Path) -> None:
    assert not out.exists()
    assert not any(p.name.startswith(f".{out.name}") for p in out.parent.iterdir()), list(out.parent.iterdir())


def _fails(spec, code: ExitCode, words: str, out: Path):
    res = run_worker(spec)
    assert res.returncode == int(code), res.stderr[-2000:]
    got_code, name, cause = _error_line(res)
    assert got_code == int(code) and name == code.name.lower()
    assert words in cause, cause
    assert "Traceback" not in res.stderr  # a known cause is one line, not a stack
    _assert_nothing_left(out)


def test_missing_dataset_exits_10(tmp_path):
    out = tmp_path / "out"
    _fails(make_spec(tmp_path / "nope", out), ExitCode.DATASET_NOT_FOUND, "not found", out)


def test_unsupported_lerobot_version_exits_11(sources, tmp_path, copy_source):
    src = copy_source(sources["v2.1"])
    info = json.loads((src / "meta/info.json").read_text())
    info["codebase_version"] = "v2.0"
    (src / "meta/info.json").write_text(json.dumps(info))
    out = tmp_path / "out"
    _fails(make_spec(src, out), ExitCode.UNSUPPORTED_FORMAT, "'v2.0' is not supported", out)


def test_unrecognised_folder_exits_11(tmp_path):
    src = tmp_path / "junk"
    src.mkdir()
    (src / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    _fails(make_spec(src, out), ExitCode.UNSUPPORTED_FORMAT, "format not recognised", out)


def test_corrupt_mp4_exits_12(sources, tmp_path, copy_source):
    src = copy_source(sources["v3.0"])
    victim = src / "videos/observation.images.top/chunk-000/file-001.mp4"
    data = bytearray(victim.read_bytes())
    data[len(data) // 3 :] = os.urandom(len(data) - len(data) // 3)  # keep the header, trash the frames
    victim.write_bytes(bytes(data))
    out = tmp_path / "out"
    res = run_worker(make_spec(src, out))
    assert res.returncode == int(ExitCode.CORRUPT_VIDEO), res.stderr[-2000:]
    _, _, cause = _error_line(res)
    assert "file-001.mp4" in cause
    _assert_nothing_left(out)


def test_truncated_mp4_exits_12(sources, tmp_path, copy_source):
    src = copy_source(sources["v2.1"])
    victim = src / "videos/chunk-000/observation.images.top/episode_000001.mp4"
    victim.write_bytes(victim.read_bytes()[:200])
    out = tmp_path / "out"
    _fails(make_spec(src, out), ExitCode.CORRUPT_VIDEO, "episode_000001.mp4", out)


def test_no_camera_exits_13(sources, tmp_path, copy_source):
    src = copy_source(sources["v2.1"])
    info = json.loads((src / "meta/info.json").read_text())
    info["features"] = {k: v for k, v in info["features"].items() if v["dtype"] != "video"}
    (src / "meta/info.json").write_text(json.dumps(info))
    out = tmp_path / "out"
    _fails(make_spec(src, out), ExitCode.NO_CAMERA_FEATURE, "no camera feature", out)


def test_image_parquet_without_image_column_exits_13(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "tab"
    (src / "data").mkdir(parents=True)
    pq.write_table(pa.table({"x": [1, 2]}), src / "data/train-00000-of-00001.parquet")
    out = tmp_path / "out"
    _fails(make_spec(src, out), ExitCode.NO_CAMERA_FEATURE, "no image column", out)


def test_invalid_spec_exits_15_naming_the_field(tmp_path):
    spec = make_spec(tmp_path, tmp_path / "out", augment_brightness_min=50, augment_brightness_max=10)
    res = run_worker(spec)
    assert res.returncode == int(ExitCode.INVALID_SPEC)
    _, _, cause = _error_line(res)
    assert "augment_brightness" in cause


def test_existing_output_is_not_overwritten(sources, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = run_worker(make_spec(sources["v2.1"], out))
    assert res.returncode == int(ExitCode.INVALID_SPEC)
    assert (out / "keep.txt").read_text() == "mine"


def test_spec_sources_and_job_id(sources, tmp_path):
    """ROBOAUG_SPEC_FILE (the file the operator mounts) and --spec-file work; without spec.job_id the
    env ROBOAUG_JOB_ID names the output."""
    spec = make_spec(sources["image"], tmp_path / "unused")
    del spec["job_id"], spec["output_dataset_id"]
    spec["dataset_id"] = f"file://{tmp_path / 'img'}"
    import shutil

    shutil.copytree(sources["image"], tmp_path / "img")
    mounted = tmp_path / "mounted-spec.json"
    mounted.write_text(json.dumps(spec))
    mounted.chmod(0o444)  # as mounted: read-only
    env = {**os.environ, "ROBOAUG_SPEC_FILE": str(mounted), "ROBOAUG_JOB_ID": "abcdef12-0000-4000-8000-000000000000"}
    import subprocess

    res = subprocess.run([sys.executable, "-m", "roboaug.worker"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "img-augmented-abcdef12" / "meta/augmentation.json").is_file()
    env.pop("ROBOAUG_JOB_ID")
    res = subprocess.run([sys.executable, "-m", "roboaug.worker"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == int(ExitCode.INVALID_SPEC) and "ROBOAUG_JOB_ID" in res.stderr
    f = tmp_path / "spec.json"
    f.write_text(json.dumps({**spec, "job_id": "99999999-0000-4000-8000-000000000000"}))
    res = subprocess.run([sys.executable, "-m", "roboaug.worker", "--spec-file", str(f)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "img-augmented-99999999").is_dir()


def test_bad_contract_env_is_invalid_spec_naming_the_variable(monkeypatch, capsys, tmp_path, sources):
    from roboaug.worker import __main__ as cli

    monkeypatch.setenv("ROBOAUG_ATTEMPT", "first")
    code = cli.main(["--spec", json.dumps(make_spec(sources["image"], tmp_path / "out")), "--processes", "1"])
    assert code == int(ExitCode.INVALID_SPEC)
    assert "error[15 invalid_spec]: ROBOAUG_ATTEMPT must be an integer >= 0, got 'first'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unexpected_exception_is_internal_with_traceback(monkeypatch, capsys, tmp_path, sources):
    from roboaug.worker import __main__ as cli
    from roboaug.worker import pipeline

    def boom(*a, **k):
        raise KeyError("bug")

    monkeypatch.setattr(pipeline, "detect_format", boom)
    code = cli.main(["--spec", json.dumps(make_spec(sources["image"], tmp_path / "out")), "--processes", "1"])
    err = capsys.readouterr().err
    assert code == int(ExitCode.INTERNAL)
    assert err.index("Traceback") < err.index("roboaug-worker: error[70 internal]")
    _assert_nothing_left(tmp_path / "out")


def test_memory_error_is_out_of_memory(monkeypatch, capsys, tmp_path, sources):
    from roboaug.worker import __main__ as cli
    from roboaug.worker import pipeline

    def oom(*a, **k):
        raise MemoryError()

    monkeypatch.setattr(pipeline, "detect_format", oom)
    code = cli.main(["--spec", json.dumps(make_spec(sources["image"], tmp_path / "out")), "--processes", "1"])
    assert code == int(ExitCode.OUT_OF_MEMORY)
    assert "error[76 out_of_memory]" in capsys.readouterr().err
