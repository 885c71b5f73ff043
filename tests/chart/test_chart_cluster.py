"""The chart against a real API server (the local control plane, or ROBOAUG_TEST_KUBECONFIG):
server-side dry-run of everything rendered, install / upgrade / uninstall, and each
ServiceAccount's permissions checked with `kubectl auth can-i`.

The CRD is applied by the suite's `crd` fixture (kubectl, server-side), so releases here use
`crds.install=false`: a second owner of the shared CRD would make Helm refuse the install. The
CRD template itself goes through the server-side dry-run.
"""
from __future__ import annotations

import json
import subprocess
import uuid

import pytest
import yaml

from tests.chart.chart_cases import TOGGLES, with_namespace
from tests.chart.helpers import CHART, MANIFESTS, helm_template, parse_docs

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _ns_values(values: dict, ns: str, extra_ns: list[str]) -> dict:
    text = json.dumps(with_namespace(values, ns))
    text = text.replace('"team-a"', json.dumps(extra_ns[0])).replace('"team-b"', json.dumps(extra_ns[1]))
    return json.loads(text)


@pytest.fixture
def extra_namespaces(cluster, namespace):
    names = [f"{namespace}-a"[:63], f"{namespace}-b"[:63]]
    for n in names:
        cluster.kubectl("create", "namespace", n)
    yield names
    for n in names:
        cluster.kubectl("delete", "namespace", n, "--wait=false", check=False)


def _served(cluster, api_version: str, kind: str) -> bool:
    group = api_version.split("/")[0] if "/" in api_version else ""
    # The KIND column, not the plural name: "policies" is not "policy" + "s".
    out = cluster.kubectl("api-resources", f"--api-group={group}", "--no-headers", check=False)
    return out.returncode == 0 and any(line.split()[-1] == kind for line in out.stdout.splitlines() if line.strip())


CASES = [("defaults", {})] + [(t.id, t.values) for t in TOGGLES]


