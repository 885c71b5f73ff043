"""Preview latency: wall seconds of POST /v1/preview on the preview service (in a thread, real
HTTP), for 1 and 4 picks, on a pusht-sized source (96x96 AV1, episodes of ~160 frames, several
episodes per mp4 file) and on the g1 sample (640x480) when /work/shared/datasets has it.

    .venv/bin/python bench/bench_preview.py [--quick]

Prints one line per (source, picks, format): cold (first call in the process) and warm median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from roboaug.devstack import synthetic
from roboaug.worker import preview_server

PROJECT = "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0"
G1 = Path("/work/shared/datasets/g1_pick_bottle_v3.0")


def post(url: str, body: dict) -> tuple[float, int, int]:
    import json

    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        data = r.read()
        return time.perf_counter() - t0, r.status, len(data)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    reps = 2 if args.quick else 5
    work = Path(tempfile.mkdtemp(prefix="bench-preview-"))
    lengths = (160,) * (4 if args.quick else 12)
    pusht = synthetic.make_lerobot(work / "pusht", "v3.0", lengths=lengths, episodes_per_file=len(lengths), size=(96, 96))
    server = preview_server.serve("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/preview"
    sources = [("pusht-sized 96x96", pusht)] + ([("g1 640x480", G1)] if G1.is_dir() else [])
    picks = {1: {"episodes": [1], "frames": [80]}, 4: {"episodes": [0, 1], "frames": [10, 150]}}
    for name, src in sources:
        for n, pick in picks.items():
            for fmt in ("png", "json"):
                body = {"project_id": PROJECT, "dataset_id": f"file://{src}", "augment_copies": 3,
                        "augment_transforms": "lighting,noise,blur,occlusion", "format": fmt, **pick}
                cold, status, size = post(url, body)
                assert status == 200, status
                warm = statistics.median(post(url, body)[0] for _ in range(reps))
                print(f"{name:18s} picks={n} format={fmt:4s} cold={cold:6.3f}s warm_median={warm:6.3f}s "
                      f"answer={size / 1024:7.1f} KiB", flush=True)
    server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
