"""Chart side of webhooks and of the people's job RBAC (issue 15 items 7-8): the operator may
`get` only the Secret names in webhooks.secretNames (nothing when empty), the webhook values reach
the operator's config, a project's notifySecret reaches its CR, and AugmentationJobs are
aggregated into the built-in edit/view/admin roles."""
from __future__ import annotations

import yaml

NS = "roboaug"
AGG = "rbac.authorization.k8s.io/aggregate-to-"


def _config(docs):
    from roboaug.operator.config import parse_config

    return parse_config(yaml.safe_load(docs.get("ConfigMap", "roboaug-operator")["data"]["config.yaml"]))


def _secret_rules(docs):
    return [(d["metadata"]["name"], r) for d in docs.of("ClusterRole") + docs.of("Role")
            for r in d.get("rules", []) if "secrets" in r.get("resources", [])]


def test_operator_reads_only_the_listed_secret_names(render):
    docs = render()
    [(name, rule)] = _secret_rules(docs)
    assert rule == {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["roboaug-webhook"],
                    "verbs": ["get"]}
    binding = docs.get("ClusterRoleBinding", name)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "roboaug-operator", "namespace": NS}]
    cfg = _config(docs).webhooks
    assert cfg.secret_names == ["roboaug-webhook"] and cfg.allow_http_hosts == [] and cfg.enabled


def test_secret_access_follows_the_values(render):
    docs = render({"webhooks": {"secretNames": ["hooks-a", "hooks-b"], "allowHttpHosts": ["receiver.team-a"],
                                "maxAttempts": 3, "backoffSeconds": 2.5},
                   "watchNamespaces": ["team-a", NS]})
    [(name, rule)] = _secret_rules(docs)
    assert rule["resourceNames"] == ["hooks-a", "hooks-b"] and rule["verbs"] == ["get"]
    assert {b["metadata"]["namespace"] for b in docs.of("RoleBinding") if b["metadata"]["name"] == name} \
        == {"team-a", NS}
    assert not [b for b in docs.of("ClusterRoleBinding") if b["metadata"]["name"] == name]
    cfg = _config(docs).webhooks
    assert (cfg.secret_names, cfg.allow_http_hosts, cfg.max_attempts, cfg.backoff_seconds) == \
        (["hooks-a", "hooks-b"], ["receiver.team-a"], 3, 2.5)
    for off in ({"webhooks": {"secretNames": []}}, {"webhooks": {"enabled": False}}):
        assert _secret_rules(render(off)) == []


def test_project_notify_secret_reaches_the_cr(render):
    pid = "3f9c1e2a-7b4d-4e8f-9a6b-1c2d3e4f5a6b"
    docs = render({"projects": {"items": [{"id": pid, "allowedSources": ["*"], "allowedOutputs": ["*"],
                                           "notifySecret": {"name": "roboaug-webhook", "key": "secret"},
                                           "defaults": {"notify_url": "https://hooks.example/roboaug"}}]}})
    spec = docs.get("AugmentationProject", pid)["spec"]
    from roboaug.api.models.project import AugmentationProjectSpec
    parsed = AugmentationProjectSpec.model_validate(spec)
    assert parsed.notify_secret.name == "roboaug-webhook" and parsed.defaults.notify_url.startswith("https://")


def test_jobs_are_aggregated_into_edit_view_and_admin(render):
    docs = render()
    editor = docs.get("ClusterRole", "roboaug-job-editor")
    viewer = docs.get("ClusterRole", "roboaug-job-viewer")
    assert editor["metadata"]["labels"][AGG + "edit"] == "true" == editor["metadata"]["labels"][AGG + "admin"]
    assert viewer["metadata"]["labels"][AGG + "view"] == "true"
    [rule] = editor["rules"]
    assert rule["resources"] == ["augmentationjobs"] and {"create", "patch", "delete"} <= set(rule["verbs"])
    [rule] = viewer["rules"]
    assert set(rule["verbs"]) == {"get", "list", "watch"}
    # Nobody but the operator writes status; projects are never aggregated into edit.
    for role in docs.of("ClusterRole"):
        labels = role["metadata"].get("labels") or {}
        if any(k.startswith(AGG) for k in labels):
            for r in role["rules"]:
                assert "augmentationjobs/status" not in r["resources"] or set(r["verbs"]) <= {"get", "list", "watch"}
                assert "secrets" not in r["resources"]
                if "augmentationprojects" in r["resources"] and set(r["verbs"]) - {"get", "list", "watch"}:
                    assert AGG + "edit" not in labels
    off = render({"jobRbac": {"aggregateToEdit": False, "aggregateToView": False}})
    for name in ("roboaug-job-editor", "roboaug-job-viewer"):
        assert not any(k.startswith(AGG) for k in off.get("ClusterRole", name)["metadata"]["labels"])
