"""The worker contract (roboaug.api.contract): the operator's rendered env and the worker's parser
agree, nothing is set that nothing reads, exit codes and the error line round-trip, and the phase
sets derive from the enums."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from roboaug.api import contract
from roboaug.api.contract import (
    ATTEMPT,
    JOB_INDEX_FAILURE_COUNT,
    LIBRARY_ENV,
    MAX_FRAMES,
    PERMANENT_EXIT_CODES,
    RESERVED_ENV,
    SPEC_DIR,
    SPEC_FILE,
    SPEC_PATH,
    VARIABLES,
    ContractError,
    ExitCode,
    WorkerEnv,
    error_line,
    find_error_line,
    render_env,
)
from roboaug.api.models import PHASE_ORDER, TERMINAL_STATUSES, WORKER_PHASES, AugmentationJobSpec, PhaseName
from roboaug.api.models.spec import SecretKeyRef

REPO = Path(__file__).resolve().parents[2]
WORKER_SRC = REPO / "worker" / "src" / "roboaug" / "worker"
OPERATOR_SRC = REPO / "operator" / "src" / "roboaug" / "operator"


def kubelet(env: list[dict], pod: dict, secrets: dict) -> dict[str, str]:
    """What the container sees: values as given, downward-API fields and Secret keys resolved
    (a missing annotation reads as an empty string, as the kubelet does)."""
    out: dict[str, str] = {}
    for e in env:
        if "value" in e:
            out[e["name"]] = e["value"]
            continue
        source = e["valueFrom"]
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            m = re.fullmatch(r"metadata\.annotations\['(.+)'\]", path)
            out[e["name"]] = pod["annotations"].get(m.group(1), "") if m else {"metadata.name": pod["name"]}[path]
        else:
            ref = source["secretKeyRef"]
            out[e["name"]] = secrets[ref["name"]][ref["key"]]
    return out


def rendered(extra=None, token=SecretKeyRef(name="hf", key="tok"), max_frames=None) -> list[dict]:
    return render_env(job_id="j-1", cr_name="aug-x", cr_namespace="ns",
                      hub_token=token, library={"HF_HOME": "/scratch/hf", "TMPDIR": "/tmp"}, extra=extra or {},
                      max_frames=max_frames)


def mount_spec(job: dict, root: Path) -> Path:
    """What the kubelet does with the Job's spec volume: the pod's annotation (from the Job's
    template) that the downward API item names, as a file under the container's (read-only)
    mount; the file's path on this machine."""
    pod = job["spec"]["template"]["spec"]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == SPEC_DIR]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert mount.get("readOnly") is True
    [item] = volume["downwardAPI"]["items"]
    key = re.fullmatch(r"metadata\.annotations\['(.+)'\]", item["fieldRef"]["fieldPath"]).group(1)
    path = root / item["path"]
    path.write_text(job["spec"]["template"]["metadata"]["annotations"][key])
    assert f"{SPEC_DIR}/{item['path']}" == SPEC_PATH
    return path


def test_rendered_env_parses_back_to_the_same_values():
    pod = {"name": "aug-x-worker-0-abcde", "annotations": {JOB_INDEX_FAILURE_COUNT: "2"}}
    seen = WorkerEnv.parse(kubelet(rendered(), pod, {"hf": {"tok": "hf_secret"}}))
    assert seen == WorkerEnv(spec_file=SPEC_PATH, job_id="j-1", cr_name="aug-x", cr_namespace="ns",
                             pod_name="aug-x-worker-0-abcde", attempt=2, hub_token="hf_secret")
    # Kubernetes without the annotation (JobBackoffLimitPerIndex off): the first attempt
    assert WorkerEnv.parse(kubelet(rendered(token=None), {**pod, "annotations": {}}, {})).attempt == 0


def test_the_frame_limit_round_trips_and_is_absent_without_one():
    pod = {"name": "p", "annotations": {}}
    assert WorkerEnv.parse(kubelet(rendered(token=None, max_frames=1200), pod, {})).max_frames == 1200
    assert MAX_FRAMES.name not in {e["name"] for e in rendered()}
    assert WorkerEnv.parse(kubelet(rendered(token=None), pod, {})).max_frames is None


