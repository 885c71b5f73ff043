"""Projects through the real stack (issue 13 item 6): apiserver, operator, gateway, the local Hub
test server, and the dev node agent running the real worker.

Each test declares its own AugmentationProjects with kubectl (so it works whether or not the
stack runs jobs without a project), each Hub org is served by the local Hub, and each project's
token belongs to a Hub user who may touch only that project's org, with private source repos: a
worker that used another project's token (or the deployment's) would show in the Hub's request
log, which names the user of every request's token.
"""

from __future__ import annotations

from functools import partial
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from tests.e2e._stack import e2e_stack, wait_for

from roboaug.api.models import GROUP, LABEL_JOB_ID, LABEL_PROJECT_ID, TERMINAL_STATUSES, VERSION

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TERMINAL = {s.value for s in TERMINAL_STATUSES}
# A tiny source (1 episode of 8 frames, 96x96) keeps 30 real worker runs within minutes on 2 cores.
TINY_EPISODES, TINY_FRAMES = 1, 8


@pytest.fixture(scope="module")
def stack(cluster, crd):
    with e2e_stack(cluster) as s:
        yield s


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> dict[str, bytes]:
    from roboaug.devstack.sample_dataset import write_sample_dataset

    root = write_sample_dataset(tmp_path_factory.mktemp("tiny") / "ds", episodes=TINY_EPISODES, length=TINY_FRAMES)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- helpers ---------------------------------------------------------------------------------------
class Team:
    """One project: its UUID, its Hub org, a Hub user whose token may touch only that org."""

    def __init__(self, stack, label: str, *, token: bool = True, **spec):
        self.label = label
        self.id = str(uuid.uuid4())
        self.org = f"{label}-{self.id[:6]}"
        self.user = f"{self.org}-bot"
        self.token = f"hf_{label}_{uuid.uuid4().hex}"
        self.secret = f"hub-token-{self.org}"
        stack.hub.tokens[self.token] = {"name": self.user, "role": "write", "orgs": (self.org,)}
        project_spec = {"allowed_sources": [self.org], "allowed_outputs": [self.org], **spec}
        if token:
            secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": self.secret},
                      "type": "Opaque", "stringData": {"token": self.token}}
            stack.kubectl("apply", "-n", stack.namespace, "-f", "-", input=json.dumps(secret))
            project_spec["hub_token_secret"] = {"name": self.secret, "key": "token"}
        project = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationProject",
                   "metadata": {"name": self.id}, "spec": project_spec}
        stack.kubectl("apply", "-n", stack.namespace, "-f", "-", input=json.dumps(project))

    def source(self, stack, files: dict[str, bytes], name: str = "tiny", private: bool = True) -> str:
        repo = f"{self.org}/{name}"
        stack.hub.store.create("dataset", repo, private=private)
        stack.hub.seed(repo, files)
        return repo


def _http(stack, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=stack.gateway_url, headers={"x-api-key": key or stack.api_key}, timeout=60)


def _submit(stack, body: dict, key: str | None = None) -> str:
    with _http(stack, key) as http:
        r = http.post("/v1/augmentation", json=body)
    assert r.status_code == 201, r.text
    return r.json()["job_id"]


def _crs(stack, selector: str | None = None) -> list[dict]:
    args = ["get", "augmentationjobs", "-n", stack.namespace, "-o", "json"]
    if selector:
        args += ["-l", selector]
    return json.loads(stack.kubectl(*args).stdout)["items"]


def _worker_jobs(stack, selector: str) -> list[str]:
    out = stack.kubectl("get", "jobs", "-n", stack.namespace, "-l", selector, "-o",
                        "jsonpath={.items[*].metadata.name}").stdout
    return out.split()


_wait = partial(wait_for, interval=0.5)


def _completed(stack, job_id: str) -> dict:
    status = stack.wait_job(f"aug-{job_id}", timeout=600)["status"]
    assert status["status"] == "completed", status.get("error")
    return status


