"""Run a real `roboaug` CLI session against the local stack and print it, for the README.

    .venv/bin/python hack/cli_session.py [--out DIR]

Starts the dev stack (local control plane, operator, gateway, test Hub with lerobot/pusht; see
`python -m roboaug.devstack demo`), then types, as a user would: `roboaug submit -f job.yaml
--watch` to completion, `roboaug logs`, `roboaug preview`, `roboaug list` and `roboaug status`.
Each command is printed after `$ ` with what it printed (standard output and error together, as a
terminal shows them; the progress display is its plain form, one line per phase or 2 s). The
configuration comes from ROBOAUG_URL / ROBOAUG_API_KEY, so the key never appears. Exit status 1
if a command exited other than expected.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROBOAUG = str(Path(sys.executable).parent / "roboaug")


def session(stack, out_dir: Path) -> int:
    env = dict(os.environ, ROBOAUG_URL=stack.gateway_url, ROBOAUG_API_KEY=stack.api_key, TERM="dumb")
    failures = 0

    def run(line: str, expect: int = 0) -> str:
        nonlocal failures
        print(f"$ {line}", flush=True)
        argv = shlex.split(line.replace("roboaug ", f"{ROBOAUG} ", 1))
        res = subprocess.run(argv, cwd=out_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, timeout=900)
        text = res.stdout.replace(stack.api_key, "****")
        print(text, end="" if text.endswith("\n") or not text else "\n", flush=True)
        if res.returncode != expect:
            failures += 1
            print(f"# exit {res.returncode} (expected {expect})", flush=True)
        return text

    job = REPO / "manifests" / "samples" / "job.yaml"
    (out_dir / "job.yaml").write_text(job.read_text())
    text = run("roboaug submit -f job.yaml --augment-transforms lighting,noise --augment-copies 2 --watch --every 2")
    found = re.search(r"submitted job ([0-9a-f-]{36})", text)
    if not found:
        return 1
    job_id = found.group(1)
    run(f"roboaug logs {job_id}")
    run("roboaug preview -f job.yaml --augment-transforms lighting,noise --augment-copies 2 --episodes 0 --out preview.png")
    run("roboaug list")
    run(f"roboaug status {job_id}")
    print(f"# files in {out_dir}", file=sys.stderr)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder the commands run in (preview.png lands there)")
    args = parser.parse_args()
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="roboaug-cli-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    from roboaug.devstack.stack import DevStack

    with DevStack(namespace="roboaug-cli", log=lambda s: print(f"# [stack] {s}", file=sys.stderr, flush=True)) as stack:
        return session(stack, out_dir)


if __name__ == "__main__":
    sys.exit(main())
