"""The chart offline: helm lint, helm template with defaults and every toggle, the schema's and
the templates' refusals, security contexts, least-privilege RBAC, and the operator ConfigMap
parsed by the operator's own loader."""
from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.chart.chart_cases import TOGGLES, with_namespace
from tests.chart.helpers import CHART, CLUSTER_SCOPED, helm_template

NS = "roboaug"


def rules_of(role: dict) -> dict[tuple[str, str], set[str]]:
    """{(apiGroup, resource[/sub][#names]): verbs} for easy comparison."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role.get("rules", []):
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                key = res + ("#" + ",".join(rule["resourceNames"]) if rule.get("resourceNames") else "")
                out.setdefault((group, key), set()).update(rule["verbs"])
    return out


# ---------------------------------------------------------------------------------------------
# lint and defaults


def test_helm_lint(helm_bin):
    proc = subprocess.run([helm_bin, "lint", "--strict", str(CHART)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_helm_lint_with_every_toggle(helm_bin, tmp_path):
    for toggle in TOGGLES:
        f = tmp_path / f"{toggle.id}.yaml"
        f.write_text(yaml.safe_dump(with_namespace(toggle.values, NS)))
        proc = subprocess.run([helm_bin, "lint", "--strict", str(CHART), "--namespace", NS,
                               "-f", str(f)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{toggle.id}: {proc.stdout}{proc.stderr}"


def test_defaults_render_the_documented_objects(render):
    docs = render()
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
    assert kinds == sorted([
        ("ClusterRole", "roboaug-operator"),
        ("ClusterRole", "roboaug-operator-cluster-read"),
        ("ClusterRole", "roboaug-project-admin"),   # people's access to projects (rbac-projects.yaml)
        ("ClusterRole", "roboaug-project-viewer"),
        ("ClusterRole", "roboaug-job-editor"),   # people's access to jobs, aggregated (rbac-jobs.yaml)
        ("ClusterRole", "roboaug-job-viewer"),
        ("ClusterRole", "roboaug-operator-webhook-secrets"),   # webhook signing secrets by name
        ("ClusterRoleBinding", "roboaug-operator"),
        ("ClusterRoleBinding", "roboaug-operator-cluster-read"),
        ("ClusterRoleBinding", "roboaug-operator-webhook-secrets"),
        ("ConfigMap", "roboaug-operator"),
        ("CustomResourceDefinition", "augmentationjobs.roboaug.dev"),
        ("CustomResourceDefinition", "augmentationprojects.roboaug.dev"),
        ("Deployment", "roboaug-gateway"),
        ("Deployment", "roboaug-operator"),
        ("Deployment", "roboaug-preview"),   # the preview service (preview-*.yaml), with the gateway
        ("NetworkPolicy", "roboaug-preview"),  # its ingress from gateway pods only, whatever networkPolicy.enabled
        ("PodDisruptionBudget", "roboaug-gateway"),
        ("PodDisruptionBudget", "roboaug-operator"),
        ("Role", "roboaug-gateway"),
        ("Role", "roboaug-operator-leader"),
        ("RoleBinding", "roboaug-gateway"),
        ("RoleBinding", "roboaug-operator-leader"),
        ("Service", "roboaug-gateway"),
        ("Service", "roboaug-gateway-metrics"),   # metrics off the API Service (and Ingress)
        ("Service", "roboaug-operator-metrics"),
        ("Service", "roboaug-preview"),
        ("ServiceAccount", "roboaug-gateway"),
        ("ServiceAccount", "roboaug-operator"),
        ("ServiceAccount", "roboaug-preview"),
        ("ValidatingAdmissionPolicy", "roboaug-project-policy"),   # the apiserver's door of projects
        # each worker pod writes its own job's status only (api/admission.py build_worker_policy)
        ("ValidatingAdmissionPolicy", "roboaug-worker-own-job"),
        ("ValidatingAdmissionPolicyBinding", "roboaug-project-policy"),
        ("ValidatingAdmissionPolicyBinding", "roboaug-worker-own-job"),
    ])
    # The chart never holds a secret value: only references.
    assert docs.of("Secret") == []
    for crd in docs.of("CustomResourceDefinition"):
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for d in docs:
        if d["kind"] not in CLUSTER_SCOPED:
            assert d["metadata"]["namespace"] == NS, d["metadata"]["name"]


@pytest.mark.parametrize("toggle", TOGGLES, ids=[t.id for t in TOGGLES])
def test_template_with_toggle(render, toggle):
    docs = render(with_namespace(toggle.values, NS))
    toggle.check(docs, NS)


# ---------------------------------------------------------------------------------------------
# refusals


@pytest.mark.parametrize("values, message", [
    ({"operator": {"replicas": "two"}}, "at '/operator/replicas': got string, want integer"),
    ({"jobs": {"backoffLimit": "3"}}, "at '/jobs/backoffLimit': got string, want integer"),
    ({"pools": {"cpu": {"gpus": "one"}}}, "at '/pools/cpu/gpus'"),
    ({"logLevel": "TRACE"}, "at '/logLevel'"),
    ({"containerSecurityContext": {"readOnlyRootFilesystem": False}},
     "at '/containerSecurityContext/readOnlyRootFilesystem'"),
    ({"gateway": {"enabeld": True}}, "enabeld"),
])
def test_schema_refuses_wrong_values_with_a_message(helm_bin, tmp_path, values, message):
    proc = helm_template(helm_bin, values, tmp_path=tmp_path, check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize("values, message", [
    ({"routing": {"deterministic": "nope"}}, 'routing.deterministic: pool "nope" is not defined'),
    ({"watchNamespaces": ["team-a"]}, "watchNamespaces must include the release namespace"),
    ({"operator": {"replicas": 2, "leaderElection": {"enabled": False}}}, "needs operator.leaderElection"),
    ({"operator": {"leaderElection": {"renewPeriodSeconds": 20}}}, "renewPeriodSeconds must be below"),
    ({"gateway": {"listDefaultLimit": 500}}, "listDefaultLimit must not exceed"),
])
def test_inconsistent_values_fail_with_a_message(helm_bin, tmp_path, values, message):
    proc = helm_template(helm_bin, values, tmp_path=tmp_path, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------
# security


def _pod_specs(docs):
    for dep in docs.of("Deployment"):
        yield dep["metadata"]["name"], dep["spec"]["template"]["spec"]


def test_every_pod_is_locked_down(render):
    docs = render({"networkPolicy": {"enabled": True}, "gateway": {"ingress": {"enabled": True}}})
    specs = dict(_pod_specs(docs))
    assert set(specs) == {"roboaug-operator", "roboaug-gateway", "roboaug-preview"}
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), name
            assert sc.get("privileged", False) is False, name
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], name
            probe = c["livenessProbe"]["httpGet"]
            assert (probe["path"], probe["port"]) == (
                ("/metrics", "metrics") if name == "roboaug-operator" else ("/healthz", "http"))
            # No secret values in the environment: references and file paths only.
            for env in c.get("env", []):
                assert "secretKeyRef" not in (env.get("valueFrom") or {}), env["name"]
                assert not str(env.get("value", "")).startswith("hf_")
            # A writable /tmp is the only writable path.
            writable = [m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")]
            assert writable == ["/tmp"], (name, writable)


def test_api_keys_mounted_as_a_directory_for_rotation(render):
    spec = render().get("Deployment", "roboaug-gateway")["spec"]["template"]["spec"]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "api-keys")
    # A subPath mount would never see an updated Secret.
    assert "subPath" not in mount and mount["readOnly"] is True
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["ROBOAUG_GATEWAY_API_KEYS_FILE"] == mount["mountPath"] + "/keys"
    vol = next(v for v in spec["volumes"] if v["name"] == "api-keys")
    assert vol["secret"]["secretName"] == "roboaug-api-keys"


def test_gateway_env_matches_its_settings(render):
    # Every ROBOAUG_GATEWAY_* variable the chart sets is a field of the gateway's Settings.
    from roboaug.api.gateway.settings import Settings

    spec = render().get("Deployment", "roboaug-gateway")["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert c["command"] == ["python", "-m", "roboaug.api.gateway"]
    fields = set(Settings.model_fields)
    for env in c["env"]:
        assert env["name"].startswith("ROBOAUG_GATEWAY_")
        assert env["name"][len("ROBOAUG_GATEWAY_"):].lower() in fields, env["name"]
    values = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    settings = Settings(**{k[len("ROBOAUG_GATEWAY_"):].lower(): v for k, v in values.items()},
                        namespace=NS)
    assert settings.port == 8080 and settings.store == "kubernetes"
    assert settings.hub_token_secret_name == "roboaug-hf-token"
    assert c["ports"][0]["containerPort"] == settings.port


def test_operator_runs_its_module_with_the_config_file(render):
    docs = render()
    c = docs.get("Deployment", "roboaug-operator")["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["python", "-m", "roboaug.operator"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    mount = next(m for m in c["volumeMounts"] if m["name"] == "config")
    assert env["ROBOAUG_OPERATOR_CONFIG"] == mount["mountPath"] + "/config.yaml"


def test_config_change_rolls_the_operator(render):
    a = render().get("Deployment", "roboaug-operator")
    b = render({"jobs": {"backoffLimit": 5}}).get("Deployment", "roboaug-operator")
    key = "checksum/config"
    assert a["spec"]["template"]["metadata"]["annotations"][key] != \
        b["spec"]["template"]["metadata"]["annotations"][key]


# ---------------------------------------------------------------------------------------------
# RBAC: exactly what each ServiceAccount needs


def test_operator_rbac_is_least_privilege(render):
    docs = render()
    assert rules_of(docs.get("ClusterRole", "roboaug-operator")) == {
        ("roboaug.dev", "augmentationjobs"): {"get", "list", "watch", "patch", "delete"},
        ("roboaug.dev", "augmentationjobs/status"): {"get", "patch"},
        ("roboaug.dev", "augmentationjobs/finalizers"): {"update"},
        # the jobs' project policies (steps.validate): watched, and a GET for one not seen yet
        ("roboaug.dev", "augmentationprojects"): {"get", "list", "watch"},
        ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
        ("", "pods"): {"get", "list", "watch"},
        ("", "pods/log"): {"get"},  # each ended attempt's log tail (operator/log_archive.py)
        ("", "events"): {"create"},
        # the workers' identity, once per namespace (operator/access.py); never deleted
        ("", "serviceaccounts"): {"create", "get"},
        ("rbac.authorization.k8s.io", "roles"): {"create", "get"},
        ("rbac.authorization.k8s.io", "rolebindings"): {"create", "get"},
        ("", "configmaps"): {"create", "get"},  # log archives, immutable, owned by the CR
    }
    assert rules_of(docs.get("ClusterRole", "roboaug-operator-cluster-read")) == {
        ("", "nodes"): {"get"},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    }
    assert rules_of(docs.get("Role", "roboaug-operator-leader")) == {
        ("coordination.k8s.io", "leases"): {"create"},
        ("coordination.k8s.io", "leases#roboaug-operator"): {"get", "update"},
    }
    cfg = yaml.safe_load(docs.get("ConfigMap", "roboaug-operator")["data"]["config.yaml"])
    assert cfg["leader_election"]["lease_name"] == "roboaug-operator"
    for kind, name in [("ClusterRoleBinding", "roboaug-operator"),
                       ("ClusterRoleBinding", "roboaug-operator-cluster-read"),
                       ("RoleBinding", "roboaug-operator-leader")]:
        assert docs.get(kind, name)["subjects"] == [
            {"kind": "ServiceAccount", "name": "roboaug-operator", "namespace": NS}]


def test_gateway_rbac_is_least_privilege_and_no_worker_role_is_shared(render):
    docs = render()
    assert rules_of(docs.get("Role", "roboaug-gateway")) == {
        ("roboaug.dev", "augmentationjobs"): {"create", "get", "list", "patch"},
        ("roboaug.dev", "augmentationprojects"): {"get", "list"},
        # GET .../logs: a job's pods by label, their logs, then the operator's archives by name
        ("", "pods"): {"list"},
        ("", "pods/log"): {"get"},
        ("", "configmaps"): {"get"},
    }  # no ConfigMap written or listed: an Idempotency-Key's record is its job's CR
    # Workers get their namespace's identity from the operator (operator/access.py), none from
    # the chart: it also works in namespaces no value lists.
    assert not [d for d in docs.of("Role") + docs.of("ServiceAccount") if "worker" in d["metadata"]["name"]]
    # No role grants secrets (but the operator's `get` of the webhook Secret names listed in
    # values, tests/chart/test_chart_webhooks.py), wildcards or escalation verbs.
    for role in docs.of("Role") + docs.of("ClusterRole"):
        for (group, res), verbs in rules_of(role).items():
            if role["metadata"]["name"] == "roboaug-operator-webhook-secrets":
                assert (res, verbs) == ("secrets#roboaug-webhook", {"get"})
                continue
            assert "secrets" not in res and "*" not in res and "*" not in verbs and "*" != group
            assert not verbs & {"escalate", "bind", "impersonate"}


# ---------------------------------------------------------------------------------------------
# the operator's ConfigMap, read by the operator's own loader


def _operator_config(docs):
    from roboaug.operator.config import parse_config

    text = docs.get("ConfigMap", "roboaug-operator")["data"]["config.yaml"]
    return parse_config(yaml.safe_load(text))


def test_configmap_parses_with_the_operator_loader(render, tmp_path, monkeypatch):
    from roboaug.operator.config import CONFIG_ENV, load_config

    docs = render()
    cfg = _operator_config(docs)
    # And through the file path the Deployment uses.
    f = tmp_path / "config.yaml"
    f.write_text(docs.get("ConfigMap", "roboaug-operator")["data"]["config.yaml"])
    monkeypatch.setenv(CONFIG_ENV, str(f))
    assert load_config() == cfg
    assert cfg.namespaces == []
    assert cfg.image_pull_secrets == []
    assert cfg.backoff_limit == 3 and cfg.pending_timeout_seconds == 600
    assert cfg.ttl_seconds_after_finished == 86400
    assert cfg.hub_token_secret.name == "roboaug-hf-token" and cfg.hub_token_secret.key == "token"
    assert cfg.log_level == "INFO" and cfg.log_format == "json"
    assert cfg.pools["cpu"].image == "ghcr.io/roboaug/worker:0.1.0"
    assert cfg.pools["gpu"].image == "ghcr.io/roboaug/worker:0.1.0-cuda"
    assert cfg.pools["gpu"].gpus == 1 and cfg.pools["cpu"].gpus == 0


def test_chart_default_pools_equal_the_operator_defaults(render):
    # The chart and an operator run without a config file must place work identically.
    from roboaug.operator.config import parse_config

    chart = _operator_config(render())
    bare = parse_config({})
    for name in ("cpu", "gpu"):
        a, b = chart.pools[name], bare.pools[name]
        assert a.node_selector == b.node_selector, name
        assert a.tolerations == b.tolerations, name
        assert a.resources == b.resources, name
        assert a.instance_type == b.instance_type, name
        assert a.active_deadline_seconds == b.active_deadline_seconds is not None, name
    assert chart.routing == bare.routing


@pytest.mark.parametrize("toggle", TOGGLES, ids=[t.id for t in TOGGLES])
def test_configmap_parses_with_every_toggle(render, toggle):
    _operator_config(render(with_namespace(toggle.values, NS)))
