"""The automatic shard plan through the real stack (issue 16, automatic path): the one pod the
operator starts for a job that leaves `shards` unset reads the source's metadata, finds it over
its pool's threshold (`frames_per_shard`, set small here), exits SHARD_PLAN with the plan as its
last line; the operator replaces it by the Indexed Job of that many shards, then the finalize
pod publishes one dataset and the staging branch is gone. Real worker pods (dev node agent),
real test Hub."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e._stack import e2e_stack, wait_for

from roboaug.api.models import GROUP, TERMINAL_STATUSES, VERSION

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

SOURCE = "lerobot/pusht-units"
FRAMES_PER_SHARD = 30


@pytest.fixture(scope="module")
def stack(cluster, crd):
    with e2e_stack(cluster) as s:
        # the stack's own pool, with a threshold a 3 x 30-frame dataset passes (twice over)
        pools = s.operator_config()["pools"]
        s.operator_overrides = {"pools": {**pools, "local": {**pools["local"], "frames_per_shard": FRAMES_PER_SHARD}}}
        s.restart_operator()
        # the sample dataset with a unit per episode (no two episodes share an output file)
        sample = s.work_dir / "sample-pusht"
        files = {str(p.relative_to(sample)): p.read_bytes() for p in sorted(sample.rglob("*")) if p.is_file()}
        info = json.loads(files["meta/info.json"])
        info["video_files_size_in_mb"] = 0
        files["meta/info.json"] = json.dumps(info, indent=4).encode()
        s.hub.seed(SOURCE, files)
        yield s


def test_a_job_over_its_pools_threshold_plans_shards_and_runs_them(stack):
    name = f"auto-{uuid.uuid4().hex[:6]}"
    cr = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AugmentationJob", "metadata": {"name": name},
          "spec": {"project_id": str(uuid.uuid4()), "dataset_id": SOURCE,
                   "augment_transforms": "lighting", "augment_copies": 1}}
    stack.kubectl("apply", "-n", stack.namespace, "-f", "-", input=json.dumps(cr))
    status = wait_for(lambda: (s := stack.get_job(name).get("status") or {}).get("status") in TERMINAL_STATUSES and s,
                      600, "the job to finish", interval=1.0)
    assert status["status"] == "completed", status.get("error")
    shards = status["shards"]
    # the work is the augmented frames: 3 episodes x 30 frames x 1 copy = 90, 3 shards of 30, a unit each
    assert (shards["source"], shards["count"], shards["done"], shards["stage"]) == ("auto", 3, 3, "finalize")
    events = [e for ph in status["phases"] for e in ph["events"]]
    [planned] = [e for e in events if e["status"] == "sharded"]
    assert (planned["data"]["shards"], planned["data"]["units"], planned["data"]["frames"]) == (3, 3, 90)
    assert status.get("attempt", 0) == 0  # the plan is not a retry
    out = status["augmented_dataset_id"]
    branches = stack.hub.store.branches("dataset", out)
    assert set(branches) == {"main"}  # the staging branch went with the publish
    published = json.loads(stack.hub.store.snapshot("dataset", out, "main")["meta/info.json"])
    assert (published["total_episodes"], published["total_frames"]) == (6, 180)
