"""`./dev demo`: the main job on an embedded default, end to end on this machine.

Starts the dev stack (control plane, local Hub serving a pusht-like sample as `lerobot/pusht`,
operator, gateway, dev node agent), applies manifests/samples/project.yaml and job.yaml with kubectl, follows the
job's phases, then prints the status (kubectl's printer columns and the REST answer) and where
the augmented dataset and its preview picture are.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from .stack import REPO, DevStack

SAMPLE_JOB = REPO / "manifests" / "samples" / "job.yaml"
SAMPLE_PROJECT = REPO / "manifests" / "samples" / "project.yaml"  # the policy the sample job runs under


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(out_dir: Path, keep_running: bool = False) -> int:
    job = yaml.safe_load(SAMPLE_JOB.read_text())
    name = job["metadata"]["name"]
    with DevStack() as stack:
        _say(f"stack ready in {stack.timings['total_s']:.0f}s; gateway {stack.gateway_url}; logs {stack.log_dir}")
        _say(f"$ kubectl apply -n {stack.namespace} -f {SAMPLE_PROJECT.relative_to(REPO)} "
             f"-f {SAMPLE_JOB.relative_to(REPO)}")
        _say(stack.kubectl("apply", "-n", stack.namespace, "-f", str(SAMPLE_PROJECT),
                           "-f", str(SAMPLE_JOB)).stdout.strip())
        t0 = time.monotonic()

        def show(cr):
            st = cr.get("status") or {}
            progress = st.get("progress") or {}
            done = f" ({progress.get('frames_done', 0)}/{progress.get('frames_total', 0)} frames)" if progress else ""
            _say(f"  +{time.monotonic() - t0:5.1f}s  status={st.get('status')}  phase={st.get('current_phase')}{done}")

        cr = stack.wait_job(name, timeout=900, on_change=show)
        _say(f"\n$ kubectl get augmentationjobs -n {stack.namespace}")
        _say(stack.kubectl("get", "augmentationjobs", "-n", stack.namespace).stdout.rstrip())
        job_id = cr["status"]["job_id"]
        req = urllib.request.Request(f"{stack.gateway_url}/v1/augmentation/{job_id}",
                                     headers={"x-api-key": stack.api_key})
        with urllib.request.urlopen(req, timeout=10) as r:
            answer = json.load(r)
        _say(f"\n$ curl -H 'x-api-key: ...' {stack.gateway_url}/v1/augmentation/{job_id}")
        _say(json.dumps(answer, indent=2))
        if cr["status"]["status"] != "completed":
            _say(f"\njob ended {cr['status']['status']}: {cr['status'].get('error')}")
            _say(f"logs: {stack.log_dir}")
            return 1
        output_id = cr["status"]["augmented_dataset_id"]
        dest = out_dir / output_id.replace("/", "__")
        if dest.exists():
            shutil.rmtree(dest)
        stack.download_output(output_id, dest)
        info = json.loads((dest / "meta" / "info.json").read_text())
        previews = sorted(p for p in dest.rglob("preview*.png"))
        _say(f"\naugmented dataset {output_id} (on the local Hub) -> {dest}")
        _say(f"  {info['total_episodes']} episodes, {info['total_frames']} frames, codebase {info['codebase_version']}")
        for p in previews:
            _say(f"  preview picture: {p}")
        _say(f"  dataset card: {dest / 'README.md'}")
        _say(f"  provenance: {dest / 'meta' / 'augmentation.json'}")
        if keep_running:
            _say("\nstack still running (Ctrl-C to stop):")
            _say(f"  export KUBECONFIG={stack.cluster.kubeconfig}; export PATH={stack.cluster.bin_dir}:$PATH")
            _say(f"  curl -H 'x-api-key: {stack.api_key}' {stack.gateway_url}/v1/augmentation/{job_id}")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roboaug-dev demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / ".out" / "demo", help="where to put the augmented dataset")
    parser.add_argument("--keep-running", action="store_true", help="leave the stack up after the job")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return run_demo(args.out, args.keep_running)


if __name__ == "__main__":
    sys.exit(main())
