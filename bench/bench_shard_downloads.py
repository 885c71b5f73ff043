"""What each pod of a sharded job downloads from a Hub LeRobot source: the pod that only plans
(single stage, exits SHARD_PLAN), every shard pod, finalize. A synthetic v3.0 source on the local
Hub (devstack hubserver), every new episode a unit of its own, copy mode.

    .venv/bin/python bench/bench_shard_downloads.py --episodes 16 --shards 4

Prints one JSON line per pod: files and bytes in its download folder (what it fetched), out of
the source's. To compare with another checkout's worker, put its worker/src first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def fetched(workdir: Path) -> tuple[int, int]:
    root = workdir / "source"
    files = [p for p in root.rglob("*") if p.is_file() and not p.relative_to(root).as_posix().startswith(".cache/")] \
        if root.is_dir() else []
    return len(files), sum(p.stat().st_size for p in files)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--frames", type=int, default=30, help="frames per episode")
    ap.add_argument("--per-file", type=int, default=2, help="episodes per source data file and mp4")
    ap.add_argument("--shards", type=int, default=4)
    args = ap.parse_args(argv)

    from roboaug.api.contract import Stage
    from roboaug.devstack import synthetic
    from roboaug.devstack.hubserver import WRITE_TOKEN
    from roboaug.devstack.hubserver.fixtures import LFS_THRESHOLD, hub_env
    from roboaug.devstack.hubserver.server import LocalHub
    from roboaug.worker import hub, pipeline
    from roboaug.worker.progress import ProgressReporter
    from roboaug.worker.stages import ShardPlanned
    from tests.worker.test_shards import shrink_files, spec_for

    tmp = Path(tempfile.mkdtemp(prefix="bench-shard-dl-"))
    local = LocalHub(tmp / "store", lfs_threshold=LFS_THRESHOLD).start()
    try:
        os.environ.update(hub_env(local, str(tmp / "hf_home")))
        src = synthetic.make_lerobot(tmp / "src", "v3.0", lengths=(args.frames,) * args.episodes,
                                     episodes_per_file=args.per_file)
        shrink_files(src)
        sha = hub.upload(src, "bench/shard-src", WRITE_TOKEN, "source", private=False)
        total = [p for p in src.rglob("*") if p.is_file()]
        print(json.dumps({"source": {"files": len(total), "bytes": sum(p.stat().st_size for p in total)}}))
        spec = spec_for(src, tmp / "out", augment_copies=1).model_copy(
            update={"dataset_id": f"hf://bench/shard-src@{sha}"})
        work = args.frames * args.episodes

        def pod(name, stage, **kw):
            wd = tmp / f"wd-{name}"
            opts = pipeline.RunOptions(job_id="11111111-2222-4333-8444-555555555555", workdir=wd, processes=1,
                                       token=WRITE_TOKEN, stage=stage, **kw)
            outcome = "done"
            try:
                pipeline.run(spec, opts, ProgressReporter(stream=io.StringIO()))
            except ShardPlanned as planned:
                outcome = f"planned {planned.plan.shards} shards"
            files, size = fetched(wd)
            print(json.dumps({"pod": name, "outcome": outcome, "files": files, "bytes": size}))

        pod("plan", Stage.SINGLE, frames_per_shard=-(-work // args.shards))
        for i in range(args.shards):
            pod(f"shard-{i}", Stage.SHARD, shards=args.shards, shard_index=i)
        pod("finalize", Stage.FINALIZE, shards=args.shards)
    finally:
        local.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
