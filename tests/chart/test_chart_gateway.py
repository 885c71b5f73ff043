"""The gateway in the chart (issue 14): metrics on a Service of their own that the Ingress never
routes to, docs behind `gateway.docs.enabled`, the body limit as a value, and a Role without
ConfigMaps. The rendered environment is read by the gateway's own Settings."""
from __future__ import annotations

import pytest

from tests.chart.helpers import helm_template

NS = "roboaug"
INGRESS = {"gateway": {"ingress": {"enabled": True, "className": "nginx",
                                   "hosts": [{"host": "aug.example.org",
                                              "paths": [{"path": "/", "pathType": "Prefix"}]}]}}}


def _container(docs):
    return docs.get("Deployment", "roboaug-gateway")["spec"]["template"]["spec"]["containers"][0]


def _settings(docs):
    from roboaug.api.gateway.settings import Settings

    env = {e["name"][len("ROBOAUG_GATEWAY_"):].lower(): e["value"] for e in _container(docs)["env"] if "value" in e}
    return Settings(**env, namespace=NS)


def _selects(service, selector) -> bool:
    return all(service["spec"]["selector"].get(k) == v for k, v in selector.items())


def test_metrics_have_their_own_service_and_the_ingress_routes_only_the_api(render):
    docs = render(INGRESS)
    settings = _settings(docs)
    ports = {p["name"]: p["containerPort"] for p in _container(docs)["ports"]}
    assert ports == {"http": settings.port, "metrics": settings.metrics_port} and settings.port != settings.metrics_port
    api = docs.get("Service", "roboaug-gateway")
    metrics = docs.get("Service", "roboaug-gateway-metrics")
    assert [p["targetPort"] for p in api["spec"]["ports"]] == ["http"]
    assert [p["targetPort"] for p in metrics["spec"]["ports"]] == ["metrics"]
    assert metrics["spec"]["type"] == "ClusterIP"
    # every Ingress backend is the API Service's http port
    backends = [path["backend"]["service"] for rule in docs.get("Ingress", "roboaug-gateway")["spec"]["rules"]
                for path in rule["http"]["paths"]]
    assert backends and all(b == {"name": "roboaug-gateway", "port": {"name": "http"}} for b in backends)


def test_a_public_api_service_keeps_metrics_internal(render):
    docs = render({"gateway": {"service": {"type": "LoadBalancer"}}})
    assert docs.get("Service", "roboaug-gateway")["spec"]["type"] == "LoadBalancer"
    assert docs.get("Service", "roboaug-gateway-metrics")["spec"]["type"] == "ClusterIP"
    assert [p["name"] for p in docs.get("Service", "roboaug-gateway")["spec"]["ports"]] == ["http"]


def test_servicemonitor_scrapes_the_metrics_port(render):
    docs = render({"serviceMonitor": {"enabled": True}})
    sm = docs.get("ServiceMonitor", "roboaug-gateway")
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"]
    # of the Services it selects, only the metrics one has a port of that name
    selected = [s for s in docs.of("Service") if _selects(s, sm["spec"]["selector"]["matchLabels"])]
    with_port = [s["metadata"]["name"] for s in selected if any(p["name"] == "metrics" for p in s["spec"]["ports"])]
    assert with_port == ["roboaug-gateway-metrics"]


def test_networkpolicy_lets_the_metrics_port_in(render):
    docs = render({"networkPolicy": {"enabled": True, "gatewayIngressFrom": [{"podSelector": {}}]}})
    rules = docs.get("NetworkPolicy", "roboaug-gateway")["spec"]["ingress"]
    ports = {p["port"]: r.get("from") for r in rules for p in r["ports"]}
    assert ports == {8080: [{"podSelector": {}}], 9090: None}


def test_docs_off_by_default_and_on_with_the_switch(render):
    assert _settings(render()).docs_enabled is False
    assert _settings(render({"gateway": {"docs": {"enabled": True}}})).docs_enabled is True


def test_body_limit_and_metrics_port_are_values(render):
    s = _settings(render())
    assert (s.max_body_bytes, s.metrics_port) == (64 * 1024, 9090)
    s = _settings(render({"gateway": {"maxBodyBytes": 1048576, "metricsPort": 9191}}))
    assert (s.max_body_bytes, s.metrics_port) == (1048576, 9191)
    assert {p["name"]: p["port"] for p in render({"gateway": {"metricsPort": 9191}}).get(
        "Service", "roboaug-gateway-metrics")["spec"]["ports"]} == {"metrics": 9191}


@pytest.mark.parametrize("values, message", [
    ({"gateway": {"metricsPort": 8080}}, "gateway.metricsPort must differ from gateway.port"),
    ({"gateway": {"maxBodyBytes": 100}}, "maxBodyBytes"),
    ({"gateway": {"docs": {"enabled": "yes"}}}, "enabled"),
    ({"gateway": {"docs": {"on": True}}}, "on"),
])
def test_bad_gateway_values_are_refused(helm_bin, tmp_path, values, message):
    proc = helm_template(helm_bin, values, tmp_path=tmp_path, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_gateway_role_reads_configmaps_by_name_only(render):
    """Idempotency-Key records are the CRs themselves; the only ConfigMap right is `get`, for the
    log archives (GET .../logs after the pod is gone): no list, no write."""
    rules = render().get("Role", "roboaug-gateway")["rules"]
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {("roboaug.dev", "augmentationjobs", v) for v in ("create", "get", "list", "patch")} | {
        ("roboaug.dev", "augmentationprojects", "get"), ("roboaug.dev", "augmentationprojects", "list"),
        ("", "pods", "list"), ("", "pods/log", "get"), ("", "configmaps", "get")}
    assert not any("resourceNames" in rule for rule in rules)