@pytest.mark.parametrize("case, values", CASES, ids=[c for c, _ in CASES])
def test_server_side_dry_run_of_everything_rendered(cluster, crd, namespace, extra_namespaces,
                                                    helm_bin, tmp_path, case, values):
    proc = helm_template(helm_bin, _ns_values(values, namespace, extra_namespaces),
                         namespace=namespace, release="dry", tmp_path=tmp_path)
    docs = parse_docs(proc.stdout)
    unserved = [d for d in docs if not _served(cluster, d["apiVersion"], d["kind"])] \
        if any(d["kind"] == "ServiceMonitor" for d in docs) else []
    # Only the optional Prometheus Operator objects may lack their API on a bare cluster.
    assert {d["kind"] for d in unserved} <= {"ServiceMonitor"}
    docs = [d for d in docs if d not in unserved]
    out = cluster.kubectl("apply", "--dry-run=server", "--server-side", "--force-conflicts",
                          "--field-manager=roboaug-chart-test", "-f", "-",
                          input=yaml.safe_dump_all(docs), check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("(server dry run)") == len(docs)


# ---------------------------------------------------------------------------------------------
# a real release


@pytest.fixture
def release(cluster, crd, namespace, helm_bin):
    name = f"rb-{uuid.uuid4().hex[:6]}"
    args = ["install", name, str(CHART), "--namespace", namespace,
            "--set", "crds.install=false", "--wait", "--timeout", "180s"]
    out = cluster.helm(*args, check=False)
    assert out.returncode == 0, out.stderr
    yield name
    cluster.helm("uninstall", name, "--namespace", namespace, "--wait", check=False)


def _get(cluster, *args):
    out = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def test_install_upgrade_uninstall(cluster, namespace, release):
    full = f"{release}-roboaug"
    # Installed: Deployments available (kwok nodes run the pods), config readable.
    for dep in (f"{full}-operator", f"{full}-gateway"):
        obj = _get(cluster, "deployment", dep, "-n", namespace)
        assert obj and obj["status"].get("availableReplicas", 0) >= 1, dep
    cm = _get(cluster, "configmap", f"{full}-operator", "-n", namespace)
    assert yaml.safe_load(cm["data"]["config.yaml"])["log_level"] == "INFO"
    before = _get(cluster, "deployment", f"{full}-operator", "-n", namespace)
    assert _get(cluster, "clusterrolebinding", f"{full}-operator")  # cluster-wide by default

    # Upgrade with changed values: log level, one operator, namespaced RBAC, no gateway PDB.
    out = cluster.helm("upgrade", release, str(CHART), "--namespace", namespace, "--reuse-values",
                       "--set", "logLevel=DEBUG", "--set", "operator.replicas=1",
                       "--set", "operator.leaderElection.enabled=false",
                       "--set", f"watchNamespaces[0]={namespace}",
                       "--set", "gateway.pdb.enabled=false", "--wait", "--timeout", "180s",
                       check=False)
    assert out.returncode == 0, out.stderr
    status = json.loads(cluster.helm("status", release, "-n", namespace, "-o", "json").stdout)
    assert status["version"] == 2 and status["info"]["status"] == "deployed"
    cfg = yaml.safe_load(_get(cluster, "configmap", f"{full}-operator", "-n", namespace)
                         ["data"]["config.yaml"])
    assert cfg["log_level"] == "DEBUG" and cfg["namespaces"] == [namespace]
    assert cfg["leader_election"]["enabled"] is False
    after = _get(cluster, "deployment", f"{full}-operator", "-n", namespace)
    assert after["spec"]["replicas"] == 1
    ann = "checksum/config"
    assert before["spec"]["template"]["metadata"]["annotations"][ann] != \
        after["spec"]["template"]["metadata"]["annotations"][ann]
    assert _get(cluster, "clusterrolebinding", f"{full}-operator") is None
    assert _get(cluster, "rolebinding", f"{full}-operator", "-n", namespace)
    assert _get(cluster, "role", f"{full}-operator-leader", "-n", namespace) is None
    assert _get(cluster, "pdb", f"{full}-gateway", "-n", namespace) is None
    # The operator lost its cluster-wide reach with the change.
    assert not _can(cluster, namespace, f"{full}-operator", "list", "jobs.batch", ns="default")

    # Uninstall removes everything it created, cluster-scoped objects included.
    cluster.helm("uninstall", release, "--namespace", namespace, "--wait")
    for args in (["deployment", f"{full}-operator", "-n", namespace],
                 ["serviceaccount", f"{full}-operator", "-n", namespace],
                 ["clusterrole", f"{full}-operator"],
                 ["clusterrolebinding", f"{full}-operator-cluster-read"],
                 ["configmap", f"{full}-operator", "-n", namespace]):
        assert _get(cluster, *args) is None, args
    # The CRD (managed outside this release) and with it the API are still there.
    assert _get(cluster, "crd", "augmentationjobs.roboaug.dev")


# ---------------------------------------------------------------------------------------------
# RBAC, as the API server decides it


def _can(cluster, namespace, sa, verb, resource, ns=None, sub=None) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as=system:serviceaccount:{namespace}:{sa}",
            "-n", ns or namespace, "--quiet"]
    if sub:
        args.append(f"--subresource={sub}")
    out = cluster.kubectl(*args, check=False)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode == 0


AJ = "augmentationjobs.roboaug.dev"


