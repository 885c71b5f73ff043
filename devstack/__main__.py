"""`python -m roboaug_devstack` / `roboaug-dev`: build, start and stop the dev-only local cluster."""
from __future__ import annotations

import argparse
import sys
import time


def _cmd_build(args) -> int:
    from . import build

    t0 = time.monotonic()
    d = build.build(args.k8s_version, force=args.force)
    print(f"{d}  ({time.monotonic() - t0:.1f}s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="roboaug_devstack", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    from .build import K8S_VERSION

    b = sub.add_parser("build", help="build etcd, kube-*, kubectl, kwok, helm into the cache")
    b.add_argument("--k8s-version", default=K8S_VERSION)
    b.add_argument("--force", action="store_true", help="rebuild even if the stamp matches")
    b.set_defaults(func=_cmd_build)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
