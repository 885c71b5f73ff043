"""The preview service in the chart (issue 15 item 6): a pod with no credential at all (no
ServiceAccount token, no RBAC, no Secret), locked down like the others, reachable from gateway
pods only, and the gateway pointed at its Service by a URL its own Settings accept."""
from __future__ import annotations

import json
import urllib.parse

import jsonschema_rs
import pytest
import yaml

from tests.chart.helpers import CHART, deep_merge

NS = "roboaug"
NAME = "roboaug-preview"


def _deployment(docs, name):
    return docs.get("Deployment", name)


def _pod(docs, name=NAME):
    return _deployment(docs, name)["spec"]["template"]["spec"]


def _env(container) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _pod_labels(docs, name):
    return _deployment(docs, name)["spec"]["template"]["metadata"]["labels"]


def test_the_preview_pod_holds_no_credential(render):
    docs = render()
    spec = _pod(docs)
    (c,) = spec["containers"]
    assert c["command"] == ["python", "-m", "roboaug.worker.preview_server"]
    assert c["image"].startswith("ghcr.io/roboaug/worker:")  # the worker image: decoders and kernels
    # No ServiceAccount token in the pod, from the pod spec or the account's default.
    assert spec["automountServiceAccountToken"] is False
    sa = docs.get("ServiceAccount", spec["serviceAccountName"])
    assert sa["automountServiceAccountToken"] is False
    # No RBAC names that account.
    bound = [b["metadata"]["name"] for b in docs.of("RoleBinding") + docs.of("ClusterRoleBinding")
             if any(s.get("name") == spec["serviceAccountName"] for s in b.get("subjects", []))]
    assert bound == []
    # No Secret as a volume or a variable, no Hub token by any name.
    assert all("secret" not in v and "projected" not in v for v in spec["volumes"])
    for e in c["env"]:
        assert "valueFrom" not in e, e["name"]
        assert "TOKEN" not in e["name"], e["name"]


def test_the_preview_pod_is_locked_down(render):
    spec = _pod(render())
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsNonRoot"] is True
    # /tmp is its only writable path, and where the Hub cache and each preview's files go.
    assert [m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")] == ["/tmp"]
    env = _env(c)
    assert env["HF_HOME"].startswith("/tmp/") and env["TMPDIR"] == "/tmp"
    assert [v for v in spec["volumes"] if v["name"] == "tmp"][0]["emptyDir"]["sizeLimit"] == "2Gi"
    # Both probes on the service's own /healthz.
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    # Sized from the measurement (values.yaml): above the 115 MiB import, a limit for the frames.
    res = c["resources"]
    assert res["requests"]["memory"] == "256Mi" and res["limits"]["memory"] == "768Mi"


def test_the_service_settings_reach_the_preview_server(render):
    """The variables the chart sets are the ones preview_server reads, with the values given."""
    from roboaug.worker import preview_server

    docs = render({"preview": {"port": 9000, "concurrency": 3}})
    (c,) = _pod(docs)["containers"]
    env = _env(c)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 9000}
    source = open(preview_server.__file__).read()
    for name in ("ROBOAUG_PREVIEW_PORT", "ROBOAUG_PREVIEW_CONCURRENCY"):
        assert f'"{name}"' in source, name
    assert (env["ROBOAUG_PREVIEW_PORT"], env["ROBOAUG_PREVIEW_CONCURRENCY"]) == ("9000", "3")