def _ended(status: dict) -> datetime:
    """When a finished job ended, as the operator's TTL counts it (its last phase's end)."""
    last = status["phases"][-1]
    return datetime.fromisoformat((last.get("completed_at") or last["started_at"]).replace("Z", "+00:00"))


def _bound_key(stack, project_id: str) -> str:
    """A new API key bound to one project, appended to the gateway's keys file (re-read on change)."""
    key = "rk_" + uuid.uuid4().hex
    keys = Path(stack.work_dir) / "api-keys"
    keys.write_text(keys.read_text() + f"{key} {project_id}\n")

    def accepted():
        with _http(stack, key) as http:
            return http.get("/v1/augmentation", params={"project_id": project_id}).status_code != 401
    _wait(accepted, 30, "the gateway to load the bound key")
    return key


class JobWatch:
    """Watches the worker Jobs of one project and keeps the most that existed unfinished at once.

    A watch (not a poll) sees every change in resourceVersion order, which is the order the
    operator sees them in: a Job's completion arrives before the Job created in its place.
    """

    def __init__(self, cluster, namespace: str, project_id: str):
        self.cluster, self.namespace = cluster, namespace
        self.selector = f"{LABEL_PROJECT_ID}={project_id}"
        self.unfinished: dict[str, bool] = {}
        self.seen: set[str] = set()
        self.most = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _finished(job) -> bool:
        conditions = (job.status and job.status.conditions) or []
        return any(c.type in ("Complete", "Failed", "FailureTarget") and c.status == "True" for c in conditions)

    def _apply(self, kind: str, job) -> None:
        name = job.metadata.name
        self.seen.add(name)
        if kind == "DELETED" or self._finished(job):
            self.unfinished.pop(name, None)
        else:
            self.unfinished[name] = True
        self.most = max(self.most, len(self.unfinished))

    def _run(self) -> None:
        from kubernetes import client, watch

        try:
            with self.cluster.api_client() as api:
                batch = client.BatchV1Api(api)
                listed = batch.list_namespaced_job(self.namespace, label_selector=self.selector)
                for job in listed.items:
                    self._apply("ADDED", job)
                version = listed.metadata.resource_version
                while not self._stop.is_set():
                    w = watch.Watch()
                    for event in w.stream(batch.list_namespaced_job, self.namespace, label_selector=self.selector,
                                          resource_version=version, timeout_seconds=2,
                                          allow_watch_bookmarks=True):
                        obj = event["object"]
                        version = obj.metadata.resource_version
                        if event["type"] != "BOOKMARK":
                            self._apply(event["type"], obj)
                        if self._stop.is_set():
                            w.stop()
        except BaseException as e:  # reported by stop(): a broken watch must not pass as "never more than N"
            self.error = e

    def __enter__(self) -> "JobWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.error is not None and exc[0] is None:
            raise AssertionError(f"the Job watch broke: {self.error!r}")


# -- tests ------------------------------------------------------------------------------------------
def test_a_key_bound_to_b_cannot_write_into_a_nor_read_outside_b(stack, tiny_files):
    a, b = Team(stack, "team-a"), Team(stack, "team-b")
    a_source, b_source = a.source(stack, tiny_files), b.source(stack, tiny_files)
    key_b = _bound_key(stack, b.id)
    before = {cr["metadata"]["name"] for cr in _crs(stack)}
    with _http(stack, key_b) as http:
        leak = http.post("/v1/augmentation", json={"project_id": b.id, "dataset_id": b_source,
                                                   "output_dataset_id": f"{a.org}/leak"})
        assert leak.status_code == 403, leak.text
        detail = leak.json()["detail"]
        assert "output_dataset_id" in detail and "allowed_outputs" in detail and f"{a.org}/leak" in detail, detail

        # A's private source, written into B's own org: the source is what B may not touch.
        read = http.post("/v1/augmentation", json={"project_id": b.id, "dataset_id": a_source,
                                                   "output_dataset_id": f"{b.org}/copy"})
        assert read.status_code == 403, read.text
        detail = read.json()["detail"]
        assert "dataset_id" in detail and "allowed_sources" in detail and a_source in detail, detail
        assert "output_dataset_id" not in detail, detail

        # The key itself is bound: naming project A outright is refused before any policy.
        as_a = http.post("/v1/augmentation", json={"project_id": a.id, "dataset_id": a_source})
        assert as_a.status_code == 403, as_a.text
    assert {cr["metadata"]["name"] for cr in _crs(stack)} == before  # nothing was created
    assert not stack.hub.store.exists("dataset", f"{a.org}/leak")
    assert not stack.hub.store.exists("dataset", f"{b.org}/copy")


