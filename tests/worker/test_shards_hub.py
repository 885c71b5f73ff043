"""Sharded jobs to a Hub output (the local Hub, the real huggingface_hub client): shards stage on
the branch roboaug-staging-<job_id>, main shows nothing until finalize's one commit, whose files
are byte for byte those of the one-pod file:// run; cleanup drops the branch of a failed job."""

from __future__ import annotations

import pytest

from roboaug.api.contract import Stage, staging_name
from roboaug.api.models import DatasetRef
from roboaug.devstack.hubserver import WRITE_TOKEN
from roboaug.devstack.hubserver.fixtures import local_hub, local_hub_session  # noqa: F401
from roboaug.worker import hub
from tests.worker.helpers import JOB, tree_digest
from tests.worker.test_shards import run_stage as _file_stage, shrink_files, spec_for

REPO = "roboaug-test/sharded-out"


def run_stage(spec, workdir, stage, shards=None, index=None):
    import io

    from roboaug.worker import pipeline
    from roboaug.worker.progress import ProgressReporter

    opts = pipeline.RunOptions(job_id=JOB, workdir=workdir, processes=1, token=WRITE_TOKEN, stage=stage,
                               shards=shards, shard_index=index)
    return pipeline.run(spec, opts, ProgressReporter(stream=io.StringIO()))


@pytest.fixture
def source(sources, copy_source):
    src = copy_source(sources["v3.0"])
    shrink_files(src)
    return src


def test_shards_publish_in_one_commit_the_one_pod_bytes(local_hub, source, tmp_path):
    spec = spec_for(source, tmp_path / "unused").model_copy(update={"output_dataset_id": REPO})
    for i in (1, 0):
        run_stage(spec, tmp_path / f"wd-{i}", Stage.SHARD, 2, i)
        branches = local_hub.store.branches("dataset", REPO)
        assert staging_name(JOB) in branches
        assert [p for p in local_hub.store.snapshot("dataset", REPO, "main") if p != ".gitattributes"] == []
    done = run_stage(spec, tmp_path / "wd-fin", Stage.FINALIZE, 2)
    assert set(local_hub.store.branches("dataset", REPO)) == {"main"}
    got = hub.download(DatasetRef.parse(f"hf://{REPO}@{done.commit}"), tmp_path / "dl", WRITE_TOKEN)
    single = tmp_path / "single"
    _file_stage(spec_for(source, single), tmp_path / "wd-single")
    published = {k: v for k, v in tree_digest(got).items() if k != ".gitattributes" and not k.startswith(".cache/")}
    want = tree_digest(single)
    assert sorted(published) == sorted(want)
    # the card and provenance name the source, never the output: every byte matches
    assert [rel for rel in want if published[rel] != want[rel]] == []


def test_cleanup_drops_the_staging_branch(local_hub, source, tmp_path):
    spec = spec_for(source, tmp_path / "unused").model_copy(update={"output_dataset_id": REPO})
    run_stage(spec, tmp_path / "wd-0", Stage.SHARD, 2, 0)
    assert staging_name(JOB) in local_hub.store.branches("dataset", REPO)
    run_stage(spec, tmp_path / "wd-c", Stage.CLEANUP)
    assert not local_hub.store.exists("dataset", REPO) or staging_name(JOB) not in local_hub.store.branches("dataset", REPO)
