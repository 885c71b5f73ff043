"""Progress reporting: throttling, phase changes, JSON lines, and patching only status.progress."""

from __future__ import annotations

import io
import json
import uuid


from roboaug.worker.progress import ProgressReporter


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
    assert lines == [{"event": "progress", **s} for s in sent]
    assert sent[-1]["output_dataset_id"] == "file:///x"
    assert sent[2]["episodes_done"] == 2 and sent[2]["episodes_total"] == 4


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