def test_each_jobs_worker_uses_its_own_projects_hub_token(stack, tiny_files):
    a, b = Team(stack, "team-a"), Team(stack, "team-b")
    sources = {a: a.source(stack, tiny_files), b: b.source(stack, tiny_files)}
    ids = {t: _submit(stack, {"project_id": t.id, "dataset_id": sources[t], "augment_copies": 1}) for t in (a, b)}
    outputs = {t: _completed(stack, ids[t])["augmented_dataset_id"] for t in (a, b)}
    for t in (a, b):
        assert outputs[t].startswith(f"{t.org}/"), outputs[t]
        assert stack.hub.store.is_private("dataset", outputs[t])  # created by the worker, not seeded

    for t, other in ((a, b), (b, a)):
        # Every request that named this team's repos: source reads, output create, commits, LFS.
        # Some carry no token by design (the CDN download, the signed LFS upload URL); every one
        # that carried a token carried this project's.
        touching = [r for r in stack.hub.requests() if f"/{t.org}/" in r.path]
        assert {r.user for r in touching} - {None} == {t.user}, \
            (t.label, sorted({(r.method, r.path, r.user) for r in touching if r.user not in (None, t.user)}))
        assert other.user not in {r.user for r in touching}
        src_reads = [r for r in touching if r.path.startswith((f"/datasets/{sources[t]}/resolve/",
                                                               f"/api/datasets/{sources[t]}/"))]
        assert src_reads and {r.user for r in src_reads} == {t.user}, [(r.path, r.user) for r in src_reads]
        commits = [r for r in touching if r.method == "POST" and r.path.startswith(f"/api/datasets/{outputs[t]}/commit/")]
        assert commits and {(r.user, r.status) for r in commits} == {(t.user, 200)}, commits