def _matrix(full: str) -> dict[str, tuple[list, list]]:
    lease = f"leases.coordination.k8s.io/{full}-operator"
    return {
        f"{full}-operator": (
            [("get", AJ), ("list", AJ), ("watch", AJ), ("patch", AJ),
             ("patch", AJ, None, "status"), ("get", AJ, None, "status"),
             ("update", AJ, None, "finalizers"),
             ("create", "jobs.batch"), ("get", "jobs.batch"), ("list", "jobs.batch"),
             ("watch", "jobs.batch"), ("delete", "jobs.batch"),
             ("get", "pods"), ("list", "pods"), ("watch", "pods"),
             ("get", "pods", None, "log"),  # each ended attempt's log tail (operator/log_archive.py)
             ("create", "events"), ("get", "nodes"),
             # each job's spec as an immutable ConfigMap owned by the CR (garbage-collected with it)
             ("create", "configmaps"), ("get", "configmaps"),
             ("list", "customresourcedefinitions.apiextensions.k8s.io"),
             ("create", "leases.coordination.k8s.io"), ("get", lease), ("update", lease),
             ("list", AJ, "default"),  # cluster-wide by default
             ("delete", AJ),  # finished jobs past their project's TTL
             # each job's worker identity (operator/access.py), deleted by the garbage collector
             ("create", "serviceaccounts"), ("get", "serviceaccounts"),
             ("create", "roles.rbac.authorization.k8s.io"), ("get", "roles.rbac.authorization.k8s.io"),
             ("create", "rolebindings.rbac.authorization.k8s.io"),
             ("get", "rolebindings.rbac.authorization.k8s.io")],
            [("create", AJ), ("update", AJ, None, "status"),
             ("get", "secrets"), ("list", "secrets"), ("create", "pods"), ("delete", "pods"),
             ("patch", "jobs.batch"), ("list", "nodes"),
             ("patch", "nodes"), ("list", "configmaps"), ("delete", "configmaps"), ("update", "configmaps"),
             ("update", "customresourcedefinitions.apiextensions.k8s.io"), ("create", "deployments.apps"),
             ("delete", "serviceaccounts"), ("list", "serviceaccounts"),
             ("create", "serviceaccounts", None, "token"),  # never mint a worker's token
             ("delete", "roles.rbac.authorization.k8s.io"), ("update", "roles.rbac.authorization.k8s.io"),
             ("escalate", "roles.rbac.authorization.k8s.io"), ("bind", "roles.rbac.authorization.k8s.io"),
             ("delete", "rolebindings.rbac.authorization.k8s.io"),
             ("create", "clusterroles.rbac.authorization.k8s.io"),
             ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
             ("get", "leases.coordination.k8s.io/kube-scheduler"),
             ("delete", lease)]),
        f"{full}-gateway": (
            [("create", AJ), ("get", AJ), ("list", AJ), ("patch", AJ),
             ("get", "augmentationprojects.roboaug.dev"),
             # GET .../logs: the job's pods and their logs, then the operator's archives by name
             ("list", "pods"), ("get", "pods", None, "log"), ("get", "configmaps")],
            [("delete", AJ), ("watch", AJ), ("patch", AJ, None, "status"),
             # Idempotency-Key records are the CRs themselves: no ConfigMap written or listed
             ("create", "configmaps"), ("list", "configmaps"),
             ("delete", "configmaps"), ("update", "configmaps"),
             ("get", "secrets"), ("create", "jobs.batch"),
             ("get", "pods"), ("watch", "pods"), ("create", "pods", None, "exec"),
             ("get", "nodes"), ("get", AJ, "default"),
             ("create", AJ, "default")]),
    }
    # Workers: no chart identity; each job's own is checked with a real job in
    # test_operator_and_gateway_work_with_only_their_chart_rbac.


def test_service_accounts_get_exactly_what_they_need(cluster, namespace, release):
    full = f"{release}-roboaug"
    wrong = []
    for sa, (allowed, refused) in _matrix(full).items():
        for verb, res, *rest in allowed:
            ns, sub = (rest + [None, None])[:2]
            if not _can(cluster, namespace, sa, verb, res, ns, sub):
                wrong.append(f"{sa} should be allowed: {verb} {res}{'/' + sub if sub else ''} in {ns or namespace}")
        for verb, res, *rest in refused:
            ns, sub = (rest + [None, None])[:2]
            if _can(cluster, namespace, sa, verb, res, ns, sub):
                wrong.append(f"{sa} should be refused: {verb} {res}{'/' + sub if sub else ''} in {ns or namespace}")
    assert wrong == []


def test_plain_manifests_apply_server_side_dry_run(cluster, crd, kubectl_bin):
    # `kubectl apply -k manifests/` as a dry run: every object is valid for this API server.

    built = subprocess.run([kubectl_bin, "kustomize", str(MANIFESTS)], capture_output=True,
                           text=True, timeout=120, check=True).stdout
    docs = [d for d in yaml.safe_load_all(built) if d]
    # The namespace does not exist yet in a dry run, so namespaced objects go through one
    # created for the purpose.
    ns = f"roboaug-dry-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    try:
        for d in docs:
            if d["metadata"].get("namespace") == "roboaug":
                d["metadata"]["namespace"] = ns
            for s in d.get("subjects") or []:
                if s.get("namespace") == "roboaug":
                    s["namespace"] = ns
        out = cluster.kubectl("apply", "--dry-run=server", "--server-side", "--force-conflicts",
                              "--field-manager=roboaug-chart-test", "-f", "-",
                              input=yaml.safe_dump_all(docs), check=False)
        assert out.returncode == 0, out.stderr
        assert out.stdout.count("(server dry run)") == len(docs)
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


