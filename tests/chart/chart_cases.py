"""Every documented toggle of the chart: the values that flip it and what must then be rendered.

Shared by test_helm.py (offline `helm template`) and test_chart_cluster.py (server-side dry-run).
Each check receives the rendered documents and the namespace rendered into.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Toggle:
    id: str
    values: dict
    check: Callable  # (Rendered, namespace) -> None, asserts the toggle's effect


def _names(docs, kind):
    return sorted(d["metadata"]["name"] for d in docs.of(kind))


def _pod_spec(docs, name):
    return docs.get("Deployment", name)["spec"]["template"]["spec"]


def _config(docs):
    import yaml

    return yaml.safe_load(docs.get("ConfigMap", "roboaug-operator")["data"]["config.yaml"])


def _no_crd(docs, ns):
    assert docs.of("CustomResourceDefinition") == []


def _crd_not_kept(docs, ns):
    crds = docs.of("CustomResourceDefinition")
    assert len(crds) == 2  # jobs and projects
    for crd in crds:
        assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})


def _no_gateway(docs, ns):
    assert all("gateway" not in n for kind in ("Deployment", "Service", "Role", "RoleBinding",
                                              "ServiceAccount", "PodDisruptionBudget")
               for n in _names(docs, kind))
    # the preview service's one client is the gateway
    assert not [d for d in docs if "preview" in d["metadata"]["name"]]


def _no_preview(docs, ns):
    assert not [d for d in docs if "preview" in d["metadata"]["name"]]
    env = {e["name"] for e in _pod_spec(docs, "roboaug-gateway")["containers"][0]["env"]}
    assert not {"ROBOAUG_GATEWAY_PREVIEW_URL", "ROBOAUG_GATEWAY_PREVIEW_TIMEOUT_SECONDS"} & env


def _ingress(docs, ns):
    ing = docs.get("Ingress", "roboaug-gateway")
    assert ing["spec"]["ingressClassName"] == "nginx"
    rule = ing["spec"]["rules"][0]
    assert rule["host"] == "aug.example.org"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "roboaug-gateway"
    assert ing["spec"]["tls"][0]["secretName"] == "aug-tls"


def _no_pdbs(docs, ns):
    assert docs.of("PodDisruptionBudget") == []


def _netpols(docs, ns):
    names = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs.of("NetworkPolicy")}
    assert names == {(ns, "roboaug-operator"), (ns, "roboaug-gateway"), (ns, "roboaug-worker"),
                     (ns, "roboaug-preview"), (ns, "roboaug-gateway-to-preview")}  # preview-networkpolicy.yaml
    worker = docs.get("NetworkPolicy", "roboaug-worker")
    assert worker["spec"]["ingress"] == []
    assert worker["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "roboaug-worker"


def _servicemonitors(docs, ns):
    sms = docs.of("ServiceMonitor")
    assert _names(docs, "ServiceMonitor") == ["roboaug-gateway", "roboaug-operator"]
    assert all(sm["metadata"]["labels"]["release"] == "prom" for sm in sms)


def _single_operator(docs, ns):
    dep = docs.get("Deployment", "roboaug-operator")
    assert dep["spec"]["replicas"] == 1
    assert _config(docs)["leader_election"]["enabled"] is False
    assert "roboaug-operator-leader" not in _names(docs, "Role")


def _watch_namespaces(watched):
    def check(docs, ns):
        watched_here = [ns if w == "__NS__" else w for w in watched]
        assert _config(docs)["namespaces"] == watched_here
        # No cluster-wide grant of the namespaced rules: RoleBindings per watched namespace.
        assert "roboaug-operator" not in _names(docs, "ClusterRoleBinding")
        rbs = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs.of("RoleBinding")}
        for w in watched_here:
            assert (w, "roboaug-operator") in rbs
    return check


def _worker_namespaces(docs, ns):
    # the worker's NetworkPolicy in each (its identity comes per job from the operator)
    pols = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs.of("NetworkPolicy")}
    assert {(ns, "roboaug-worker"), ("team-b", "roboaug-worker")} <= pols


def _no_hub_token(docs, ns):
    assert _config(docs)["hub_token_secret"] is None
    env = {e["name"] for e in _pod_spec(docs, "roboaug-gateway")["containers"][0]["env"]}
    assert "ROBOAUG_GATEWAY_HUB_TOKEN_SECRET_NAME" not in env


def _no_api_keys(docs, ns):
    spec = _pod_spec(docs, "roboaug-gateway")
    assert [v["name"] for v in spec["volumes"]] == ["tmp"]
    env = {e["name"] for e in spec["containers"][0]["env"]}
    assert "ROBOAUG_GATEWAY_API_KEYS_FILE" not in env


DIGEST = "sha256:" + "ab" * 32


def _digests(docs, ns):
    for name in ("roboaug-operator", "roboaug-gateway"):
        assert _pod_spec(docs, name)["containers"][0]["image"] == f"ghcr.io/roboaug/roboaug@{DIGEST}"
    pools = _config(docs)["pools"]
    assert pools["cpu"]["image"] == f"ghcr.io/roboaug/worker@{DIGEST}"
    assert _pod_spec(docs, "roboaug-preview")["containers"][0]["image"] == f"ghcr.io/roboaug/worker@{DIGEST}"


def _pull_secrets(docs, ns):
    for name in ("roboaug-operator", "roboaug-gateway"):
        assert _pod_spec(docs, name)["imagePullSecrets"] == [{"name": "regcred"}]
    assert _config(docs)["image_pull_secrets"] == ["regcred"]  # the operator sets them on worker pods


def _no_service_accounts(docs, ns):
    assert docs.of("ServiceAccount") == []
    # RBAC still binds to the names the pods use.
    assert _pod_spec(docs, "roboaug-operator")["serviceAccountName"] == "ops-sa"
    assert _pod_spec(docs, "roboaug-preview")["serviceAccountName"] == "preview-sa"
    crb = docs.get("ClusterRoleBinding", "roboaug-operator")
    assert crb["subjects"][0]["name"] == "ops-sa"


def _job_knobs(docs, ns):
    cfg = _config(docs)
    assert cfg["ttl_seconds_after_finished"] is None
    assert cfg["active_deadline_seconds"] == 7200
    assert cfg["backoff_limit"] == 1
    assert cfg["pending_timeout_seconds"] == 120
    assert cfg["worker_env"] == {"HF_ENDPOINT": "https://hf-mirror.example.org"}
    assert cfg["scratch_size_limit"] is None


def _extra_pool(docs, ns):
    cfg = _config(docs)
    assert cfg["routing"] == {"deterministic": "spot", "generative": "gpu"}
    spot = cfg["pools"]["spot"]
    assert spot["node_selector"] == {"karpenter.sh/capacity-type": "spot"}
    assert spot["instance_type"] == "m7i.2xlarge"
    assert spot["image"] == "registry.example.org/roboaug/worker:custom"
    assert spot["priority_class_name"] == "batch-low"
    assert "nvidia.com/gpu" not in spot["resources"]["limits"]


def _gpus(docs, ns):
    gpu = _config(docs)["pools"]["gpu"]
    assert gpu["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "2"


def _log_level(docs, ns):
    assert _config(docs)["log_level"] == "DEBUG"
    env = {e["name"]: e.get("value") for e in _pod_spec(docs, "roboaug-gateway")["containers"][0]["env"]}
    assert env["ROBOAUG_GATEWAY_LOG_LEVEL"] == "debug"


def _placement(docs, ns):
    spec = _pod_spec(docs, "roboaug-operator")
    assert spec["nodeSelector"] == {"node-role.kubernetes.io/system": "true"}
    assert spec["tolerations"][0]["key"] == "system"
    assert spec["affinity"]["podAntiAffinity"]
    assert spec["priorityClassName"] == "system-cluster-critical"


TOGGLES = [
    Toggle("crds-off", {"crds": {"install": False}}, _no_crd),
    Toggle("crds-not-kept", {"crds": {"keep": False}}, _crd_not_kept),
    Toggle("gateway-off", {"gateway": {"enabled": False}}, _no_gateway),
    Toggle("preview-off", {"preview": {"enabled": False}}, _no_preview),
    Toggle("ingress-on", {"gateway": {"ingress": {
        "enabled": True, "className": "nginx",
        "hosts": [{"host": "aug.example.org", "paths": [{"path": "/", "pathType": "Prefix"}]}],
        "tls": [{"secretName": "aug-tls", "hosts": ["aug.example.org"]}]}}}, _ingress),
    Toggle("pdbs-off", {"operator": {"pdb": {"enabled": False}}, "gateway": {"pdb": {"enabled": False}}},
           _no_pdbs),
    Toggle("networkpolicy-on", {"networkPolicy": {"enabled": True}}, _netpols),
    Toggle("servicemonitor-on", {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
           _servicemonitors),
    Toggle("single-operator", {"operator": {"replicas": 1, "leaderElection": {"enabled": False}}},
           _single_operator),
    Toggle("watch-namespaces", {"watchNamespaces": ["__NS__", "team-a"]},
           _watch_namespaces(["__NS__", "team-a"])),
    Toggle("worker-namespaces", {"workerNamespaces": ["team-b"], "networkPolicy": {"enabled": True}},
           _worker_namespaces),
    Toggle("no-hub-token", {"hubToken": {"secretName": ""}}, _no_hub_token),
    Toggle("no-api-keys", {"gateway": {"apiKeys": {"secretName": ""}}}, _no_api_keys),
    Toggle("image-digests", {"image": {"digest": DIGEST}, "workerImage": {"digest": DIGEST}}, _digests),
    Toggle("pull-secrets", {"imagePullSecrets": [{"name": "regcred"}]}, _pull_secrets),
    Toggle("external-service-accounts", {
        "operator": {"serviceAccount": {"create": False, "name": "ops-sa"}},
        "gateway": {"serviceAccount": {"create": False, "name": "gw-sa"}},
        "preview": {"serviceAccount": {"create": False, "name": "preview-sa"}}}, _no_service_accounts),
    Toggle("job-knobs", {"jobs": {"ttlSecondsAfterFinished": None, "activeDeadlineSeconds": 7200,
                                  "backoffLimit": 1, "pendingTimeoutSeconds": 120,
                                  "env": {"HF_ENDPOINT": "https://hf-mirror.example.org"},
                                  "scratchSizeLimit": None}}, _job_knobs),
    Toggle("extra-pool", {
        "pools": {"spot": {"instanceType": "m7i.2xlarge",
                           "nodeSelector": {"karpenter.sh/capacity-type": "spot"},
                           "resources": {"requests": {"cpu": 2, "memory": "4Gi"}},
                           "image": "registry.example.org/roboaug/worker:custom",
                           "priorityClassName": "batch-low"}},
        "routing": {"deterministic": "spot"}}, _extra_pool),
    Toggle("two-gpus", {"pools": {"gpu": {"gpus": 2}}}, _gpus),
    Toggle("debug-logs", {"logLevel": "DEBUG"}, _log_level),
    Toggle("operator-placement", {"operator": {
        "nodeSelector": {"node-role.kubernetes.io/system": "true"},
        "tolerations": [{"key": "system", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                "labelSelector": {"matchLabels": {
                                                    "app.kubernetes.io/component": "operator"}}}}]}},
        "priorityClassName": "system-cluster-critical"}}, _placement),
]


def with_namespace(values, ns: str):
    """Replace the __NS__ placeholder (the namespace the chart is rendered into)."""
    if isinstance(values, dict):
        return {k: with_namespace(v, ns) for k, v in values.items()}
    if isinstance(values, list):
        return [with_namespace(v, ns) for v in values]
    return ns if values == "__NS__" else values
