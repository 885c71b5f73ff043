"""Rendering the worker's batch/v1 Job, without a cluster."""
import json

from roboaug.api.contract import PERMANENT_EXIT_CODES, JOB_INDEX_FAILURE_COUNT, SPEC_ANNOTATION, SPEC_DIR, SPEC_FILE, SPEC_KEY
from roboaug.api.models import AugmentationJobSpec
from roboaug.operator.config import parse_config
from roboaug.operator.jobs import job_name, render_job, worker_spec_json
from roboaug.operator.pools import select_pool

from tests.operator._operator_factories import CR_UID, JOB_ID, PROJECT, cr


def render(spec=None, config=None, name="aug-demo"):
    c = cr(name=name, spec=spec)
    cfg = parse_config(config or {})
    s = AugmentationJobSpec.model_validate(c["spec"])
    return render_job(c, s, JOB_ID, cfg, select_pool(cfg, s.augmentation_type))


def env_of(job):
    return {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_name_is_deterministic_and_fits_a_label():
    assert job_name("aug-demo") == "aug-demo-worker"
    long = "a" * 100 + ".b"
    assert job_name(long) == job_name(long)
    # 63 is the limit of a label value and of the pods' host name `<job-name>-0` (Indexed Job)
    assert len(job_name(long) + "-0") <= 63 and job_name(long).endswith("-worker")
    assert job_name("a" * 54) == "a" * 54 + "-worker"  # the longest name kept as is, and one more
    assert len(job_name("a" * 55) + "-0") <= 63 and job_name("a" * 55) != "a" * 55 + "-worker"
    assert job_name("a" * 100 + "x") != job_name("a" * 100 + "y")  # hash keeps them apart
    gw = "aug-" + JOB_ID
    assert job_name(gw) == gw + "-worker"


def test_owner_labels_and_policy():
    j = render()
    meta = j["metadata"]
    assert meta["name"] == "aug-demo-worker" and meta["namespace"] == "ns1"
    assert meta["ownerReferences"] == [{
        "apiVersion": "roboaug.dev/v1alpha1", "kind": "AugmentationJob", "name": "aug-demo",
        "uid": CR_UID, "controller": True, "blockOwnerDeletion": True}]
    for labels in (meta["labels"], j["spec"]["template"]["metadata"]["labels"]):
        assert labels["roboaug.dev/job-id"] == JOB_ID
        assert labels["roboaug.dev/project-id"] == PROJECT
        assert labels["app.kubernetes.io/managed-by"] == "roboaug-operator"
    spec = j["spec"]
    assert spec["backoffLimit"] == 3 and spec["ttlSecondsAfterFinished"] == 86400
    # one Indexed pod at a time, so the job controller writes each pod's attempt number
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 1, 1)
    assert spec["backoffLimitPerIndex"] == spec["backoffLimit"]
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob"
    # permanent codes, and a one-pod run's shard plan (not retried: the operator runs the plan)
    assert set(rules[0]["onExitCodes"]["values"]) == {int(c) for c in PERMANENT_EXIT_CODES} | {20}
    assert rules[0]["onExitCodes"]["containerName"] == "worker"
    assert rules[1] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}