@pytest.mark.parametrize("raw", ["0", "-5", "many", "1.5"])
def test_the_frame_limit_must_be_a_positive_count(raw):
    with pytest.raises(ContractError, match=f"ROBOAUG_MAX_FRAMES must be an integer >= 1, got '{re.escape(raw)}'"):
        WorkerEnv.parse({MAX_FRAMES.name: raw})
    if raw.lstrip("-").isdigit():  # the operator cannot render one either
        with pytest.raises(ContractError, match="ROBOAUG_MAX_FRAMES must be an integer >= 1"):
            rendered(max_frames=int(raw))


def test_attempt_must_be_a_count():
    with pytest.raises(ContractError, match="ROBOAUG_ATTEMPT must be an integer >= 0, got '-1'"):
        WorkerEnv.parse({ATTEMPT.name: "-1"})


def test_extra_env_cannot_take_a_reserved_name():
    with pytest.raises(ContractError, match="ROBOAUG_ATTEMPT is set by the operator"):
        rendered(extra={"ROBOAUG_ATTEMPT": "5"})
    with pytest.raises(ContractError, match="NOT_DECLARED not declared"):
        render_env(job_id="j", cr_name="c", cr_namespace="n", hub_token=None,
                   library={"NOT_DECLARED": "x"}, extra={})


class Recording(dict):
    """An environment that remembers which names were looked up."""

    def __init__(self, *a):
        super().__init__(*a)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


def test_every_name_the_operator_sets_is_read(tmp_path):
    """The operator's real Job; the worker's real entry (`worker_env`, `load_spec`): a variable
    only the operator knows about fails here (ROBOAUG_OUTPUT_DATASET_ID, ROBOAUG_NODE_NAME did).
    The spec reaches the worker as the file the Job mounts from its pods' annotation."""
    from roboaug.operator.config import parse_config
    from roboaug.operator.jobs import render_job
    from roboaug.operator.pools import select_pool
    from roboaug.worker.__main__ import load_spec, worker_env

    cfg = parse_config({"worker_env": {"HF_ENDPOINT": "http://mirror"}})
    cr = {"metadata": {"name": "aug-x", "namespace": "ns", "uid": "u-1"},
          "spec": {"project_id": "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0", "dataset_id": "lerobot/pusht"}}
    spec = AugmentationJobSpec.model_validate(cr["spec"])
    job = render_job(cr, spec, "0d8c4a3e-0000-4000-8000-000000000000", cfg, select_pool(cfg, spec.augmentation_type),
                     max_frames=5000)
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    pod = {"name": "aug-x-worker-0-abcde", "annotations": {JOB_INDEX_FAILURE_COUNT: "1"}}
    seen = Recording(kubelet(env, pod, {"roboaug-hf-token": {"token": "hf_x"}}))
    # the kubelet's part: the annotation as a file where the mount puts it
    assert seen[SPEC_FILE.name] == SPEC_PATH
    mounted = mount_spec(job, tmp_path)
    seen[SPEC_FILE.name] = str(mounted)
    wenv = worker_env(seen)
    got = load_spec(argparse.Namespace(spec_file=None, spec=None), wenv)
    assert got.output_dataset_id == "lerobot/pusht-augmented-0d8c4a3e"
    unread = {e["name"] for e in env} - seen.read - set(LIBRARY_ENV) - set(cfg.worker_env)
    assert unread == set()
    assert wenv.attempt == 1 and wenv.pod_name == "aug-x-worker-0-abcde" and wenv.hub_token == "hf_x"
    assert wenv.max_frames == 5000


def test_the_worker_writes_the_output_id_the_operator_computed():
    from roboaug.operator.jobs import output_dataset_id, worker_spec_json
    from roboaug.worker.__main__ import load_spec

    spec = AugmentationJobSpec.model_validate(
        {"project_id": "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0", "dataset_id": "lerobot/pusht"})
    job_id = "7d0f5a52-0000-4000-8000-000000000000"
    got = load_spec(argparse.Namespace(spec_file=None, spec=worker_spec_json(spec, job_id)), WorkerEnv())
    # the worker's rule is `spec.output_dataset_id or <naming rule>(its own job id)`: a set field wins
    assert got.output_dataset_id == output_dataset_id(spec, job_id) == "lerobot/pusht-augmented-7d0f5a52"


def test_every_worker_variable_name_is_declared():
    """Modules that read a knob directly (pipeline, video) must name a declared variable. The
    preview service is another program (its settings, ROBOAUG_PREVIEW_*, are its own: the chart
    test checks those against preview_server)."""
    declared = {v.name for v in VARIABLES}
    spelled = {name for path in WORKER_SRC.rglob("*.py") if path.name != "preview_server.py"
               for name in re.findall(r"\bROBOAUG_[A-Z0-9_]+\b", path.read_text())}
    assert spelled - declared == set()


