"""Worker test helpers: the real worker command line in a fresh interpreter, specs, digests."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

PROJECT = "00000000-0000-4000-8000-000000000001"
JOB = "11111111-2222-4333-8444-555555555555"
G1 = Path(__file__).resolve().parents[3] / "shared" / "datasets"
if not G1.is_dir():
    G1 = Path("/work/shared/datasets")


def make_spec(dataset: Path | str, out: Path | str, **kw) -> dict:
    spec = {
        "project_id": PROJECT, "job_id": JOB,
        "dataset_id": dataset if isinstance(dataset, str) else f"file://{dataset}",
        "output_dataset_id": out if isinstance(out, str) else f"file://{out}",
        "augment_transforms": "lighting,noise,blur,occlusion", "augment_copies": 2,
    }
    spec.update(kw)
    return spec


def run_worker(spec: dict, *, processes: int = 1, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """The real command line, in a fresh interpreter.

    It runs in its own process group: on a timeout the whole group (episode processes included)
    is killed and the test fails with the output so far, instead of waiting on pipes that a
    surviving child still holds open.
    """
    argv = [sys.executable, "-m", "roboaug.worker", "--spec", json.dumps(spec), "--processes", str(processes)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"worker did not finish in {timeout}s\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def error_lines(stderr: str) -> list[str]:
    """The worker's error lines (contract.error_line): the `msg` of its JSON log lines
    (roboaug.api.joblogs) that carry one."""
    from roboaug.api import joblogs
    from roboaug.api.contract import ERROR_LINE_PREFIX

    logged = [joblogs.parse(line) for line in stderr.splitlines()]
    return [obj["msg"] for obj in logged if obj is not None and obj["msg"].startswith(ERROR_LINE_PREFIX + "[")]