# ---------------------------------------------------------------------------------------------
# the real programs, each with only its ServiceAccount's token and the chart's configuration


def _sa_kubeconfig(cluster, namespace: str, sa: str, path, pod: dict | None = None) -> None:
    """A kubeconfig that authenticates as `sa` (a short-lived TokenRequest token; bound to
    `pod` when given, as a kubelet's are)."""
    bound = ["--bound-object-kind=Pod", f"--bound-object-name={pod['metadata']['name']}",
             f"--bound-object-uid={pod['metadata']['uid']}"] if pod else []
    token = cluster.kubectl("-n", namespace, "create", "token", sa, "--duration=20m", *bound).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    ctx = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cl = next(c for c in admin["clusters"] if c["name"] == ctx["cluster"])["cluster"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cl}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": sa, "namespace": namespace}}],
        "current-context": "sa"}))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _each_worker_may_patch_only_its_own_job(cluster, namespace, project_id, job, tmp_path):
    """The worker Job runs under the namespace's worker ServiceAccount (made by the operator with
    only the chart's RBAC: no escalate/bind); with a token bound to a pod of that Job the job's
    own status takes a progress patch and another job's answers 403 (the chart's worker policy)."""
    cr_name = job["metadata"]["ownerReferences"][0]["name"]
    sa = job["spec"]["template"]["spec"]["serviceAccountName"]
    assert sa == "roboaug-worker"
    for kind in ("serviceaccount", "role", "rolebinding"):
        obj = _get(cluster, kind, sa, "-n", namespace)
        assert obj and not obj["metadata"].get("ownerReferences"), kind  # the namespace's, not a job's
    other = f"other-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "roboaug.dev/v1alpha1", "kind": "AugmentationJob", "metadata": {"name": other},
        "spec": {"project_id": project_id, "dataset_id": "lerobot/pusht"}}))
    # a pod of the job's Job, as the job controller names them (it stays Pending: no node fits)
    pod = json.loads(cluster.kubectl("-n", namespace, "create", "-o", "json", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{job['metadata']['name']}-0-zq7xk"},
        "spec": {"serviceAccountName": sa, "nodeSelector": {"roboaug.dev/test-nowhere": "true"},
                 "containers": [{"name": "w", "image": "example.invalid/none"}]}})).stdout)
    _sa_kubeconfig(cluster, namespace, sa, tmp_path / "worker.kubeconfig", pod)
    progress = json.dumps({"status": {"progress": {"phase": "downloading", "pod": "p",
                                                   "updated_at": "2025-03-01T12:00:00Z"}}})

    def patch(name):
        # A bare merge patch, as roboaug.worker.progress sends it (kubectl patch would GET first,
        # which the worker's Role does not allow and the worker never needs).
        from kubernetes import client, config
        from kubernetes.client.exceptions import ApiException

        api = config.new_client_from_config(config_file=str(tmp_path / "worker.kubeconfig"))
        try:
            client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
                "roboaug.dev", "v1alpha1", namespace, "augmentationjobs", name, json.loads(progress))
            return 200
        except ApiException as e:
            return e.status
        finally:
            api.close()

    assert patch(cr_name) == 200
    assert patch(other) == 403  # RBAC allows it (namespace-wide); the worker policy does not
    assert _can(cluster, namespace, sa, "patch", AJ, sub="status")