def test_the_operator_spells_no_worker_variable():
    names = {v.name for v in VARIABLES}
    for path in OPERATOR_SRC.rglob("*.py"):
        text = path.read_text()
        assert not [n for n in names if re.search(rf"[\"']{n}[\"']", text)], path


def test_reserved_names():
    assert RESERVED_ENV == {"ROBOAUG_SPEC_FILE", "ROBOAUG_JOB_ID", "ROBOAUG_CR_NAME", "ROBOAUG_CR_NAMESPACE",
                            "ROBOAUG_POD_NAME", "ROBOAUG_ATTEMPT", "HF_TOKEN", "ROBOAUG_MAX_FRAMES",
                            "ROBOAUG_STAGE", "ROBOAUG_SHARDS", "JOB_COMPLETION_INDEX", "ROBOAUG_MAX_SHARDS",
                            "ROBOAUG_FRAMES_PER_SHARD"}
    sharded = render_env(job_id="j-1", cr_name="aug-x", cr_namespace="ns", hub_token=SecretKeyRef(name="hf", key="t"),
                         library=LIBRARY_ENV, extra={}, max_frames=10, stage="shard", shards=3, max_shards=5,
                         frames_per_shard=100)
    # the plan's cap goes to the single stage only, the one that plans (a shard's count is fixed)
    single = render_env(job_id="j-1", cr_name="aug-x", cr_namespace="ns", hub_token=SecretKeyRef(name="hf", key="t"),
                        library=LIBRARY_ENV, extra={}, max_frames=10, max_shards=5, frames_per_shard=100)
    assert {e["name"] for e in sharded} - set(LIBRARY_ENV) == RESERVED_ENV - contract.KUBERNETES_ENV - {
        contract.SHARDS_LIMIT.name, contract.FRAMES_PER_SHARD.name}
    assert {e["name"] for e in single} - set(LIBRARY_ENV) == RESERVED_ENV - contract.KUBERNETES_ENV - {
        contract.SHARDS.name, contract.STAGE.name}


@pytest.mark.parametrize("code", list(ExitCode), ids=lambda c: c.name)
def test_error_line_round_trip(code):
    line = error_line(code, "lerobot/nope: not found [404]")
    assert line == f"roboaug-worker: error[{int(code)} {code.name.lower()}]: lerobot/nope: not found [404]"
    found = find_error_line("2026-01-01T00:00:00Z stderr F " + line)
    assert (found.code, found.name, found.cause, found.text) == (int(code), code.name.lower(),
                                                                 "lerobot/nope: not found [404]", line)


def test_error_line_parser_ignores_other_lines():
    assert find_error_line("roboaug-worker: downloading") is None
    assert find_error_line("error[10 dataset_not_found]: no prefix") is None


def test_exit_code_classes():
    assert {c.name for c in ExitCode if c in PERMANENT_EXIT_CODES} == {
        "DATASET_NOT_FOUND", "UNSUPPORTED_FORMAT", "CORRUPT_VIDEO", "NO_CAMERA_FEATURE", "AUTH", "INVALID_SPEC"}
    # a plan is neither a failure nor retried
    assert contract.is_shard_plan(ExitCode.SHARD_PLAN) and not contract.is_permanent(ExitCode.SHARD_PLAN)
    assert not contract.is_shard_plan(0) and not contract.is_shard_plan(None)
    assert contract.is_permanent(10) and not contract.is_permanent(75) and not contract.is_permanent(None)
    assert not contract.is_permanent(137)  # OOM-killed: retried


def test_phase_sets_derive_from_the_enum():
    assert PHASE_ORDER == ("queued", "scheduling", "downloading", "augmenting", "uploading", "completed")
    assert WORKER_PHASES == ("downloading", "augmenting", "uploading")
    assert {s.value for s in TERMINAL_STATUSES} == set(contract.TERMINAL_PHASES) == {"completed", "failed", "cancelled"}
    # every phase is in exactly one of: before the worker, the worker's, terminal
    parts = contract.QUEUED_PHASES + WORKER_PHASES + contract.TERMINAL_PHASES
    assert sorted(parts) == sorted(p.value for p in PhaseName)
