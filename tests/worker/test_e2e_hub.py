"""Hub dataset in, Hub dataset out: the worker command against the local Hub test server
(devstack/hubserver), the result downloaded again and verified by the independent checker; the
source pinned to a commit, the output private and tagged, both revisions reported; and the same
request with the same seed against a pinned source sha giving the same bytes."""

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

OTHER_JOB = "22222222-2222-4222-8222-222222222222"


def _run(local_hub, tmp_path: Path, spec: dict, name: str) -> tuple[dict, list[dict]]:
    """Run the worker command; (its `done` line, its progress reports)."""
    env = hub_env(local_hub, str(tmp_path / f"hf_home_{name}"), HF_TOKEN=WRITE_TOKEN,
                  ROBOAUG_WORKDIR=str(tmp_path / f"wd_{name}"))
    res = subprocess.run([sys.executable, "-m", "roboaug.worker", "--spec", json.dumps(spec), "--processes", "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert WRITE_TOKEN not in res.stdout + res.stderr
    lines = [json.loads(line) for line in res.stdout.strip().splitlines() if line.startswith("{")]
    return lines[-1], [line for line in lines if line.get("event") == "progress"]


def test_hub_to_hub_in_one_commit(local_hub, tmp_path):
    src = fixtures.make_lerobot(tmp_path / "src", "v2.1", lengths=(6, 8))
    src_sha = hub.upload(src, "roboaug-test/e2e-src", WRITE_TOKEN, "source", private=False)
    local_hub.reset()
    spec = {"project_id": PROJECT, "job_id": JOB, "dataset_id": "roboaug-test/e2e-src",
            "augment_transforms": "lighting,noise", "augment_copies": 1}
    done, progress = _run(local_hub, tmp_path, spec, "a")
    out_id = default_output_dataset_id("roboaug-test/e2e-src", JOB)
    assert done["output_dataset_id"] == out_id and done["commit"]
    phases = [p["phase"] for p in progress]
    assert phases[0] == "downloading" and "augmenting" in phases and phases[-1] == "uploading"
    # both revisions are reported: the source commit read, the output commit written
    assert progress[-1]["source_revision"] == src_sha
    assert progress[-1]["augmented_dataset_revision"] == done["commit"]
    assert any(p["phase"] == "downloading" and p.get("source_revision") == src_sha for p in progress)
    reads = local_hub.requests("GET", r"^/datasets/roboaug-test/e2e-src/resolve/")
    infos = [r.path.rsplit("/", 1)[-1] for r in local_hub.requests("GET", r"^/api/datasets/roboaug-test/e2e-src/revision/")]
    assert infos == ["main"]  # resolved once, by the worker; the snapshot asked for that commit itself
    assert reads and all(f"/resolve/{src_sha}/" in r.path for r in reads)  # exactly the pinned commit
    store = local_hub.store
    assert store.is_private("dataset", out_id)  # private by default, though the source is public
    assert store.tags("dataset", out_id) == {"v2.1": done["commit"]}  # the codebase_version tag
    got = hub.download(DatasetRef.parse(f"hf://{out_id}@{done['commit']}"), tmp_path / "dl", WRITE_TOKEN)
    report = checker.check_lerobot(got)
    assert report["episodes"] == 4
    provenance = json.loads((got / "meta/augmentation.json").read_text())
    assert provenance["source_dataset"] == f"hf://roboaug-test/e2e-src@{src_sha}"
    assert not (tmp_path / "wd_a" / "output").exists()  # the staging folder is gone after upload


def test_same_request_same_seed_pinned_sha_same_bytes(local_hub, tmp_path):
    """Same request, same seed, same source commit: the same output bytes, even after the source's
    main moved on; re-running a job into its own output changes nothing; visibility 'source'."""
    repo = "roboaug-test/e2e-pinned"
    src = fixtures.make_lerobot(tmp_path / "src", "v3.0", lengths=(5, 7))
    sha = hub.upload(src, repo, WRITE_TOKEN, "source", private=True)
    base = {"project_id": PROJECT, "dataset_id": f"hf://{repo}@{sha}", "augment_transforms": "lighting,noise,blur",
            "augment_copies": 1, "augment_seed": 7, "output_visibility": "source"}
    first, _ = _run(local_hub, tmp_path, {**base, "job_id": JOB}, "a")
    local_hub.seed(repo, {"meta/extra.txt": b"main moved on"})  # the source's main changes
    second, progress = _run(local_hub, tmp_path, {**base, "job_id": OTHER_JOB}, "b")
    assert first["output_dataset_id"] != second["output_dataset_id"]
    assert progress[-1]["source_revision"] == sha
    store = local_hub.store
    a = store.snapshot("dataset", first["output_dataset_id"])
    b = store.snapshot("dataset", second["output_dataset_id"])
    assert a == b and len(a) > 5  # byte for byte
    assert store.is_private("dataset", second["output_dataset_id"])  # as the source
    assert store.tags("dataset", second["output_dataset_id"]) == {"v3.0": second["commit"]}
    again, _ = _run(local_hub, tmp_path, {**base, "job_id": OTHER_JOB}, "c")  # the same job, once more
    assert again["commit"] == second["commit"]
    assert store.branches("dataset", second["output_dataset_id"]) == {"main": second["commit"]}
