"""Helpers for the client and CLI tests: an ASGI app served by uvicorn in a thread on a free port
(real HTTP, real streaming), the real gateway over a MemoryStore, a fake operator that moves a
job's status along, and a fake of the logs and preview routes' contracts (others15.md)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Iterator, Optional

import httpx
import uvicorn

from roboaug.api.gateway.store import MemoryStore
from roboaug.api.models import cr_name
from tests.gateway.gateway_helpers import free_port


@contextmanager
def serve(app) -> Iterator[str]:
    """`app` on 127.0.0.1:<free port> until the block ends; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("test server did not start")
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


def now(offset: float = 0.0) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def progress_status(job_id: str, phase: str, frames_done: int, frames_total: int, episodes_done: int,
                    episodes_total: int) -> dict:
    """What the operator leaves in status while the worker runs: the phase history with a
    progress event (its data are the counts) and the worker's own status.progress."""
    counts = dict(frames_done=frames_done, frames_total=frames_total, episodes_done=episodes_done,
                  episodes_total=episodes_total)
    t = now()
    return {
        "job_id": job_id, "status": "running", "current_phase": phase,
        "phases": [
            {"name": "queued", "status": "completed", "started_at": t, "completed_at": t, "events": []},
            {"name": phase, "status": "in_progress", "started_at": t,
             "events": [{"status": "progress", "timestamp": t, "message": f"{frames_done}/{frames_total} frames",
                         "data": {"phase": phase, **counts}}]},
        ],
        "progress": {"phase": phase, **counts, "updated_at": t, "pod": "w-0",
                     "phases": [{"name": phase, "started_at": now(-9)}]},
    }


def final_status(job_id: str, status: str, output: Optional[str] = None, error: Optional[str] = None) -> dict:
    t = now()
    return {"job_id": job_id, "status": status, "current_phase": status, "error": error,
            "augmented_dataset_id": output,
            "phases": [{"name": status, "status": "completed" if status == "completed" else "failed",
                        "started_at": t, "completed_at": t, "events": []}]}


def set_status(store: MemoryStore, job_id: str, status: dict) -> None:
    with store._lock:
        store.jobs[cr_name(job_id)]["status"] = status


class FakeOperator:
    """Moves each new job of `store` through augmenting (frames in `steps`) to `outcome`."""

    def __init__(self, store: MemoryStore, outcome: str = "completed", steps: int = 5, pause: float = 0.15,
                 frames_total: int = 270, episodes_total: int = 3):
        self.store, self.outcome, self.steps, self.pause = store, outcome, steps, pause
        self.frames_total, self.episodes_total = frames_total, episodes_total
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._seen: set[str] = set()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.store._lock:
                fresh = [o for n, o in self.store.jobs.items() if n not in self._seen]
                self._seen |= {o["metadata"]["name"] for o in fresh}
            for obj in fresh:
                self._drive(obj["spec"]["job_id"])
            self._stop.wait(0.02)

    def _drive(self, job_id: str) -> None:
        for i in range(1, self.steps + 1):
            if self._stop.wait(self.pause):
                return
            cancelled = self.store.jobs[cr_name(job_id)]["spec"].get("cancel_requested")
            if cancelled:
                set_status(self.store, job_id, final_status(job_id, "cancelled"))
                return
            done = self.frames_total * i // (self.steps + 1)
            set_status(self.store, job_id, progress_status(
                job_id, "augmenting", done, self.frames_total, self.episodes_total * i // (self.steps + 1),
                self.episodes_total))
        self._stop.wait(self.pause)
        if self.outcome == "completed":
            set_status(self.store, job_id, final_status(job_id, "completed", output="lerobot/pusht-augmented-0123abcd"))
        elif self.outcome == "failed":
            set_status(self.store, job_id, final_status(job_id, "failed", error="source: repository not found"))


# -- the logs and preview contracts, faked --------------------------------------------------------------
LOG_LINES = [
    {"ts": "2025-07-03T10:00:00Z", "level": "info", "msg": "downloading", "phase": "downloading", "attempt": 0},
    {"ts": "2025-07-03T10:00:04Z", "level": "warning", "msg": "stats differ from data", "feature": "observation.state"},
    {"ts": "2025-07-03T10:00:05Z", "level": "info", "msg": "libav: frame dropped", "raw": True},
]
PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


class FakeContract:
    """GET /v1/augmentation/{id}/logs and POST /v1/augmentation/preview as others15.md fixes them.
    `release` lets a follow=true stream send its last line; `seen` records the requests."""

    def __init__(self, api_key: str, known: str):
        self.api_key, self.known = api_key, known
        self.release = threading.Event()
        self.seen: list[dict] = []
        self.released_in_time: Optional[bool] = None

    async def __call__(self, scope, receive, send):
        assert scope["type"] == "http"
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = dict(scope["headers"])
        query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
        self.seen.append({"method": scope["method"], "path": scope["path"], "query": query,
                          "body": json.loads(body) if body else None})
        if headers.get(b"x-api-key", b"").decode() != self.api_key:
            return await self._json(send, 401, {"detail": "invalid API key"})
        if scope["path"] == "/v1/augmentation/preview" and scope["method"] == "POST":
            req = json.loads(body)
            if req.get("format") == "json":
                return await self._json(send, 200, {"source": "hf://lerobot/pusht@abc", "pairs": [
                    {"episode": e, "frame": 5, "camera": "observation.image",
                     "original_png": base64.b64encode(PNG_1x1).decode(),
                     "augmented": [{"copy": 0, "transforms": ["lighting"], "png": base64.b64encode(PNG_1x1).decode()}]}
                    for e in req.get("episodes") or [0]]})
            return await self._send(send, 200, "image/png", [PNG_1x1])
        parts = scope["path"].strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["v1", "augmentation"] and parts[3] == "logs":
            if parts[2] != self.known:
                return await self._json(send, 404, {"detail": f"augmentation job {parts[2]} not found"})
            lines = [json.dumps(line) + "\n" for line in LOG_LINES]
            follow = query.get("follow") == "true"
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/x-ndjson")]})
            for i, line in enumerate(lines):
                if follow and i == len(lines) - 1:
                    # The client must have shown the earlier lines before the pod writes this one.
                    self.released_in_time = await asyncio.get_running_loop().run_in_executor(
                        None, self.release.wait, 5)
                await send({"type": "http.response.body", "body": line.encode(), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        return await self._json(send, 404, {"detail": "Not Found"})

    async def _json(self, send, status, data):
        await self._send(send, status, "application/json", [json.dumps(data).encode()])

    @staticmethod
    async def _send(send, status, ctype, chunks):
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype.encode())]})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