@pytest.mark.parametrize("release, namespace", [("roboaug", NS), ("aug", "ml-platform")])
def test_the_gateway_calls_the_preview_service(render, release, namespace):
    from roboaug.api.gateway.settings import Settings

    docs = render({"preview": {"timeoutSeconds": 30, "service": {"port": 8081}}}, release=release,
                  namespace=namespace)
    gw = next(d for d in docs.of("Deployment") if d["metadata"]["name"].endswith("-gateway"))
    env = {e["name"][len("ROBOAUG_GATEWAY_"):].lower(): e["value"]
           for e in gw["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    settings = Settings(**env, namespace=namespace)  # the gateway's own parsing of what the chart sets
    assert settings.preview_timeout_seconds == 30
    url = urllib.parse.urlsplit(settings.preview_url)
    name, ns, svc = url.hostname.split(".")
    assert (ns, svc, url.scheme, url.port) == (namespace, "svc", "http", 8081)
    service = docs.get("Service", name)
    (port,) = service["spec"]["ports"]
    assert port["port"] == 8081 and service["spec"]["type"] == "ClusterIP"
    # The Service reaches the preview pods' http port.
    preview = next(d for d in docs.of("Deployment") if d["metadata"]["name"] == name)
    assert _matches(service["spec"]["selector"], preview["spec"]["template"]["metadata"]["labels"])
    assert port["targetPort"] in {p["name"] for p in preview["spec"]["template"]["spec"]["containers"][0]["ports"]}


def test_only_gateway_pods_may_reach_the_preview_service(render):
    docs = render()  # networkPolicy.enabled is false: this policy is rendered anyway
    np = docs.get("NetworkPolicy", NAME)
    assert _matches(np["spec"]["podSelector"]["matchLabels"], _pod_labels(docs, NAME))
    assert np["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = np["spec"]["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}  # this namespace's pods, no ipBlock or namespaceSelector
    selector = peer["podSelector"]["matchLabels"]
    assert _matches(selector, _pod_labels(docs, "roboaug-gateway"))
    others = [n for n in ("roboaug-operator", NAME) if _matches(selector, _pod_labels(docs, n))]
    assert others == []
    assert rule["ports"] == [{"protocol": "TCP", "port": _pod(docs)["containers"][0]["ports"][0]["containerPort"]}]


def test_with_network_policies_the_gateway_may_call_it_and_it_reaches_only_dns_and_the_hub(render):
    docs = render({"networkPolicy": {"enabled": True, "workerEgressCIDRs": ["10.9.0.0/16"]}})
    np = docs.get("NetworkPolicy", NAME)
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress_ports = sorted(p["port"] for r in np["spec"]["egress"] for p in r["ports"])
    assert egress_ports == [53, 53, 443]  # never the API server (6443): it holds no token anyway
    assert [r.get("to") for r in np["spec"]["egress"] if r.get("to")] == [[{"ipBlock": {"cidr": "10.9.0.0/16"}}]]
    # The gateway's own policy allows DNS and the API server only; this one adds the preview.
    out = docs.get("NetworkPolicy", "roboaug-gateway-to-preview")
    assert _matches(out["spec"]["podSelector"]["matchLabels"], _pod_labels(docs, "roboaug-gateway"))
    assert out["spec"]["policyTypes"] == ["Egress"]
    (rule,) = out["spec"]["egress"]
    assert _matches(rule["to"][0]["podSelector"]["matchLabels"], _pod_labels(docs, NAME))
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_disabled_renders_nothing_and_the_gateway_has_no_preview_url(render):
    docs = render({"preview": {"enabled": False}})
    assert [d for d in docs if "preview" in d["metadata"]["name"]] == []
    gw = docs.get("Deployment", "roboaug-gateway")["spec"]["template"]["spec"]["containers"][0]
    assert "ROBOAUG_GATEWAY_PREVIEW_URL" not in _env(gw)


SCHEMA = jsonschema_rs.validator_for(json.loads((CHART / "values.schema.json").read_text()))
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


@pytest.mark.parametrize("patch, where", [
    ({"preview": {"concurrency": 0}}, "preview.concurrency"),
    ({"preview": {"timeoutSeconds": 0}}, "preview.timeoutSeconds"),
    ({"preview": {"serviceAccount": {"name": "Not_A_Name"}}}, "preview.serviceAccount.name"),
    ({"preview": {"resources": {"limits": {"memory": "lots"}}}}, "preview.resources.limits.memory"),
    ({"preview": {"enabeld": True}}, "preview"),
])
def test_wrong_preview_values_are_refused_naming_the_field(patch, where):
    found = [f"{'.'.join(map(str, e.instance_path))}: {e.message}" for e in SCHEMA.iter_errors(deep_merge(VALUES, patch))]
    assert any(e.startswith(where) for e in found), found
