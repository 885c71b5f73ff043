"""`python -m roboaug.devstack` (or `roboaug-dev`): the dev-only local cluster from the shell.

    build   build etcd, kube-*, kubectl, kwok, helm and Kueue into the cache (idempotent)
    up      start the cluster, print KUBECONFIG, stay in the foreground until Ctrl-C
    down    stop a cluster started by `up` in another shell (reads its state file)
    where   print the binaries directory (for PATH=...)
    demo    the main job end to end: the whole stack, the sample AugmentationJob, its result
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from . import build as _build


def _state_file() -> Path:
    return _build.cache_root() / "run" / "up.json"


def _cmd_build(args) -> int:
    t0 = time.monotonic()
    d = _build.build(args.k8s_version, force=args.force)
    print(f"{d}  ({time.monotonic() - t0:.1f}s)")
    from . import kueue as _kueue

    t0 = time.monotonic()
    try:  # only the Kueue tests need it: they skip, saying how to build it, if this fails
        print(f"{_kueue.build(force=args.force)}  ({time.monotonic() - t0:.1f}s)")
    except RuntimeError as e:
        print(f"kueue not built (its tests will skip): {e}", file=sys.stderr)
    return 0


def _cmd_where(args) -> int:
    print(_build.bin_dir(args.k8s_version))
    return 0


def _cmd_up(args) -> int:
    from .cluster import LocalCluster, local_nodes_from_env, parse_local_nodes

    local_nodes = parse_local_nodes(args.local_nodes, "--local-nodes") if args.local_nodes \
        else local_nodes_from_env()
    stop = {"flag": False}

    def on_signal(signum, _frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with LocalCluster(work_dir=args.work_dir, node_agent=not args.no_node_agent,
                      local_nodes=None if args.no_node_agent else local_nodes,
                      k8s_version=args.k8s_version, keep_work_dir=args.keep, kueue=args.kueue) as c:
        state = {**c.describe(), "pid": os.getpid()}
        _state_file().parent.mkdir(parents=True, exist_ok=True)
        _state_file().write_text(json.dumps(state, indent=2))
        print(f"export KUBECONFIG={c.kubeconfig}")
        print(f"export PATH={c.bin_dir}:$PATH")
        print(f"# started in {c.start_seconds}s; logs in {c.log_dir}; Ctrl-C to stop", flush=True)
        try:
            while not stop["flag"]:
                if not c.alive():
                    dead = [n for n, p in c.procs.items() if not p.alive()]
                    print(f"component(s) exited: {dead}; stopping", file=sys.stderr)
                    c.failed = True
                    break
                time.sleep(0.5)
        finally:
            _state_file().unlink(missing_ok=True)
    return 1 if c.failed else 0


def _cmd_down(args) -> int:
    try:
        state = json.loads(_state_file().read_text())
    except (OSError, ValueError):
        print("no cluster started by `up` is recorded", file=sys.stderr)
        return 0
    try:
        os.kill(state["pid"], signal.SIGTERM)  # `up` tears everything down itself
    except ProcessLookupError:
        _state_file().unlink(missing_ok=True)
        return 0
    for _ in range(600):  # `up` removes its state file, then stops every component
        try:
            os.kill(state["pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    print(f"stopped cluster of pid {state['pid']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        from .demo import main as demo_main

        return demo_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m roboaug.devstack",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k8s-version", default=_build.K8S_VERSION)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the binaries into the cache (idempotent)")
    b.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    b.set_defaults(func=_cmd_build)
    u = sub.add_parser("up", help="start the local cluster in the foreground")
    u.add_argument("--work-dir", type=Path, default=None)
    u.add_argument("--no-node-agent", action="store_true")
    u.add_argument("--local-nodes", default=None, metavar="CPUS;CPUS",
                   help="several local nodes, one CPU set each: '0;1' = local-0 on CPU 0 and local-1 on "
                        "CPU 1 (default: $ROBOAUG_DEVSTACK_LOCAL_NODES, else one unpinned local-0)")
    u.add_argument("--keep", action="store_true", help="keep the work dir after stopping")
    u.add_argument("--kueue", action="store_true", help="also run Kueue's manager (devstack/kueue.py)")
    u.set_defaults(func=_cmd_up)
    sub.add_parser("down", help="stop the cluster started by `up`").set_defaults(func=_cmd_down)
    sub.add_parser("where", help="print the binaries directory").set_defaults(func=_cmd_where)
    sub.add_parser("demo", help="run the sample AugmentationJob end to end (see `demo --help`)")
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
