"""Chaos through the real stack (issue 14 item 18): 100 jobs while the operator is SIGKILLed 10
times at random moments and one worker is SIGKILLed in the middle of its upload.

What must hold: no AugmentationJob gets two batch/v1 Jobs, nor two pods for one attempt (a
restarted operator finds its Job by name instead of making another); no job is lost (all 100 CRs
exist and end completed, or failed with a reason); the killed worker's job is retried (or fails
cleanly); and every output repo on the test Hub holds either no dataset or a complete one, never
part of one (the worker publishes in one commit).

How: the operator runs with a short Lease (6 s) so that a killed leader's successor, which must wait
for the Lease to expire, takes over within seconds; `DevStack.restart_operator` kills it and
starts the next, as a pod restart would. The local Hub holds (`LocalHub.hold`) the first LFS upload
of an output after a random delay: that worker is provably mid-upload (its repo is created, its
commit not sent) when its process group is SIGKILLed, through the pid the dev node agent puts on
the pod. The moments come from one seed, printed; ROBOAUG_CHAOS_SEED replays a run.
A project with max_running_jobs keeps the 2-core machine from running 100 workers at once, and
spreads Job creations over the whole run, so every kill lands among them.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from roboaug.api.contract import JOB_INDEX_FAILURE_COUNT
from roboaug.api.models import GROUP, LABEL_JOB_ID, LABEL_PROJECT_ID, TERMINAL_STATUSES, VERSION
from roboaug.devstack.nodeagent import PID_ANNOTATION  # the pod's process group, as the dev node agent ran it
from tests.worker import checker

# 100 real worker runs on 2 cores take minutes (about 5 CPU-seconds each) before any chaos.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]

TERMINAL = {s.value for s in TERMINAL_STATUSES}
# The figures; the variables make a quicker run while developing (and for mutation checks).
JOBS = int(os.environ.get("ROBOAUG_CHAOS_JOBS", "100"))
OPERATOR_KILLS = int(os.environ.get("ROBOAUG_CHAOS_KILLS", "10"))
RUNNING = 8
CHECKED = 10  # outputs, besides the killed worker's, that the independent checker decodes in full
SEED = int(os.environ.get("ROBOAUG_CHAOS_SEED", "14018"))
# Short enough that ten takeovers cost about a minute, long enough for a loaded 2-core machine to
# renew in time (renew deadline = (1.5 + 6) / 2 s); api calls must end within the lease.
LEASE = {"lease_name": "chaos-leader", "lease_duration_seconds": 6, "renew_period_seconds": 1.5}
API_TIMEOUT_S = 5


@pytest.fixture(scope="module")
def stack(cluster, crd):
    cluster.require_node_agent()
    from roboaug.devstack.stack import DevStack

    ns = f"e2e-chaos-{uuid.uuid4().hex[:6]}"
    overrides = {"leader_election": {"lease_namespace": ns, **LEASE}, "api_timeout_seconds": API_TIMEOUT_S}
    with DevStack(cluster=cluster.local, namespace=ns, operator_overrides=overrides) as s:
        yield s
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> dict[str, bytes]:
    from roboaug.devstack.sample_dataset import write_sample_dataset

    root = write_sample_dataset(tmp_path_factory.mktemp("tiny") / "ds", episodes=1, length=8)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def api(cluster):
    with cluster.api_client() as a:
        yield a


# -- what existed -----------------------------------------------------------------------------------
class Seen:
    """Every batch Job and Pod of the namespace that existed during the run, from watches: a list
    at the end would miss one deleted and made again. Also the most pods of one job alive at once."""

    def __init__(self, cluster, namespace: str):
        self.cluster, self.namespace = cluster, namespace
        self.jobs: dict[str, dict] = {}  # uid -> {name, job_id, owner}
        self.pods: dict[str, dict] = {}  # uid -> {name, job_id, attempt, owner}
        self._alive: dict[str, set[str]] = defaultdict(set)  # job_id -> uids of pods not finished
        self.most_alive: Counter = Counter()
        self.most_alive_total = 0  # worker pods not finished at once, all jobs together
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._watch, args=(kind,), daemon=True) for kind in ("jobs", "pods")]

    def _job(self, kind: str, obj) -> None:
        meta = obj.metadata
        owners = [o.uid for o in meta.owner_references or [] if o.controller]
        self.jobs.setdefault(meta.uid, {"name": meta.name, "job_id": (meta.labels or {}).get(LABEL_JOB_ID),
                                        "owner": owners[0] if owners else None})

    def _pod(self, kind: str, obj) -> None:
        meta = obj.metadata
        job_id = (meta.labels or {}).get(LABEL_JOB_ID)
        owners = [o.uid for o in meta.owner_references or [] if o.controller]
        self.pods.setdefault(meta.uid, {"name": meta.name, "job_id": job_id, "owner": owners[0] if owners else None,
                                        "attempt": (meta.annotations or {}).get(JOB_INDEX_FAILURE_COUNT)})
        finished = kind == "DELETED" or (obj.status and obj.status.phase in ("Succeeded", "Failed"))
        alive = self._alive[job_id]
        (alive.discard if finished else alive.add)(meta.uid)
        self.most_alive[job_id] = max(self.most_alive[job_id], len(alive))
        self.most_alive_total = max(self.most_alive_total, sum(len(a) for k, a in self._alive.items() if k))

    def _watch(self, kind: str) -> None:
        from kubernetes import watch

        apply = self._job if kind == "jobs" else self._pod
        try:
            with self.cluster.api_client() as api:
                lister = (client.BatchV1Api(api).list_namespaced_job if kind == "jobs"
                          else client.CoreV1Api(api).list_namespaced_pod)
                version = None
                while not self._stop.is_set():
                    if version is None:  # (re)list: everything present now, then watch from there
                        listed = lister(self.namespace)
                        with self._lock:
                            for obj in listed.items:
                                apply("ADDED", obj)
                        version = listed.metadata.resource_version
                    try:
                        for event in watch.Watch().stream(lister, self.namespace, resource_version=version,
                                                          timeout_seconds=2, allow_watch_bookmarks=True):
                            obj = event["object"]
                            version = obj.metadata.resource_version
                            if event["type"] != "BOOKMARK":
                                with self._lock:
                                    apply(event["type"], obj)
                    except ApiException as e:
                        if e.status != 410:
                            raise
                        version = None  # expired: list again
        except BaseException as e:  # reported by stop(): a broken watch must not pass as "no duplicates"
            self.errors.append(e)

    def __enter__(self) -> "Seen":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


# -- the chaos ----------------------------------------------------------------------------------------
class OperatorChaos(threading.Thread):
    """Kills the operator `kills` times, each a random while after it became leader, and restarts it
    at once (the new process waits for the dead one's Lease). Also restarts an operator that exited
    by itself (as the kubelet would), counted apart."""

    def __init__(self, stack, api, rng: random.Random, kills: int):
        super().__init__(daemon=True)
        self.stack = stack
        self.leases = client.CoordinationV1Api(api)
        self.delays = [round(rng.uniform(0.5, 10.0), 2) for _ in range(kills)]
        self.kills: list[dict] = []
        self.self_exits: list[str] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def _leader(self) -> str:
        try:
            return self.leases.read_namespaced_lease(LEASE["lease_name"], self.stack.namespace).spec.holder_identity or ""
        except ApiException as e:
            if e.status != 404:
                raise
            return ""

    def _supervise(self) -> None:
        if not self.stack.operator.alive():
            self.self_exits.append(self.stack.operator.tail(800))
            self.stack.restart_operator()

    def _wait_leading(self) -> float | None:
        """Until the current operator process holds the Lease: the moment, or None when stopped."""
        while not self.stop.is_set():
            self._supervise()
            if self._leader().endswith(f"-{self.stack.operator.pid}"):
                return time.monotonic()
            self.stop.wait(0.3)
        return None

    def run(self) -> None:
        try:
            for delay in self.delays:
                led = self._wait_leading()
                if led is None:
                    return
                if self.kills:
                    self.kills[-1]["takeover_s"] = round(led - self.kills[-1]["at"], 1)
                if self.stop.wait(delay):
                    return
                self._supervise()
                at = time.monotonic()
                pid = self.stack.restart_operator(signal.SIGKILL)
                self.kills.append({"at": at, "t": round(at - self.t0, 1), "pid": pid})
            led = self._wait_leading()
            if led is not None and self.kills:
                self.kills[-1]["takeover_s"] = round(led - self.kills[-1]["at"], 1)
            while not self.stop.wait(0.5):
                self._supervise()
        except BaseException as e:
            self.error = e


class WorkerKill(threading.Thread):
    """After `after_s`, holds the next LFS upload into `org` on the Hub: that worker has created its
    output repo and is sending its files, its commit not yet. SIGKILLs its process group (the dev
    node agent's pid annotation on the pod), then lets the held request go."""

    def __init__(self, stack, org: str, after_s: float):
        super().__init__(daemon=True)
        self.stack, self.org, self.after_s = stack, org, after_s
        self.killed: dict | None = None
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        hold = None
        try:
            if self.stop.wait(self.after_s):
                return
            hold = self.stack.hub.hold(rf"^/_lfs/dataset/{self.org}/", method="PUT", timeout=300)
            while not hold.arrived.wait(0.5):
                if self.stop.is_set():
                    return
            repo = "/".join(hold.paths[0].split("/")[3:5])  # /_lfs/dataset/<org>/<name>/<oid>
            suffix = repo.rsplit("-", 1)[-1]  # <source>-augmented-<8 hex of the job id>
            pods = json.loads(self.stack.kubectl("get", "pods", "-n", self.stack.namespace, "-o", "json").stdout)["items"]
            pod = next(p for p in pods if p["metadata"]["labels"].get(LABEL_JOB_ID, "").startswith(suffix)
                       and p["status"].get("phase") == "Running")
            job_id = pod["metadata"]["labels"][LABEL_JOB_ID]
            status = self.stack.get_job(f"aug-{job_id}").get("status") or {}
            seen_as = {"current_phase": status.get("current_phase"), "progress": (status.get("progress") or {}).get("phase")}
            os.killpg(int(pod["metadata"]["annotations"][PID_ANNOTATION]), signal.SIGKILL)
            self.killed = {"job_id": job_id, "repo": repo, "pod": pod["metadata"]["name"], "cr_said": seen_as,
                           "attempt": pod["metadata"]["annotations"].get(JOB_INDEX_FAILURE_COUNT),
                           "main_at_kill": sorted(self.stack.hub.store.snapshot("dataset", repo))}
        except BaseException as e:
            self.error = e
        finally:
            if hold is not None:
                hold.release()


# -- helpers --------------------------------------------------------------------------------------------
def _crs(custom: client.CustomObjectsApi, namespace: str, selector: str) -> list[dict]:
    return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "augmentationjobs",
                                                label_selector=selector)["items"]


def _submit(http: httpx.Client, body: dict) -> str:
    r = http.post("/v1/augmentation", json=body)
    assert r.status_code == 201, r.text
    return r.json()["job_id"]


def _dataset_state(files: dict[str, bytes]) -> str:
    """What `main` of an output repo shows: 'empty' (no dataset file), 'complete' (meta/info.json,
    and every data and video file its episodes name, for the 2 episodes expected), else what is
    missing."""
    if not set(files) - {".gitattributes"}:
        return "empty"
    try:
        info = json.loads(files["meta/info.json"])
        videos = [k for k, f in info["features"].items() if f["dtype"] == "video"]
        named = {"README.md", "meta/augmentation.json", "meta/stats.json", "meta/tasks.parquet"}
        episodes = 0
        for rel in sorted(p for p in files if p.startswith("meta/episodes/")):
            for row in pq.read_table(io.BytesIO(files[rel])).to_pylist():
                episodes += 1
                named.add(info["data_path"].format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]))
                named |= {info["video_path"].format(video_key=k, chunk_index=row[f"videos/{k}/chunk_index"],
                                                    file_index=row[f"videos/{k}/file_index"]) for k in videos}
    except (KeyError, ValueError, OSError) as e:
        return f"partial: {type(e).__name__}: {e}"[:300]
    missing = sorted(named - set(files))
    if missing or episodes != info.get("total_episodes") or episodes != 2:
        return f"partial: {episodes} episodes (info.json: {info.get('total_episodes')}), missing {missing}"
    return "complete"


