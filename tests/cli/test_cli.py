"""The `roboaug` command, run in-process (`main(argv)`) against the real gateway app on a real port."""

from __future__ import annotations

import io
import json
import os
import stat
import uuid
from pathlib import Path

import pytest
from pydantic import Field

from roboaug.api.cli import Exit, main
from roboaug.api.cli import flags
from roboaug.api.cli.app import build_parser
from roboaug.api.models import AugmentationJobCreateRequest, cr_name
from tests.cli._live import FakeContract, FakeOperator, PNG_1x1, progress_status, serve, set_status
from tests.gateway.gateway_helpers import ADMIN_KEY, PROJECT

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "manifests" / "samples" / "job.yaml"
BASE = ["--project-id", PROJECT, "--dataset-id", "lerobot/pusht"]


class Run:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err


def run(env, *argv, stdin: str = "") -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(stdin), env=env)
    return Run(code, out.getvalue(), err.getvalue())


def only_job(store) -> dict:
    (obj,) = store.jobs.values()
    return obj


# -- flags from the model ----------------------------------------------------------------------------
def _flags_of(parser_args) -> set[str]:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[parser_args]
    return {s for a in sub._actions for s in a.option_strings}


def test_every_request_field_has_a_flag_on_submit_and_preview():
    wanted = {flags.flag_name(f) for f in AugmentationJobCreateRequest.model_fields}
    assert wanted <= _flags_of("submit")
    assert wanted <= _flags_of("preview")


def test_a_new_field_gets_a_flag_without_an_edit():
    class Grown(AugmentationJobCreateRequest):
        notify_url: str | None = Field(None, description="where to POST")
        tags: list[str] = Field(default_factory=list)
        strict: bool = False

    import argparse
    parser = argparse.ArgumentParser()
    flags.add_request_flags(parser, Grown)
    args = parser.parse_args(["--notify-url", "https://x", "--tags", "a", "--tags", "b", "--no-strict"])
    assert flags.flag_values(args, Grown) == {"notify_url": "https://x", "tags": ["a", "b"], "strict": False}


def test_submit_with_flags(env, store):
    r = run(env, "submit", *BASE, "--augment-copies", "2", "--augment-mode", "independent",
            "--augment-transforms", "blur,noise", "--augment-copies-per-transform", "blur=1",
            "--augment-copies-per-transform", "noise=4", "--output-visibility", "public")
    assert r.code == Exit.ok, r.err
    spec = only_job(store)["spec"]
    assert spec["augment_copies"] == 2 and spec["augment_copies_per_transform"] == {"blur": 1, "noise": 4}
    assert spec["output_visibility"] == "public" and spec["augment_mode"] == "independent"
    assert r.out.startswith(f"submitted job {spec['job_id']} (queued)")


def test_submit_from_the_kubectl_manifest_with_a_flag_over_it(env, store):
    r = run(env, "-o", "json", "submit", "-f", str(SAMPLE), "--augment-seed", "9")
    assert r.code == Exit.ok, r.err
    answer = json.loads(r.out)
    spec = store.jobs[cr_name(answer["job_id"])]["spec"]
    assert spec["dataset_id"] == "lerobot/pusht" and spec["project_id"] == PROJECT
    assert spec["name"] == "pusht-lighting" and spec["augment_seed"] == 9
    assert answer["status"] == "queued"


def test_submit_from_stdin_refuses_cluster_side_fields(env, store):
    manifest = SAMPLE.read_text() + "  hub_token_secret: {name: mine}\n"
    r = run(env, "submit", "-f", "-", stdin=manifest)
    assert r.code == Exit.usage and not store.jobs
    assert r.err.strip() == ("roboaug: error: -: spec.hub_token_secret: set on the cluster side, not in a REST "
                             "request (the gateway takes it from the project); remove it")


