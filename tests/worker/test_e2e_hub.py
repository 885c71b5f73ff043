"""Hub dataset in, Hub dataset out: the worker command against the local Hub test server
(devstack/hubserver), the result downloaded again and verified by the independent checker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


from roboaug.devstack.hubserver import WRITE_TOKEN  # noqa: E402
from roboaug.devstack.hubserver.fixtures import hub_env, local_hub, local_hub_session  # noqa: E402,F401

from tests.worker import checker
from roboaug.devstack import synthetic as fixtures
from tests.worker.helpers import JOB, PROJECT  # noqa: E402
from roboaug.api.models import DatasetRef, default_output_dataset_id  # noqa: E402
from roboaug.worker import hub  # noqa: E402


def test_hub_to_hub_in_one_commit(local_hub, tmp_path):
    src = fixtures.make_lerobot(tmp_path / "src", "v2.1", lengths=(6, 8))
    hub.upload(src, "roboaug-test/e2e-src", WRITE_TOKEN, "source")
    spec = {"project_id": PROJECT, "job_id": JOB, "dataset_id": "roboaug-test/e2e-src",
            "augment_transforms": "lighting,noise", "augment_copies": 1}
    env = hub_env(local_hub, str(tmp_path / "hf_home"), HF_TOKEN=WRITE_TOKEN, ROBOAUG_WORKDIR=str(tmp_path / "wd"))
    res = subprocess.run([sys.executable, "-m", "roboaug.worker", "--spec", json.dumps(spec), "--processes", "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert WRITE_TOKEN not in res.stdout + res.stderr
    out_id = default_output_dataset_id("roboaug-test/e2e-src", JOB)
    done = json.loads(res.stdout.strip().splitlines()[-1])
    assert done["output_dataset_id"] == out_id and done["commit"]
    phases = [json.loads(l)["phase"] for l in res.stdout.splitlines() if '"event": "progress"' in l]
    assert phases[0] == "downloading" and "augmenting" in phases and phases[-1] == "uploading"
    got = hub.download(DatasetRef.parse(f"hf://{out_id}@{done['commit']}"), tmp_path / "dl", None)
    report = checker.check_lerobot(got)
    assert report["episodes"] == 4
    assert not (tmp_path / "wd" / "output").exists()  # the staging folder is gone after upload
