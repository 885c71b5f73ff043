"""Progress reporting: throttling, phase changes, JSON lines, and patching only status.progress."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid

from roboaug.worker.progress import ProgressReporter
from tests.worker.helpers import make_spec, run_worker


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_throttled_but_phase_changes_and_forced_reports_always_go_out():
    clock, out, sent = Clock(), io.StringIO(), []
    r = ProgressReporter(patch=sent.append, min_interval=2.0, stream=out, clock=clock)
    assert r.update("downloading")
    assert not r.update("downloading", frames_done=1)  # same phase, too soon
    clock.t = 1.0
    assert r.update("augmenting", episodes_total=4)  # phase change
    clock.t = 1.5
    assert not r.update("augmenting", episodes_done=1, episodes_total=4)
    clock.t = 3.1
    assert r.update("augmenting", episodes_done=2, episodes_total=4)
    clock.t = 3.2
    assert r.update("uploading", output_dataset_id="file:///x", force=True)
    assert [s["phase"] for s in sent] == ["downloading", "augmenting", "augmenting", "uploading"]
    lines = [json.loads(l) for l in out.getvalue().splitlines()]
    # each a job-log line (roboaug.api.joblogs): ts, level, msg, then the report as fields
    assert [{k: v for k, v in line.items() if k not in ("ts", "level", "msg")} for line in lines] == \
        [{"event": "progress", **s} for s in sent]
    assert [(line["level"], line["ts"][:19]) for line in lines] == [("info", s["updated_at"][:19]) for s in sent]
    assert lines[2]["msg"] == "augmenting: 2/4 episodes"
    assert sent[-1]["output_dataset_id"] == "file:///x"
    assert sent[2]["episodes_done"] == 2 and sent[2]["episodes_total"] == 4


class Wall:
    """A wall clock the test moves: second `t` after T0."""

    T0 = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)

    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.T0 + dt.timedelta(seconds=self.t)

    def iso(self, t):
        return (self.T0 + dt.timedelta(seconds=t)).isoformat().replace("+00:00", "Z")


def test_every_report_carries_each_phase_entered_with_when_it_began_and_ended():
    wall, sent = Wall(), []
    r = ProgressReporter(patch=sent.append, min_interval=100.0, stream=io.StringIO(), clock=Clock(), wall=wall)
    r.update("downloading")
    wall.t = 4
    assert not r.update("downloading", frames_done=1)  # throttled: no report, no new phase
    wall.t = 5
    r.update("augmenting")
    wall.t = 9
    r.update("uploading")
    wall.t = 12
    r.update("uploading", finished=True)
    assert sent[0]["phases"] == [{"name": "downloading", "started_at": wall.iso(0)}]
    assert sent[1]["phases"] == [{"name": "downloading", "started_at": wall.iso(0), "completed_at": wall.iso(5)},
                                 {"name": "augmenting", "started_at": wall.iso(5)}]
    assert sent[-1]["phases"] == [
        {"name": "downloading", "started_at": wall.iso(0), "completed_at": wall.iso(5)},
        {"name": "augmenting", "started_at": wall.iso(5), "completed_at": wall.iso(9)},
        {"name": "uploading", "started_at": wall.iso(9), "completed_at": wall.iso(12)},
    ]
    assert len(sent) == 4 and sent[-1]["updated_at"] == wall.iso(12)
    r.update("downloading", force=True)  # back to an earlier phase: the record keeps its first times
    assert [p["name"] for p in sent[-1]["phases"]] == ["downloading", "augmenting", "uploading"]
    assert sent[-1]["phases"][0]["completed_at"] == wall.iso(5)


def test_the_worker_progress_lines_carry_every_phase_and_its_times(sources, tmp_path):
    """The real worker on a small dataset: its last progress line names downloading, augmenting
    and uploading, each begun and ended, back to back, in order."""
    res = run_worker(make_spec(sources["v2.1"], tmp_path / "out", augment_copies=1,
                               augment_transforms="noise"))
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    reports = [line for line in lines if line.get("event") == "progress"]
    phases = reports[-1]["phases"]
    assert [p["name"] for p in phases] == ["downloading", "augmenting", "uploading"]
    stamps = [dt.datetime.fromisoformat(p[k].replace("Z", "+00:00")) for p in phases for k in ("started_at", "completed_at")]
    assert stamps == sorted(stamps)
    assert all(a["completed_at"] == b["started_at"] for a, b in zip(phases, phases[1:]))
    assert stamps[-1] <= dt.datetime.fromisoformat(reports[-1]["updated_at"].replace("Z", "+00:00"))
    assert reports[0]["phases"] == [{"name": "downloading", "started_at": reports[0]["updated_at"]}]


def test_patch_failure_never_fails_the_job(capsys):
    def down(body):
        raise ConnectionError("apiserver away")

    r = ProgressReporter(patch=down, stream=io.StringIO())
    assert r.update("downloading")
    assert r.patch_failures == 1
    assert "progress_patch_failed" in capsys.readouterr().err


def test_attempt_and_pod_come_from_the_environment(monkeypatch):
    """The pod's attempt number (downward API, worker contract) is in every report."""
    monkeypatch.delenv("ROBOAUG_CR_NAME", raising=False)
    monkeypatch.setenv("ROBOAUG_ATTEMPT", "2")
    monkeypatch.setenv("ROBOAUG_POD_NAME", "aug-x-worker-0-abcde")
    out = io.StringIO()
    r = ProgressReporter.from_env(stream=out)
    r.update("downloading", force=True)
    assert (r.reports[0]["attempt"], r.reports[0]["pod"]) == (2, "aug-x-worker-0-abcde")
    assert json.loads(out.getvalue())["attempt"] == 2