def test_bad_field_is_one_line_naming_it_before_sending(env, store):
    r = run(env, "submit", *BASE, "--augment-copies", "99")
    assert r.code == Exit.usage and not store.jobs
    assert r.err.count("\n") == 1 and r.err.startswith("roboaug: error: augment_copies: ")
    r = run(env, "submit", "--dataset-id", "lerobot/pusht")
    assert r.code == Exit.usage and r.err.startswith("roboaug: error: project_id: Field required")


def test_gateway_refusal_is_one_line_with_its_status(env, store):
    run(env, "submit", *BASE, "--idempotency-key", "k")
    r = run(env, "submit", *BASE, "--augment-copies", "5", "--idempotency-key", "k")
    assert r.code == Exit.refused
    assert r.err.startswith("roboaug: error (422): Idempotency-Key: already used") and r.err.count("\n") == 1
    r = run(env, "-o", "json", "status", str(uuid.uuid4()))
    assert r.code == Exit.refused and json.loads(r.err)["error"]["status_code"] == 404


def test_no_config_and_unreachable(env, tmp_path):
    r = run({"HOME": str(tmp_path), "ROBOAUG_CONFIG": str(tmp_path / "none")}, "list")
    assert r.code == Exit.usage and "no gateway URL" in r.err
    r = run({**env, "ROBOAUG_URL": "http://127.0.0.1:9"}, "--http-timeout", "2", "list")
    assert r.code == Exit.unavailable and "cannot reach the gateway" in r.err


# -- watch, wait --------------------------------------------------------------------------------------
@pytest.mark.parametrize("outcome, code, last", [
    ("completed", Exit.ok, "completed in "),
    ("failed", Exit.failed, "failed: source: repository not found"),
])
def test_submit_watch_ends_with_the_outcome(env, store, outcome, code, last):
    with FakeOperator(store, outcome, steps=4, pause=0.1):
        r = run(env, "submit", *BASE, "--watch", "--poll", "0.02", "--every", "0")
    assert r.code == code, r.err
    final = r.out.strip().splitlines()[-1]
    assert final.startswith(last)
    if outcome == "completed":
        assert final.endswith(": lerobot/pusht-augmented-0123abcd")
    # Not a terminal: plain lines, no carriage returns, each a progress line.
    assert "\r" not in r.err and "\x1b" not in r.err
    progress = [l for l in r.err.splitlines() if l.startswith("augmenting")]
    assert progress and "/270 frames" in progress[-1] and "/3 episodes" in progress[-1]


def test_cancel_then_wait_exits_cancelled(env, store):
    with FakeOperator(store, "completed", steps=50, pause=0.05):
        job = json.loads(run(env, "-o", "json", "submit", *BASE).out)["job_id"]
        r = run(env, "cancel", job)
        assert r.code == Exit.ok and r.out.startswith(f"cancel requested for job {job}")
        r = run(env, "wait", job, "--poll", "0.02", "-q")
    assert r.code == Exit.cancelled and r.out.strip() == f"cancelled: job {job}" and r.err == ""


def test_wait_timeout_and_json(env, store):
    job = json.loads(run(env, "-o", "json", "submit", *BASE).out)["job_id"]
    r = run(env, "-o", "json", "wait", job, "--timeout", "0.2", "--poll", "0.05")
    assert r.code == Exit.timeout and json.loads(r.out)["status"] == "queued"
    assert "still queued" in r.err


# -- status, list --------------------------------------------------------------------------------------
def test_status_and_list(env, store):
    first = json.loads(run(env, "-o", "json", "submit", *BASE).out)["job_id"]
    second = json.loads(run(env, "-o", "json", "submit", *BASE, "--dataset-id", "lerobot/aloha").out)["job_id"]
    store.jobs[cr_name(first)]["metadata"]["creationTimestamp"] = "2025-07-03T10:00:00Z"
    store.jobs[cr_name(second)]["metadata"]["creationTimestamp"] = "2025-07-03T11:00:00Z"
    set_status(store, first, progress_status(first, "augmenting", 135, 270, 1, 3))
    r = run(env, "status", first)
    assert r.code == Exit.ok
    assert "status:    running (phase augmenting)" in r.out and "135/270 frames, 1/3 episodes" in r.out
    r = run(env, "list")
    header, *rows = r.out.splitlines()
    assert header.split() == ["JOB", "ID", "STATUS", "PHASE", "PROGRESS", "DATASET", "OUTPUT", "AGE"]
    assert [row.split()[0] for row in rows] == [second, first]  # newest first
    assert rows[1].split()[1:5] == ["running", "augmenting", "50%", "lerobot/pusht"]
    r = run(env, "-o", "json", "list", "--status", "running")
    assert [j["job_id"] for j in json.loads(r.out)] == [first]
    assert run(env, "list", "--status", "failed").out.strip() == "no jobs"