def test_pod_template_security_and_command():
    pod = render()["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "roboaug-worker"  # the namespace's workers' (access.py)
    assert "imagePullSecrets" not in pod
    pulled = render(config={"image_pull_secrets": ["regcred"]})["spec"]["template"]["spec"]
    assert pulled["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = pod["containers"][0]
    assert c["command"] == ["python", "-m", "roboaug.worker"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/scratch", "/tmp"} <= mounts
    assert {v["name"] for v in pod["volumes"]} == {"scratch", "tmp", "spec"}
    assert all("emptyDir" in v for v in pod["volumes"] if v["name"] != "spec")


def mounted_spec(spec=None) -> dict:
    """The spec the worker reads: the file its pod mounts from its own annotation (downward API)."""
    job = render(spec=spec)
    pod = job["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if "downwardAPI" in v]
    assert volume["downwardAPI"] == {
        "defaultMode": 0o444,
        "items": [{"path": SPEC_KEY, "fieldRef": {"fieldPath": f"metadata.annotations['{SPEC_ANNOTATION}']"}}]}
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    assert mount == {"name": volume["name"], "mountPath": SPEC_DIR, "readOnly": True}
    assert env_of(job)[SPEC_FILE.name]["value"] == f"{SPEC_DIR}/{SPEC_KEY}"
    return json.loads(job["spec"]["template"]["metadata"]["annotations"][SPEC_ANNOTATION])


def test_the_spec_rides_in_the_pods_annotation_as_a_file_not_an_env_var():
    j = render()
    names = [e["name"] for e in j["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert "ROBOAUG_SPEC" not in names
    # a spec past Linux's 128 KiB for one environment string would never start as env
    assert all(len(e.get("value", "")) < 1024 for e in j["spec"]["template"]["spec"]["containers"][0]["env"])
    # in the pods' template only: the Job's own annotations do not repeat it
    assert SPEC_ANNOTATION not in j["metadata"]["annotations"]
    assert mounted_spec()["dataset_id"] == "lerobot/pusht"


def test_env_carries_spec_and_token_only_by_reference():
    j = render(spec={"hub_token_secret": {"name": "my-hf", "key": "tok"}})
    env = env_of(j)
    spec = mounted_spec({"hub_token_secret": {"name": "my-hf", "key": "tok"}})
    assert spec["dataset_id"] == "lerobot/pusht" and spec["augment_copies"] == 3
    assert "cancel_requested" not in spec
    assert env["ROBOAUG_JOB_ID"]["value"] == JOB_ID
    assert env["ROBOAUG_CR_NAME"]["value"] == "aug-demo"
    assert env["ROBOAUG_CR_NAMESPACE"]["value"] == "ns1"
    # the output id travels in the spec the worker runs, not beside it
    assert spec["output_dataset_id"] == "lerobot/pusht-augmented-7d0f5a52"
    assert "ROBOAUG_OUTPUT_DATASET_ID" not in env and "ROBOAUG_NODE_NAME" not in env
    assert env["ROBOAUG_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["ROBOAUG_ATTEMPT"]["valueFrom"] == {
        "fieldRef": {"fieldPath": f"metadata.annotations['{JOB_INDEX_FAILURE_COUNT}']"}}
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "my-hf", "key": "tok"}}}
    assert all("value" not in e or e["name"] != "HF_TOKEN" for e in env.values())


def test_default_token_secret_and_none():
    assert env_of(render())["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "roboaug-hf-token", "key": "token"}
    assert "HF_TOKEN" not in env_of(render(config={"hub_token_secret": None}))


def test_pool_placement_and_extras():
    cfg = {"pools": {"cpu": {"node_selector": {"roboaug.dev/pool": "cpu"}, "image": "reg/w:1",
                             "pod_labels": {"team": "x"}, "pod_annotations": {"a": "b"},
                             "resources": {"requests": {"cpu": 1}}},
                     "gpu": {"node_selector": {"roboaug.dev/pool": "gpu"},
                             "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                             "resources": {"limits": {"nvidia.com/gpu": 1}}}},
           "worker_env": {"LOG_LEVEL": "debug"}}
    j = render(config=cfg)
    tpl = j["spec"]["template"]
    assert tpl["spec"]["nodeSelector"] == {"roboaug.dev/pool": "cpu"}
    assert tpl["spec"]["containers"][0]["image"] == "reg/w:1"
    assert tpl["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "1"}}
    assert tpl["metadata"]["labels"]["team"] == "x" and tpl["metadata"]["annotations"]["a"] == "b"
    assert env_of(j)["LOG_LEVEL"]["value"] == "debug"
    gpu_cfg = parse_config(cfg)
    from roboaug.operator.pools import PoolChoice
    c = cr()
    s = AugmentationJobSpec.model_validate(c["spec"])
    g = render_job(c, s, JOB_ID, gpu_cfg, PoolChoice("gpu", gpu_cfg.pools["gpu"]))
    gspec = g["spec"]["template"]["spec"]
    assert gspec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert gspec["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}


def test_pod_labels_cannot_override_ours():
    j = render(config={"pools": {"cpu": {"pod_labels": {"roboaug.dev/job-id": "spoof"}}},
                       "routing": {"deterministic": "cpu"}})
    assert j["spec"]["template"]["metadata"]["labels"]["roboaug.dev/job-id"] == JOB_ID


def test_worker_spec_json_is_stable():
    s = AugmentationJobSpec.model_validate(cr()["spec"])
    assert worker_spec_json(s, JOB_ID) == worker_spec_json(AugmentationJobSpec.model_validate(cr()["spec"]), JOB_ID)


def test_worker_spec_keeps_an_output_override():
    spec = mounted_spec({"output_dataset_id": "me/mine"})
    assert spec["output_dataset_id"] == "me/mine"


def test_the_projects_token_secret_wins_over_the_specs_and_the_configs():
    from roboaug.api.models import SecretKeyRef
    c = cr(spec={"hub_token_secret": {"name": "other-team-hf", "key": "tok"}})
    spec = AugmentationJobSpec.model_validate(c["spec"])
    config = parse_config({})
    ref = SecretKeyRef(name="team-b-hf", key="token")
    job = render_job(c, spec, JOB_ID, config, select_pool(config, spec.augmentation_type), ref)
    assert env_of(job)["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "team-b-hf", "key": "token"}
    # without a project token: the spec's, as before
    job = render_job(c, spec, JOB_ID, config, select_pool(config, spec.augmentation_type))
    assert env_of(job)["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "other-team-hf", "key": "tok"}


def test_the_projects_frame_limit_reaches_the_worker_env():
    c = cr()
    spec = AugmentationJobSpec.model_validate(c["spec"])
    config = parse_config({})
    job = render_job(c, spec, JOB_ID, config, select_pool(config, spec.augmentation_type), max_frames=12000)
    assert env_of(job)["ROBOAUG_MAX_FRAMES"] == {"name": "ROBOAUG_MAX_FRAMES", "value": "12000"}
    # no project limit: no variable (the worker then has no ceiling)
    assert "ROBOAUG_MAX_FRAMES" not in env_of(render())