def test_progress_reaches_the_cr_status(cluster, namespace, crd, k8s, monkeypatch):
    """The reporter merge-patches status.progress of a real AugmentationJob and touches nothing else."""
    from roboaug.api.models import GROUP, PLURAL, VERSION

    name = f"aug-{uuid.uuid4()}"
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationJob", "metadata": {"name": name},
        "spec": {"project_id": str(uuid.uuid4()), "dataset_id": "org/name"},
    }
    k8s.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    k8s.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": {"current_phase": "augmenting", "attempt": 0}},
        _content_type="application/merge-patch+json",
    )
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    monkeypatch.setenv("ROBOAUG_CR_NAME", name)
    monkeypatch.setenv("ROBOAUG_CR_NAMESPACE", namespace)
    monkeypatch.setenv("ROBOAUG_POD_NAME", "aug-x-worker-abcde")  # the Job's downward-API env
    monkeypatch.setenv("ROBOAUG_ATTEMPT", "1")  # ditto, from the job controller's annotation
    r = ProgressReporter.from_env(stream=io.StringIO())
    r.update("augmenting", episodes_done=3, episodes_total=8, frames_done=30, frames_total=80, force=True)
    assert r.patch_failures == 0
    obj = k8s.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    assert obj["status"]["progress"]["episodes_done"] == 3
    assert obj["status"]["progress"]["phase"] == "augmenting"
    assert obj["status"]["progress"]["pod"] == "aug-x-worker-abcde"  # the CRD keeps it (not pruned)
    assert obj["status"]["progress"]["attempt"] == 1
    assert obj["status"]["current_phase"] == "augmenting"  # the operator's fields are untouched


def test_warnings_are_carried_by_every_report_once_each_and_bounded():
    from roboaug.api.models.status import MAX_WARNINGS, Progress

    clock, out, sent = Clock(), io.StringIO(), []
    r = ProgressReporter(patch=sent.append, min_interval=0.0, stream=out, clock=clock)
    r.warn("stats of episode 3 differ from its data")
    r.warn("stats of episode 3  differ from its data")  # the same words: once
    r.update("augmenting")
    r.update("uploading")
    assert [b["warnings"] for b in sent] == [["stats of episode 3 differ from its data"]] * 2
    for i in range(MAX_WARNINGS + 5):
        r.warn(f"problem {i}")
    r.update("uploading", force=True)
    last = sent[-1]["warnings"]
    assert len(last) == MAX_WARNINGS and last[-1].startswith("... and 7 more warning(s)")
    Progress.model_validate(sent[-1])  # what the worker writes is what the CRD's status accepts
