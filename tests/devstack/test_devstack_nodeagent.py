"""The dev node agent really runs pods bound to `local-0` (dev-only kubelet stand-in)."""
import base64
import json
import os
import textwrap
from pathlib import Path

import pytest
from kubernetes import client

from roboaug.api.contract import SPEC_ANNOTATION, spec_volume
from roboaug.devstack.nodeagent import LOG_ANNOTATION, NODE_TAINT, PID_ANNOTATION

pytestmark = pytest.mark.slow

LOCAL = {"nodeSelector": {"roboaug.dev/pool": "local"},
         "tolerations": [{"key": NODE_TAINT["key"], "operator": "Exists"}]}


def local_job(name, command, env=None, sa=None, backoff_limit=0):
    spec = {"restartPolicy": "Never", **LOCAL,
            "containers": [{"name": "main", "image": "ignored:0", "command": command,
                            "env": env or []}]}
    if sa:
        spec["serviceAccountName"] = sa
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": backoff_limit, "template": {"spec": spec}}}


def finished_pod(cluster, k8s, ns, job_name, timeout=60):
    def done():
        for p in k8s.core.list_namespaced_pod(ns, label_selector=f"job-name={job_name}").items:
            if p.status.phase in ("Succeeded", "Failed"):
                return p
        return None
    return cluster.wait_for(done, timeout, what=f"pod of {job_name} finished")


def output(pod) -> str:
    return Path(pod.metadata.annotations[LOG_ANNOTATION]).read_text()


@pytest.fixture(autouse=True)
def _needs_agent(cluster):
    cluster.require_node_agent()