# -- logs, preview (fake of their contract) --------------------------------------------------------
@pytest.fixture
def fake_env(tmp_path):
    known = str(uuid.uuid4())
    contract = FakeContract(ADMIN_KEY, known)
    with serve(contract) as url:
        yield {"ROBOAUG_URL": url, "ROBOAUG_API_KEY": ADMIN_KEY, "HOME": str(tmp_path)}, known, contract


def test_logs_are_readable_lines(fake_env):
    env, known, _ = fake_env
    r = run(env, "logs", known)
    assert r.code == Exit.ok
    assert r.out.splitlines() == [
        "2025-07-03T10:00:00Z INFO  downloading phase=downloading attempt=0",
        "2025-07-03T10:00:04Z WARNING stats differ from data feature=observation.state",
        "2025-07-03T10:00:05Z INFO  libav: frame dropped",
    ]
    r = run(env, "-o", "json", "logs", known)
    assert json.loads(r.out.splitlines()[2]) == {"ts": "2025-07-03T10:00:05Z", "level": "info",
                                                 "msg": "libav: frame dropped", "raw": True}


def test_logs_follow_passes_follow(fake_env):
    env, known, contract = fake_env
    contract.release.set()
    assert run(env, "logs", known, "-f").code == Exit.ok
    assert contract.seen[-1]["query"]["follow"] == "true"


def test_preview_writes_the_png_and_the_frames(fake_env, tmp_path):
    env, _, contract = fake_env
    out = tmp_path / "grid.png"
    r = run(env, "preview", *BASE, "--augment-copies", "2", "--episodes", "0,1", "--frames", "3", "--out", str(out))
    assert r.code == Exit.ok, r.err
    assert out.read_bytes() == PNG_1x1 and r.out.strip() == f"wrote {out} ({len(PNG_1x1)} bytes)"
    assert contract.seen[-1]["body"] == {"project_id": PROJECT, "dataset_id": "lerobot/pusht", "augment_copies": 2,
                                         "episodes": [0, 1], "frames": [3], "format": "png"}
    r = run(env, "preview", "-f", str(SAMPLE), "--episodes", "2", "--frames-dir", str(tmp_path / "frames"))
    assert r.code == Exit.ok, r.err
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        "e2-f5-observation.image-copy0.png", "e2-f5-observation.image-original.png"]
    r = run(env, "preview", *BASE, "--episodes", "x")
    assert r.code == Exit.usage and "--episodes: expected comma-separated integers" in r.err


# -- login and config ---------------------------------------------------------------------------------
def test_login_writes_an_owner_only_file_and_never_prints_the_key(gateway, tmp_path):
    cfg = tmp_path / "cfg" / "roboaug" / "config"
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    r = run(env, "login", "--url", gateway, "--api-key-stdin", stdin="wrong-key\n")
    assert r.code == Exit.refused and not cfg.exists()
    r = run(env, "login", "--url", gateway, "--api-key-stdin", stdin=ADMIN_KEY + "\n")
    assert r.code == Exit.ok, r.err
    assert ADMIN_KEY not in r.out + r.err and ADMIN_KEY[-4:] in r.out
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600 and stat.S_IMODE(cfg.parent.stat().st_mode) == 0o700
    assert json.loads(cfg.read_text()) == {"url": gateway, "api_key": ADMIN_KEY}
    assert run(env, "list").code == Exit.ok  # the file is enough