def _check_in_full(files: dict[str, bytes], dest: Path) -> None:
    """The independent checker of tests/worker over a repo's `main`: decodes every frame."""
    for rel, data in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    checker.check_lerobot(dest)


# -- the test -------------------------------------------------------------------------------------------
def test_hundred_jobs_survive_operator_kills_and_a_worker_killed_mid_upload(stack, cluster, api, tiny_files, tmp_path,
                                                                             capsys):
    rng = random.Random(SEED)
    project_id = str(uuid.uuid4())
    org = f"chaos-{project_id[:6]}"
    project = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationProject", "metadata": {"name": project_id},
               "spec": {"allowed_sources": [org], "allowed_outputs": [org], "limits": {"max_running_jobs": RUNNING}}}
    stack.kubectl("apply", "-n", stack.namespace, "-f", "-", input=json.dumps(project))
    stack.hub.seed(f"{org}/tiny", tiny_files)
    body = {"project_id": project_id, "dataset_id": f"{org}/tiny", "augment_copies": 1,
            "augment_transforms": "lighting"}

    custom = client.CustomObjectsApi(api)
    chaos = OperatorChaos(stack, api, rng, OPERATOR_KILLS)
    worker_kill = WorkerKill(stack, org, after_s=round(rng.uniform(20, 60), 1))
    with capsys.disabled():
        print(f"\nchaos seed {SEED}: operator kills {chaos.delays} s after each takeover; "
              f"worker kill armed {worker_kill.after_s} s in")
    started = time.monotonic()
    with Seen(cluster, stack.namespace) as seen:
        chaos.start()
        worker_kill.start()
        try:
            with httpx.Client(base_url=stack.gateway_url, headers={"x-api-key": stack.api_key}, timeout=60) as http, \
                    ThreadPoolExecutor(max_workers=16) as pool:
                ids = list(pool.map(lambda _: _submit(http, body), range(JOBS)))
            submitted_s = time.monotonic() - started
            deadline = started + 1000
            while True:
                crs = _crs(custom, stack.namespace, f"{LABEL_PROJECT_ID}={project_id}")
                done = [cr for cr in crs if (cr.get("status") or {}).get("status") in TERMINAL]
                if len(done) == JOBS or time.monotonic() > deadline:
                    break
                time.sleep(3)
            elapsed = time.monotonic() - started
        finally:
            chaos.stop.set()
            worker_kill.stop.set()
            chaos.join(60)
            worker_kill.join(30)
        time.sleep(1)  # the watches catch up with the last changes

    by_status = Counter((cr.get("status") or {}).get("status") for cr in crs)
    failed = {cr["metadata"]["name"]: cr["status"].get("error") for cr in crs
              if (cr.get("status") or {}).get("status") not in ("completed", None)}
    jobs_per_cr = Counter(j["job_id"] for j in seen.jobs.values())
    dup_jobs = {k: n for k, n in jobs_per_cr.items() if n > 1}
    pods_per_attempt = Counter((p["job_id"], p["attempt"]) for p in seen.pods.values() if p["job_id"])
    dup_pods = {k: n for k, n in pods_per_attempt.items() if n > 1}
    crowded = {k: n for k, n in seen.most_alive.items() if k and n > 1}
    uid_of = {cr["metadata"]["labels"][LABEL_JOB_ID]: cr["metadata"]["uid"] for cr in crs}
    foreign = [j for j in seen.jobs.values() if uid_of.get(j["job_id"]) != j["owner"]]

    outputs = {f"{org}/tiny-augmented-{i[:8]}": i for i in ids}
    repo_root = stack.hub.store.root / "datasets" / org
    repos = sorted(f"{org}/{d.name}" for d in repo_root.iterdir() if d.is_dir() and d.name != "tiny")
    snapshots = {r: stack.hub.store.snapshot("dataset", r) for r in repos}
    states = {r: _dataset_state(files) for r, files in snapshots.items()}
    complete = sorted(r for r, st in states.items() if st == "complete")
    sample = rng.sample(complete, min(CHECKED, len(complete)))
    commits = Counter(r.path.split("/")[3] + "/" + r.path.split("/")[4]
                      for r in stack.hub.requests("POST", rf"^/api/datasets/{org}/[^/]+/commit/") if r.status == 200)
    killed = worker_kill.killed
    killed_cr = next((cr for cr in crs if killed and cr["metadata"]["labels"][LABEL_JOB_ID] == killed["job_id"]), None)
    takeovers = [k.get("takeover_s") for k in chaos.kills]

    with capsys.disabled():
        print(f"chaos: {JOBS} jobs submitted in {submitted_s:.1f}s, all finished after {elapsed:.1f}s "
              f"(max_running_jobs={RUNNING}): {dict(by_status)}")
        print(f"chaos: operator SIGKILLed {len(chaos.kills)} times at t={[k['t'] for k in chaos.kills]} s, "
              f"new leader after {takeovers} s; exited by itself {len(chaos.self_exits)} times")
        print(f"chaos: batch Jobs {len(seen.jobs)} for {len(jobs_per_cr)} jobs, duplicate Jobs {len(dup_jobs)}, "
              f"pods {len(seen.pods)}, duplicate pods per attempt {len(dup_pods)}, "
              f"jobs with 2+ pods alive at once {len(crowded)}; at most {seen.most_alive_total} worker pods "
              f"unfinished at once (max_running_jobs={RUNNING})")
        print(f"chaos: worker killed mid-upload: {killed}; its job: "
              f"{killed_cr and {k: killed_cr['status'].get(k) for k in ('status', 'attempt', 'error')}}")
        print(f"chaos: output repos {len(repos)}: {dict(Counter(s.split(':')[0] for s in states.values()))}; "
              f"commits per repo {dict(Counter(commits.values()))}")
        for name, error in sorted(failed.items())[:10]:  # why, in the job's own words
            print(f"chaos: failed {name}: {(error or '')[:300]}")

    assert not seen.errors, f"a watch broke: {seen.errors!r}"
    assert chaos.error is None and worker_kill.error is None, (chaos.error, worker_kill.error)
    # 0 lost: every submitted job is a CR, and each ended; a failure says why
    assert len(set(ids)) == JOBS
    assert {cr["metadata"]["labels"][LABEL_JOB_ID] for cr in crs} == set(ids)
    assert len(done) == JOBS, {cr["metadata"]["name"]: (cr.get("status") or {}).get("current_phase")
                               for cr in crs if cr not in done}
    assert all(failed.values()), failed
    # the chaos happened while jobs ran
    assert len(chaos.kills) == OPERATOR_KILLS, chaos.kills
    assert killed is not None, "no worker was caught uploading"
    assert killed["main_at_kill"] == [".gitattributes"], killed  # created, nothing published yet
    # 0 duplicates: one Job per job, owned by its CR; one pod per attempt, never two alive at once
    assert not dup_jobs and not foreign, (dup_jobs, foreign)
    assert not dup_pods and not crowded, (dup_pods, crowded)
    # nothing partial on the Hub; every completed job's dataset is there, complete
    assert {r: s for r, s in states.items() if s not in ("complete", "empty")} == {}
    for repo in {*sample, *([killed["repo"]] if killed["repo"] in complete else [])}:
        _check_in_full(snapshots[repo], tmp_path / repo)
    for cr in crs:
        if cr["status"]["status"] == "completed":
            assert states.get(cr["status"]["augmented_dataset_id"]) == "complete", cr["status"]
    assert set(repos) <= set(outputs), set(repos) - set(outputs)
    # the killed worker's job was retried (a later attempt published it) or failed with its reason
    assert killed_cr["status"]["status"] in ("completed", "failed"), killed_cr["status"]
    if killed_cr["status"]["status"] == "completed":
        assert killed_cr["status"]["attempt"] >= 1 and states[killed["repo"]] == "complete"