def test_project_defaults_in_the_effective_spec_and_a_request_value_overrides_them(stack, tiny_files):
    team = Team(stack, "team-d", defaults={"augment_transforms": "noise", "augment_copies": 1, "augment_seed": 7})
    source = team.source(stack, tiny_files)
    job_id = _submit(stack, {"project_id": team.id, "dataset_id": source, "augment_seed": 9})
    _completed(stack, job_id)
    with _http(stack) as http:
        answer = http.get(f"/v1/augmentation/{job_id}").json()
    spec, sources = answer["effective_spec"], answer["spec_sources"]
    assert (spec["augment_transforms"], sources["augment_transforms"]) == ("noise", "project")
    assert (spec["augment_copies"], sources["augment_copies"]) == (1, "project")
    assert (spec["augment_seed"], sources["augment_seed"]) == (9, "request")
    assert sources["dataset_id"] == "request" and sources["augment_mode"] == "default"
    # what the worker ran: one noise copy per episode, seed 9
    status = stack.get_job(f"aug-{job_id}")["status"]
    dest = stack.download_output(status["augmented_dataset_id"], Path(stack.work_dir) / f"out-{job_id[:8]}")
    info = json.loads((dest / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 2 * TINY_EPISODES
    ran = json.loads((dest / "meta" / "augmentation.json").read_text())["spec"]
    assert (ran["augment_transforms"], ran["augment_copies"], ran["augment_seed"]) == ("noise", 1, 9)


def test_thirty_jobs_at_once_never_more_than_three_running(stack, cluster, tiny_files, capsys):
    limit, count = 3, 30
    team = Team(stack, "team-l", limits={"max_running_jobs": limit})
    source = team.source(stack, tiny_files)
    body = {"project_id": team.id, "dataset_id": source, "augment_copies": 1, "augment_transforms": "lighting"}
    started = time.monotonic()
    with JobWatch(cluster, stack.namespace, team.id) as jobs:
        with ThreadPoolExecutor(max_workers=count) as pool:
            ids = list(pool.map(lambda _: _submit(stack, body), range(count)))
        assert len(set(ids)) == count

        def all_finished():
            crs = _crs(stack, f"{LABEL_PROJECT_ID}={team.id}")
            done = [cr for cr in crs if (cr.get("status") or {}).get("status") in TERMINAL]
            return crs if len(done) == count else None
        crs = _wait(all_finished, 540, f"{count} jobs to finish", interval=2)  # within the 600 s test timeout
        elapsed = time.monotonic() - started
    failed = {cr["metadata"]["name"]: cr["status"].get("error") for cr in crs if cr["status"]["status"] != "completed"}
    with capsys.disabled():  # the figures the issue asks to report, shown without -s
        print(f"\nmax_running_jobs={limit}: at most {jobs.most} worker Jobs existed unfinished at once; "
              f"{count} jobs finished in {elapsed:.1f}s ({len(jobs.seen)} Jobs seen)")
    assert not failed, failed
    assert len(jobs.seen) == count  # one Job per job (no retries), and the watch saw each of them
    assert 1 <= jobs.most <= limit, jobs.most
    waited = [cr for cr in crs if any(e.get("status") == "waiting" for p in cr["status"]["phases"]
                                      for e in p.get("events") or [])]
    assert waited, "no job ever waited for a slot"


def test_finished_jobs_past_their_projects_ttl_disappear_with_their_jobs(stack, tiny_files):
    ttl = 10  # seconds; room for the operator to see the job finish before it expires
    short, kept = Team(stack, "team-t", ttl_seconds_after_finished=ttl), Team(stack, "team-k")
    body = {"augment_copies": 1, "augment_transforms": "lighting"}
    job_short = _submit(stack, {**body, "project_id": short.id, "dataset_id": short.source(stack, tiny_files)})
    job_kept = _submit(stack, {**body, "project_id": kept.id, "dataset_id": kept.source(stack, tiny_files)})
    ended_at = _ended(_completed(stack, job_short))
    assert _worker_jobs(stack, f"{LABEL_JOB_ID}={job_short}"), "the worker Job exists once the job finished"
    seen_present = [ended_at]

    def gone():
        cr = stack.kubectl("get", "augmentationjob", "-n", stack.namespace, f"aug-{job_short}", check=False)
        if cr.returncode == 0:
            seen_present.append(datetime.now(timezone.utc))
            return False
        assert "NotFound" in cr.stderr, cr.stderr
        return not _worker_jobs(stack, f"{LABEL_JOB_ID}={job_short}")
    _wait(gone, ttl + 60, "the expired job and its worker Job to be deleted", interval=0.2)
    lived = (seen_present[-1] - ended_at).total_seconds()
    assert lived >= ttl - 1, f"deleted {lived:.1f}s after it finished, before its TTL of {ttl}s"

    # Without a TTL the job stays, well past the other project's TTL.
    kept_ended_at = _ended(_completed(stack, job_kept))
    time.sleep(max(0.0, ttl + 3 - (datetime.now(timezone.utc) - kept_ended_at).total_seconds()))
    assert stack.get_job(f"aug-{job_kept}")["status"]["status"] == "completed"
    assert _worker_jobs(stack, f"{LABEL_JOB_ID}={job_kept}")
