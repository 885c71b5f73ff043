"""Progress: JSON lines on stdout always, and `status.progress` of the AugmentationJob when the
pod knows its CR (`WorkerEnv.cr_name` / `cr_namespace` of the worker contract).

The worker owns `status.progress` and nothing else, so it merge-patches exactly that key. The
apiserver being briefly unreachable must never fail a job that is otherwise fine: patch errors
are logged and the next update tries again.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from typing import Any, Callable, Optional

from roboaug.api.contract import WorkerEnv
from roboaug.api.joblogs import now_ts
from roboaug.api.models import GROUP, PLURAL, VERSION, Progress
from roboaug.api.models.status import MAX_WARNING_CHARS, MAX_WARNINGS

from . import log

MIN_INTERVAL_S = 2.0


def progress_text(body: dict) -> str:
    """The line a person reads: `augmenting: 3/8 episodes, 120/320 frames`."""
    parts = [f"{body[d]}/{body[t]} {unit}" for d, t, unit in (
        ("episodes_done", "episodes_total", "episodes"), ("frames_done", "frames_total", "frames")) if body.get(t)]
    text = f"{body['phase']}: {', '.join(parts)}" if parts else str(body["phase"])
    return f"{text} ({body['message']})" if body.get("message") else text


def _kube_patcher(name: str, namespace: str) -> Callable[[dict], None]:
    from kubernetes import client, config

    if os.environ.get("KUBECONFIG"):
        config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    else:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
    api = client.CustomObjectsApi()

    def patch(progress: dict) -> None:
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": {"progress": progress}},
            _content_type="application/merge-patch+json", _request_timeout=5,
        )

    return patch


class ProgressReporter:
    """Throttled progress: at most one report per `min_interval` seconds, plus every phase change
    and every forced report (the final one).

    Every report also carries `phases`: each phase this pod entered, when it began and ended (a
    phase ends when the next begins, the last when a report says `finished`). The operator may
    observe only one report of a fast job, so the whole path must be in each one.
    """

    def __init__(
        self,
        *,
        patch: Optional[Callable[[dict], None]] = None,
        attempt: int = 0,
        pod: Optional[str] = None,
        min_interval: float = MIN_INTERVAL_S,
        stream=None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ):
        self._patch = patch
        self.attempt = attempt
        self.pod = pod
        self.min_interval = min_interval
        self._stream = stream if stream is not None else sys.stdout
        self._clock = clock
        self._last_time: Optional[float] = None
        self._last_phase: Optional[str] = None
        self._wall = wall
        self.phases: list[dict] = []
        """{name, started_at, completed_at} per phase entered, in order (Progress.phases)."""
        self.warnings: list[str] = []
        """Input problems reported so far (Progress.warnings), each once, bounded."""
        self._dropped_warnings = 0
        self.patch_failures = 0
        self.reports: list[dict] = []

    @classmethod
    def from_env(cls, env: Optional[WorkerEnv] = None, **kw) -> "ProgressReporter":
        """Reporter for this pod; `env` defaults to the process environment, parsed."""
        env = env if env is not None else WorkerEnv.parse(os.environ)
        patch = None
        if env.cr_name and env.cr_namespace:
            try:
                patch = _kube_patcher(env.cr_name, env.cr_namespace)
            except Exception as exc:  # no kubeconfig: progress still goes to stdout
                log.emit("warning", "progress goes to stdout only: no Kubernetes access", stream=sys.stderr,
                         event="progress_patch_unavailable", error=type(exc).__name__ + ": " + str(exc))
        return cls(patch=patch, attempt=env.attempt, pod=env.pod_name, **kw)

    def update(
        self,
        phase: str,
        *,
        episodes_done: int = 0,
        episodes_total: int = 0,
        frames_done: int = 0,
        frames_total: int = 0,
        message: Optional[str] = None,
        output_dataset_id: Optional[str] = None,
        source_revision: Optional[str] = None,
        augmented_dataset_revision: Optional[str] = None,
        force: bool = False,
        finished: bool = False,
    ) -> bool:
        """Report if due; returns whether this update was emitted. `finished`: `phase` ends with
        this report (the last report of a run); it is always emitted."""
        now = self._clock()
        wall = self._wall()
        self._track(phase, wall, finished)
        due = (
            force
            or finished
            or phase != self._last_phase
            or self._last_time is None
            or now - self._last_time >= self.min_interval
        )
        if not due:
            return False
        self._last_time, self._last_phase = now, phase
        progress = Progress(
            phase=phase, episodes_done=episodes_done, episodes_total=episodes_total,
            frames_done=frames_done, frames_total=frames_total, message=message, attempt=self.attempt, pod=self.pod,
            updated_at=wall, output_dataset_id=output_dataset_id,
            source_revision=source_revision, augmented_dataset_revision=augmented_dataset_revision,
            phases=self.phases, warnings=self.warnings,
        )
        body: dict[str, Any] = progress.model_dump(mode="json", exclude_none=True)
        self.reports.append(body)
        log.emit("info", progress_text(body), stream=self._stream, ts=now_ts(wall), event="progress", **body)
        if self._patch is not None:
            try:
                self._patch(body)
            except Exception as exc:  # apiserver away: keep working, try again next time
                self.patch_failures += 1
                log.emit("warning", "progress not written to the job's status; trying again with the next report",
                         stream=sys.stderr, event="progress_patch_failed", error=type(exc).__name__)
        return True

    def warn(self, message: str) -> None:
        """Record an input problem the worker worked around; the next report carries it (every
        report carries all of them, since the operator may see only one report)."""
        text = " ".join(message.split())
        if len(text) > MAX_WARNING_CHARS:
            text = text[: MAX_WARNING_CHARS - 3] + "..."
        if text in self.warnings:
            return
        if len(self.warnings) < MAX_WARNINGS - 1:
            self.warnings.append(text)
            return
        self._dropped_warnings += 1  # the last slot says how many more there were
        more = f"... and {self._dropped_warnings} more warning(s): see the worker's log"
        self.warnings[MAX_WARNINGS - 1:] = [more]

    def _track(self, phase: str, wall: dt.datetime, finished: bool) -> None:
        """Phase times, kept whether or not this update is emitted. A phase entered again after a
        later one (never done by the pipeline) keeps its first record: the list stays ordered and
        bounded by the worker phases."""
        known = next((p for p in self.phases if p["name"] == phase), None)
        if known is None:
            if self.phases and self.phases[-1]["completed_at"] is None:
                self.phases[-1]["completed_at"] = wall
            known = {"name": phase, "started_at": wall, "completed_at": None}
            self.phases.append(known)
        if finished and known["completed_at"] is None:
            known["completed_at"] = wall