def test_operator_and_gateway_work_with_only_their_chart_rbac(cluster, namespace, release, tmp_path):
    """The operator (chart ConfigMap, operator SA token) takes a job submitted through the gateway
    (gateway SA token, Idempotency-Key -> the CR is its own record) to a worker Job, its Lease and a
    status, with no 403 anywhere."""
    import os
    import sys
    import time

    import httpx

    full = f"{release}-roboaug"
    cfg = yaml.safe_load(_get(cluster, "configmap", f"{full}-operator", "-n", namespace)
                         ["data"]["config.yaml"])
    cfg.update(health_port=_free_port(), metrics_port=_free_port(), hub_token_secret=None)
    (tmp_path / "operator.yaml").write_text(yaml.safe_dump(cfg))
    _sa_kubeconfig(cluster, namespace, f"{full}-operator", tmp_path / "operator.kubeconfig")
    _sa_kubeconfig(cluster, namespace, f"{full}-gateway", tmp_path / "gateway.kubeconfig")
    key = uuid.uuid4().hex
    (tmp_path / "keys").write_text(key + "\n")
    port = _free_port()
    env = {**os.environ, "ROBOAUG_GATEWAY_NAMESPACE": namespace,
           "ROBOAUG_GATEWAY_KUBECONFIG": str(tmp_path / "gateway.kubeconfig"),
           "ROBOAUG_GATEWAY_API_KEYS_FILE": str(tmp_path / "keys"),
           "ROBOAUG_GATEWAY_PORT": str(port), "ROBOAUG_GATEWAY_METRICS_PORT": str(_free_port()),
           "ROBOAUG_GATEWAY_STORE": "kubernetes",
           "ROBOAUG_GATEWAY_JOBS_WITHOUT_PROJECT": cfg["jobs_without_project"]["action"]}
    env.pop("KUBECONFIG", None)
    logs = {n: open(tmp_path / f"{n}.log", "w+") for n in ("operator", "gateway")}
    procs = {
        "operator": subprocess.Popen(
            [sys.executable, "-m", "roboaug.operator", "--config", str(tmp_path / "operator.yaml"),
             "--kubeconfig", str(tmp_path / "operator.kubeconfig")],
            stdout=logs["operator"], stderr=subprocess.STDOUT, cwd=tmp_path,
            # kopf logs in from $KUBECONFIG (in a pod: the ServiceAccount token), not --kubeconfig.
            env={**env, "KUBECONFIG": str(tmp_path / "operator.kubeconfig")}),
        "gateway": subprocess.Popen(
            [sys.executable, "-m", "roboaug.api.gateway", "--host", "127.0.0.1"],
            stdout=logs["gateway"], stderr=subprocess.STDOUT, cwd=tmp_path, env=env),
    }
    try:
        base = f"http://127.0.0.1:{port}"

        def ready():
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        cluster.wait_for(ready, 90, what="gateway /readyz with its own ServiceAccount")
        # The chart refuses jobs without an AugmentationProject (operator config, and the gateway
        # as the chart sets it): the job's project, read by both with their own ServiceAccounts.
        project_id = str(uuid.uuid4())
        cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps({
            "apiVersion": "roboaug.dev/v1alpha1", "kind": "AugmentationProject",
            "metadata": {"name": project_id},
            "spec": {"allowed_sources": ["lerobot/pusht"], "allowed_outputs": ["lerobot/pusht-augmented-*"]}}))
        body = {"project_id": project_id, "dataset_id": "lerobot/pusht"}
        headers = {"x-api-key": key, "Idempotency-Key": uuid.uuid4().hex}
        first = httpx.post(f"{base}/v1/augmentation", json=body, headers=headers, timeout=30)
        assert first.status_code == 201, first.text
        again = httpx.post(f"{base}/v1/augmentation", json=body, headers=headers, timeout=30)
        assert again.json()["job_id"] == first.json()["job_id"]  # replayed from the CR's annotations
        job_id = first.json()["job_id"]

        def worker_job():
            out = cluster.kubectl("-n", namespace, "get", "jobs.batch", "-l",
                                  f"roboaug.dev/job-id={job_id}", "-o", "json")
            return json.loads(out.stdout)["items"]

        jobs = cluster.wait_for(worker_job, 120, what="the operator to create the worker Job")
        _each_worker_may_patch_only_its_own_job(cluster, namespace, project_id, jobs[0], tmp_path)
        lease = _get(cluster, "lease", f"{full}-operator", "-n", namespace)
        assert lease and lease["spec"].get("holderIdentity")

        def has_status():
            r = httpx.get(f"{base}/v1/augmentation/{job_id}", headers={"x-api-key": key}, timeout=10)
            return r.status_code == 200 and r.json().get("phases")

        cluster.wait_for(has_status, 120, what="a status with phases through the gateway")
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    for name, f in logs.items():
        f.seek(0)
        text = f.read()
        assert "forbidden" not in text.lower() and " 403" not in text, f"{name}:\n{text[-3000:]}"
        assert "Traceback" not in text and '"severity": "error"' not in text, f"{name}:\n{text[-3000:]}"