def test_job_runs_locally_with_env(cluster, k8s, namespace):
    k8s.core.create_namespaced_secret(namespace, {
        "metadata": {"name": "hub"}, "data": {"token": base64.b64encode(b"s3cret").decode()}})
    k8s.core.create_namespaced_config_map(namespace, {
        "metadata": {"name": "cfg"}, "data": {"mode": "fast"}})
    script = textwrap.dedent("""
        import json, os, sys
        keys = ["PLAIN", "DERIVED", "TOKEN", "MODE", "POD", "NS", "NODE"]
        print(json.dumps({k: os.environ.get(k) for k in keys}))
        print("python", sys.executable)
    """)
    env = [{"name": "PLAIN", "value": "hello"},
           {"name": "DERIVED", "value": "$(PLAIN)-world"},
           {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}},
           {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
           {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
           {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    k8s.batch.create_namespaced_job(namespace, local_job("run", ["python3", "-c", script], env))
    pod = finished_pod(cluster, k8s, namespace, "run")
    assert pod.status.phase == "Succeeded", output(pod)
    assert pod.spec.node_name == "local-0"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    lines = output(pod).splitlines()
    seen = json.loads(lines[0])
    assert seen == {"PLAIN": "hello", "DERIVED": "hello-world", "TOKEN": "s3cret",
                    "MODE": "fast", "POD": pod.metadata.name, "NS": namespace,
                    "NODE": "local-0"}
    import sys
    assert lines[1] == f"python {sys.executable}"  # the agent's (venv) interpreter
    cluster.wait_for(lambda: k8s.batch.read_namespaced_job("run", namespace).status.succeeded,
                     30, what="Job succeeded")


def test_failing_command_reports_exit_code_and_message(cluster, k8s, namespace):
    k8s.batch.create_namespaced_job(namespace, local_job(
        "fail", ["sh", "-c", "echo about to fail; echo boom >&2; exit 7"]))
    pod = finished_pod(cluster, k8s, namespace, "fail")
    term = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Failed"
    assert term.exit_code == 7
    assert "boom" in term.message and "about to fail" in term.message


def test_child_uses_its_service_account_token_and_rbac(cluster, k8s, namespace):
    k8s.core.create_namespaced_service_account(namespace, {"metadata": {"name": "worker"}})
    k8s.rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "read-cm"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]})
    k8s.rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "worker-read-cm"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-cm"},
        "subjects": [{"kind": "ServiceAccount", "name": "worker", "namespace": namespace}]})
    script = textwrap.dedent("""
        import json, os
        from kubernetes import client, config
        config.load_kube_config()  # KUBECONFIG is set by the node agent
        core = client.CoreV1Api()
        ns = os.environ["NS"]
        out = {"kubeconfig": bool(os.environ.get("KUBECONFIG"))}
        out["cms"] = len(core.list_namespaced_config_map(ns).items)
        try:
            core.list_namespaced_secret(ns)
            out["secrets"] = "allowed"
        except client.exceptions.ApiException as e:
            out["secrets"] = e.status
        auth = client.AuthenticationV1Api()
        review = auth.create_self_subject_review({"apiVersion": "authentication.k8s.io/v1",
                                                  "kind": "SelfSubjectReview"})
        out["user"] = review.status.user_info.username
        print(json.dumps(out))
    """)
    env = [{"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
    k8s.batch.create_namespaced_job(namespace, local_job(
        "rbac", ["python", "-c", script], env, sa="worker"))
    pod = finished_pod(cluster, k8s, namespace, "rbac")
    assert pod.status.phase == "Succeeded", output(pod)
    seen = json.loads(output(pod).splitlines()[-1])
    assert seen["kubeconfig"] is True
    assert seen["cms"] >= 1  # kube-root-ca.crt at least
    assert seen["secrets"] == 403
    assert seen["user"] == f"system:serviceaccount:{namespace}:worker"


def test_deleting_the_pod_kills_the_process(cluster, k8s, namespace):
    k8s.core.create_namespaced_pod(namespace, {
        "metadata": {"name": "sleeper"},
        "spec": {"restartPolicy": "Never", **LOCAL, "terminationGracePeriodSeconds": 2,
                 "containers": [{"name": "c", "image": "x", "command": ["sleep", "300"]}]}})

    def pid():
        p = k8s.core.read_namespaced_pod("sleeper", namespace)
        if p.status.phase == "Running":
            return int((p.metadata.annotations or {}).get(PID_ANNOTATION, 0))
        return 0

    process = cluster.wait_for(pid, 30, what="sleeper Running")
    os.kill(process, 0)  # alive
    k8s.core.delete_namespaced_pod("sleeper", namespace)

    def gone():
        try:
            k8s.core.read_namespaced_pod("sleeper", namespace)
            return False
        except client.exceptions.ApiException as e:
            return e.status == 404

    cluster.wait_for(gone, 30, what="pod removed by the agent")

    def dead():
        try:
            os.kill(process, 0)
            return False
        except ProcessLookupError:
            return True

    cluster.wait_for(dead, 10, what="process killed")


# What the worker sees of its spec file: its text, whether it may write it, the folder, the mode.
SHOW_SPEC_FILE = textwrap.dedent("""
    import json, os
    path = os.environ["SPEC_FILE"]
    print(json.dumps({"spec": open(path).read(), "writable": os.access(path, os.W_OK) and os.getuid() != 0,
                      "listing": sorted(os.listdir(os.path.dirname(path))),
                      "mode": oct(os.stat(path).st_mode & 0o777)}))
""")


def test_downward_api_volume_mounts_the_pods_annotation_read_only(cluster, k8s, namespace):
    # the worker reads its spec this way (operator jobs.render_job + contract.spec_volume)
    job = local_job("dapi", ["python3", "-c", SHOW_SPEC_FILE],
                    [{"name": "SPEC_FILE", "value": "/etc/roboaug/spec/spec.json"}])
    volume, mount = spec_volume()
    job["spec"]["template"].setdefault("metadata", {}).setdefault("annotations", {})[SPEC_ANNOTATION] = \
        '{"a": "\u00e9"}'
    job["spec"]["template"]["spec"]["volumes"] = [volume]
    job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [mount]
    k8s.batch.create_namespaced_job(namespace, job)
    pod = finished_pod(cluster, k8s, namespace, "dapi")
    assert pod.status.phase == "Succeeded", output(pod)
    seen = json.loads(output(pod).splitlines()[0])
    assert seen == {"spec": '{"a": "\u00e9"}', "writable": False, "listing": ["spec.json"], "mode": "0o444"}


def test_config_map_volume_is_mounted_read_only(cluster, k8s, namespace):
    k8s.core.create_namespaced_config_map(namespace, {
        "metadata": {"name": "spec"}, "data": {"spec.json": '{"a": 1}', "other": "x"}})
    job = local_job("cm", ["python3", "-c", SHOW_SPEC_FILE],
                    [{"name": "SPEC_FILE", "value": "/etc/roboaug/spec/spec.json"}])
    spec = job["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "spec", "configMap": {"name": "spec", "defaultMode": 0o444,
                                                      "items": [{"key": "spec.json", "path": "spec.json"}]}}]
    spec["containers"][0]["volumeMounts"] = [{"name": "spec", "mountPath": "/etc/roboaug/spec", "readOnly": True}]
    k8s.batch.create_namespaced_job(namespace, job)
    pod = finished_pod(cluster, k8s, namespace, "cm")
    assert pod.status.phase == "Succeeded", output(pod)
    seen = json.loads(output(pod).splitlines()[0])
    assert seen == {"spec": '{"a": 1}', "writable": False, "listing": ["spec.json"], "mode": "0o444"}


def test_a_missing_config_map_fails_the_pod_with_a_message(cluster, k8s, namespace):
    job = local_job("nocm", ["python3", "-c", "print('ran')"])
    spec = job["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "spec", "configMap": {"name": "absent"}}]
    spec["containers"][0]["volumeMounts"] = [{"name": "spec", "mountPath": "/etc/x"}]
    k8s.batch.create_namespaced_job(namespace, job)
    pod = finished_pod(cluster, k8s, namespace, "nocm")
    assert pod.status.phase == "Failed"
    assert "absent" in pod.status.container_statuses[0].state.terminated.message


def test_the_default_node_is_unpinned_and_reports_every_usable_cpu(cluster, k8s):
    from roboaug.devstack.nodeagent import CPUSET_ANNOTATION

    node = k8s.core.read_node("local-0")
    assert node.status.capacity["cpu"] == str(len(os.sched_getaffinity(0)))
    assert CPUSET_ANNOTATION not in (node.metadata.annotations or {})
