"""A sharded job reading a Hub LeRobot source (the local Hub, the real huggingface_hub client):
each pod downloads meta/ first and then only what its own work reads. The pod that only plans
fetches nothing but meta/; a shard pod its own units' files; finalize, which copies the
originals, the whole source. The output is the bytes of the one-pod run of a file:// copy."""

from __future__ import annotations

import io
import itertools

import pytest

from roboaug.api.contract import Stage
from roboaug.devstack import synthetic as fixtures
from roboaug.devstack.hubserver import WRITE_TOKEN
from roboaug.devstack.hubserver.fixtures import local_hub, local_hub_session  # noqa: F401
from roboaug.worker import hub, pipeline
from roboaug.worker.progress import ProgressReporter
from roboaug.worker.stages import ShardPlanned
from tests.worker.helpers import JOB, tree_digest
from tests.worker.test_shards import run_stage as file_stage, shrink_files, spec_for

REPO = "roboaug-test/sharded-src-{}"
SHARDS = 4
_REPOS = itertools.count()


@pytest.fixture
def hub_source(local_hub, tmp_path):
    """8 episodes, 2 per source file (4 data files, 4 mp4s); every new episode a unit of its own.
    Returns (local copy, pinned dataset id)."""
    src = fixtures.make_lerobot(tmp_path / "src", "v3.0", lengths=(6, 7, 5, 8, 6, 7, 5, 8), episodes_per_file=2)
    shrink_files(src)
    repo = REPO.format(next(_REPOS))  # the session's Hub keeps every test's repos
    sha = hub.upload(src, repo, WRITE_TOKEN, "source", private=False)
    local_hub.reset()
    return src, f"hf://{repo}@{sha}"


def _spec(dataset_id: str, out, **fields):
    return spec_for(out, out, augment_copies=1, **fields).model_copy(update={"dataset_id": dataset_id})


def _run(spec, workdir, stage, shards=None, index=None, frames_per_shard=None):
    opts = pipeline.RunOptions(job_id=JOB, workdir=workdir, processes=1, token=WRITE_TOKEN, stage=stage,
                               shards=shards, shard_index=index, frames_per_shard=frames_per_shard)
    return pipeline.run(spec, opts, ProgressReporter(stream=io.StringIO()))


def _fetched(local_hub, dataset_id: str) -> set[str]:
    """The files of the source the worker asked the Hub for since the last reset (an LFS file's
    bytes come from the CDN its /resolve/ answer points to: the /resolve/ request names it)."""
    marker = f"/datasets/{dataset_id[len('hf://'):].split('@')[0]}/resolve/"
    return {r.path.split(marker, 1)[1].split("/", 1)[1] for r in local_hub.requests() if marker in r.path}


def _on_disk(workdir) -> set[str]:
    """The source's files in a pod's download folder."""
    root = workdir / "source"
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not p.relative_to(root).as_posix().startswith(".cache/")}


def _without_gitattributes(digest: dict[str, str]) -> dict[str, str]:
    """A Hub source's .gitattributes is one of its files (copy mode copies it); a folder has none."""
    return {k: v for k, v in digest.items() if k != ".gitattributes"}


def _meta(src) -> set[str]:
    return {p.relative_to(src).as_posix() for p in (src / "meta").rglob("*") if p.is_file()}


