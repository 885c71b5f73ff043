"""A sharded job's later stages publish with the project's Hub token, as its shards did.

The finalize Job is made while the shards' Job exists, when the controller does not read the
project; it must mount the Secret the shards mounted, not the deployment's default token.
"""
from dataclasses import replace

from roboaug.api.contract import HF_TOKEN
from roboaug.operator.config import parse_config
from roboaug.operator.observe import summarize_job

from tests.operator._operator_factories import CPU_NODE, applied, cr, decide_checked, pod

CFG = parse_config({"backoff_limit": 2, "pending_timeout_seconds": 60, "routing": {"deterministic": "cpu"},
                    "hub_token_secret": {"name": "deployment-hf", "key": "token"}})
TEAM = {"metadata": {"name": "p"}, "spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"],
                                             "hub_token_secret": {"name": "team-b-hf", "key": "hf"}}}


def token_of(body):
    env = body["spec"]["template"]["spec"]["containers"][0]["env"]
    return [e["valueFrom"]["secretKeyRef"] for e in env if e["name"] == HF_TOKEN.name]


def test_the_finalize_job_mounts_the_token_its_shards_mounted():
    c = cr(spec={"shards": 3})
    plan = decide_checked(c, CFG, 1.0, project=TEAM)
    shards_body = plan.create_job
    assert token_of(shards_body) == [{"name": "team-b-hf", "key": "hf"}]
    c = applied(c, plan)
    # the shards' Job as the watch shows it (the rendered body, read back), now complete
    seen = summarize_job({**shards_body, "metadata": {**shards_body["metadata"], "uid": "job-uid-1",
                                                        "ownerReferences": [{"controller": True,
                                                                             "uid": c["metadata"]["uid"]}]},
                          "status": {"succeeded": 3, "conditions": [{"type": "Complete", "status": "True"}]}})
    assert seen.hub_token == ("team-b-hf", "hf")
    done = [replace(pod(name=f"aug-demo-worker-{i}-x", phase="Succeeded", node="cpu-0"), index=i) for i in range(3)]
    fin = decide_checked(c, CFG, 2.0, job=seen, pods=done, node_labels=CPU_NODE).create_job
    assert fin["metadata"]["name"] == "aug-demo-finalize"
    assert token_of(fin) == [{"name": "team-b-hf", "key": "hf"}]


def test_without_a_project_every_stage_mounts_the_deployments_token():
    c = cr(spec={"shards": 2})
    plan = decide_checked(c, CFG, 1.0)
    assert token_of(plan.create_job) == [{"name": "deployment-hf", "key": "token"}]
    seen = summarize_job({**plan.create_job, "metadata": {**plan.create_job["metadata"], "uid": "job-uid-1",
                                                            "ownerReferences": [{"controller": True,
                                                                                 "uid": c["metadata"]["uid"]}]},
                          "status": {"succeeded": 2, "conditions": [{"type": "Complete", "status": "True"}]}})
    c = applied(c, plan)
    done = [replace(pod(name=f"aug-demo-worker-{i}-x", phase="Succeeded", node="cpu-0"), index=i) for i in range(2)]
    fin = decide_checked(c, CFG, 2.0, job=seen, pods=done, node_labels=CPU_NODE).create_job
    assert token_of(fin) == [{"name": "deployment-hf", "key": "token"}]