@pytest.mark.parametrize("mode", ["copy", "inplace"])
def test_each_shard_pod_fetches_meta_and_its_own_units_files_and_the_output_is_the_one_pod_bytes(
        local_hub, hub_source, tmp_path, mode):
    src, dataset_id = hub_source
    out = tmp_path / "out"
    spec = _spec(dataset_id, out, augment_dataset_mode=mode)
    every = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    video = "videos/observation.images.top/chunk-000/file-{:03d}.mp4"
    data = "data/chunk-000/file-{:03d}.parquet"
    for i in range(SHARDS):
        local_hub.reset()
        _run(spec, tmp_path / f"wd-{i}", Stage.SHARD, SHARDS, i)
        # shard i runs the copies of source episodes 2i, 2i+1 (copy: two units of one new episode;
        # inplace: the one unit of the episodes sharing source file i); a new data file (copy)
        # takes the first data file's schema
        mine = _meta(src) | {data.format(i), video.format(i)} | ({data.format(0)} if mode == "copy" else set())
        assert _fetched(local_hub, dataset_id) == mine, i
        assert _on_disk(tmp_path / f"wd-{i}") == mine, i
        assert not out.exists()
    local_hub.reset()
    _run(spec, tmp_path / "wd-fin", Stage.FINALIZE, SHARDS)
    # every original: copy mode copies them all into the output, both modes reread every episode's rows
    assert _fetched(local_hub, dataset_id) - {".gitattributes"} == every
    single = tmp_path / "single"
    _run(_spec(dataset_id, single, augment_dataset_mode=mode), tmp_path / "wd-single", Stage.SINGLE)
    want, got = tree_digest(single), tree_digest(out)
    assert sorted(got) == sorted(want)
    assert [rel for rel in want if got[rel] != want[rel]] == []


def test_the_pod_that_only_plans_fetches_only_meta(local_hub, hub_source, tmp_path):
    src, dataset_id = hub_source
    spec = _spec(dataset_id, tmp_path / "out")
    with pytest.raises(ShardPlanned) as planned:
        _run(spec, tmp_path / "wd", Stage.SINGLE, frames_per_shard=20)  # 52 frames: 3 shards
    assert planned.value.plan.shards == 3
    assert _fetched(local_hub, dataset_id) == _meta(src)
    assert _on_disk(tmp_path / "wd") == _meta(src)
    assert not (tmp_path / "out").exists()


def test_a_single_pod_that_does_the_work_reads_the_whole_source(local_hub, hub_source, tmp_path):
    src, dataset_id = hub_source
    out = tmp_path / "out"
    _run(_spec(dataset_id, out), tmp_path / "wd", Stage.SINGLE)
    every = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    assert _fetched(local_hub, dataset_id) - {".gitattributes"} == every
    # the bytes of the same job on a file:// copy, but for the source's name in the card and provenance
    single = tmp_path / "single"
    file_stage(spec_for(src, single, augment_copies=1), tmp_path / "wd-single")
    got, want = _without_gitattributes(tree_digest(out)), tree_digest(single)
    assert sorted(got) == sorted(want)
    assert sorted(rel for rel in want if got[rel] != want[rel]) == ["README.md", "meta/augmentation.json"]


def test_the_units_weigh_source_files_by_the_listed_sizes(sources, tmp_path):
    """Only meta/ on disk: the v3.0 copy layout weighs each source file by its size in the Hub's
    listing, a file missing from the listing fails as a missing file on disk does."""
    from roboaug.worker import lerobot_dataset, lerobot_writer
    from roboaug.worker.errors import ExitCode, WorkerError
    from roboaug.worker.lerobot import plan

    src = sources["v3.0"]
    sizes = {p.relative_to(src).as_posix(): p.stat().st_size for p in src.rglob("*") if p.is_file()}
    spec = spec_for(src, tmp_path / "out", augment_copies=1)
    small = lerobot_dataset.load(src)
    assert len(lerobot_writer.layout(small, "copy", plan(small, spec)).units) == 1  # a few KiB: one new file
    big = {rel: n * 10**6 if rel.endswith(".mp4") else n for rel, n in sizes.items()}  # past 200 MB a file
    ds = lerobot_dataset.load(src, sizes=big)
    assert [u.episodes for u in lerobot_writer.layout(ds, "copy", plan(ds, spec)).units] == [(4,), (5,), (6,), (7,)]
    video = small.episodes[0].videos["observation.images.top"][0]
    with pytest.raises(WorkerError) as err:
        lerobot_dataset.load(src, sizes={rel: n for rel, n in sizes.items() if rel != video})
    assert err.value.code == ExitCode.CORRUPT_VIDEO and video in err.value.message
