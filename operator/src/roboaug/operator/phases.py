"""The phase history: the only code that changes `status.phases`, `status.status` and
`status.current_phase`, so the three always agree.

Rules (checked by `check`):
- phases appear in PHASE_ORDER order, each name at most once; a phase the job never entered is
  skipped, not invented (a pod that completes without reporting progress goes from
  `downloading` straight to `completed`);
- only the last phase may be `in_progress`; every earlier phase is `completed` or `failed`;
- the last phase's name is `current_phase`; `status` follows from it: queued and scheduling ->
  `queued`, downloading / augmenting / uploading -> `running`, and the terminal phases
  `completed` / `failed` / `cancelled` -> the same word; a terminal phase is never in_progress;
- a worker phase (downloading, augmenting, uploading) begins and ends when the worker says it did
  (`Progress.phases`, its own clock), however late the operator sees the report: a job that ran
  all three between two observations still gets all three, in order, with the worker's times;
  those times are kept between the previous phase's start and the observation, so phases never
  overlap and none ends in the future; an earlier start the worker reports for a phase already
  open replaces the operator's (it saw the phase late), a later one does not (a retry's pod
  repeating a phase does not move it);
- retries do not repeat phases: a failed pod adds a `retry` event to the phase it failed in, and
  every later event carries the new `retry_attempt`;
- `failed`: the phase that was running is closed as `failed` and a `failed` phase follows, its
  event's data naming the failure in one CamelCase `reason` (InvalidSpec, PendingTimeout, ...);
  `cancelled`: the running phase is closed as `completed` with a `cancelled` event (it did not
  fail) and a `cancelled` phase follows.

Everything else the operator writes about where the job stands is derived from the history,
never kept beside it (`History.derive`, once per reconcile pass): `conditions` (`conditions`, a
pure function: the Kubernetes view of the same history), `observedGeneration`, `started_at`,
`duration` and `progress_percent` (the `kubectl get` columns).

Works on the JSON form of the status (a dict, timestamps as RFC 3339 strings), which is what
the CR holds; `roboaug.api.models.AugmentationJobStatus` validates it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Optional

from pydantic import ValidationError

from roboaug.api.contract import PHASE_ORDER, QUEUED_PHASES, TERMINAL_PHASES, WORKER_PHASES, PhaseName
from roboaug.api.models.status import ConditionType, Progress
from roboaug.api.progress import job_progress

ALL_PHASES: tuple[str, ...] = tuple(p.value for p in PhaseName)
MAX_PROGRESS_EVENTS = 50
MAX_CONDITION_MESSAGE = 32768  # metav1.Condition's bound
# Status fields this module owns (the operator's other fields live beside them in status).
OWNED = ("job_id", "status", "current_phase", "phases", "error", "created_at", "conditions",
         "observedGeneration", "started_at", "duration", "progress_percent")


def ts(moment: datetime) -> str:
    """RFC 3339, UTC, millisecond precision: `2025-01-02T03:04:05.678Z`."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(value: Optional[str]) -> Optional[datetime]:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def job_status_for(phase: str) -> str:
    if phase in QUEUED_PHASES:
        return "queued"
    if phase in WORKER_PHASES:
        return "running"
    if phase in TERMINAL_PHASES:
        return phase
    raise ValueError(f"unknown phase {phase!r}")


def _copy_json(value: Any) -> Any:
    """Deep copy of JSON-shaped data (dicts, lists, scalars): what a CR status is made of, at a
    fraction of `copy.deepcopy`'s cost, which runs on every reconcile pass."""
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


class PhaseError(ValueError):
    """A transition the rules above forbid (a bug in the caller, never user input)."""


class History:
    """Mutable view over a status dict; `status` is a private copy, read it back with `.status`."""

    def __init__(self, status: Optional[dict] = None):
        self.status: dict[str, Any] = _copy_json(status or {})
        self.status.setdefault("phases", [])
        self.transitions: list[tuple[str, str, Optional[float]]] = []
        """(from, to, seconds spent in `from`) for each transition made through this object."""

    # -- reading ------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return bool(self.status["phases"])

    @property
    def current(self) -> Optional[dict]:
        return self.status["phases"][-1] if self.status["phases"] else None

    @property
    def phase(self) -> Optional[str]:
        return self.current["name"] if self.current else None

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def attempt(self) -> int:
        return int(self.status.get("attempt") or 0)

    def find(self, name: str) -> Optional[dict]:
        return next((p for p in self.status["phases"] if p["name"] == name), None)

    # -- writing ------------------------------------------------------------------------------
    def start(self, job_id: str, created_at: Optional[str], now: datetime,
              message: str = "accepted") -> None:
        if self.started:
            raise PhaseError("history already started")
        self.status.update(job_id=job_id, created_at=created_at or ts(now), error=None)
        self.status.setdefault("attempt", 0)
        self._append("queued", now, "in_progress", message)

    def event(self, status: str, now: datetime, message: Optional[str] = None,
              error: Optional[str] = None, data: Optional[dict] = None) -> dict:
        """Add an event to the current phase, stamped with the current retry attempt."""
        if not self.started:
            raise PhaseError("no phase to add an event to")
        ev = {"status": status, "message": message, "error": error, "timestamp": ts(now),
              "retry_attempt": self.attempt, "data": data}
        self.current["events"].append(ev)
        return ev

    def advance(self, to: str, now: datetime, message: Optional[str] = None,
                data: Optional[dict] = None, at: Optional[datetime] = None) -> bool:
        """Move forward to `to` (a non-terminal phase of PHASE_ORDER); False if already there or past.
        `at`: when `to` began, when known better than `now` (the worker's report); the phase
        before ends then."""
        if to not in PHASE_ORDER or to == "completed":
            raise PhaseError(f"advance() goes to a working phase, not {to!r}")
        self._require_open()
        if PHASE_ORDER.index(to) <= PHASE_ORDER.index(self.phase):
            return False
        began = self._bounded(at, now)
        self._close(began, "completed")
        self._append(to, began, "in_progress", message or f"{to} started", data)
        return True

    def worker_phases(self, spans: list[dict], now: datetime, data: Optional[dict] = None) -> None:
        """Bring the history along the worker's own record of its phases (`Progress.phases`:
        name, started_at, completed_at): every phase in it is in the history afterwards, begun
        when the worker began it. Names that are not worker phases are ignored (the CRD schema
        refuses them; this is the operator's own guard)."""
        self._require_open()
        known = sorted((s for s in spans if s.get("name") in WORKER_PHASES), key=lambda s: WORKER_PHASES.index(s["name"]))
        for span in known:
            began = parse_ts(span.get("started_at"))
            have = self.find(span["name"])
            if have is None:
                self.advance(span["name"], now, f"{span['name']} started", data, at=began)
            elif have is self.current and began is not None:
                self._began_earlier(began, now)

    def complete(self, now: datetime, message: str, data: Optional[dict] = None,
                 at: Optional[datetime] = None) -> None:
        """The job completed; `at`: when its last phase ended, when known better than `now`."""
        self._require_open()
        ended = self._bounded(at, now)
        self._close(ended, "completed")
        self._append("completed", ended, "completed", message, data, closed=True)
        self.status["error"] = None

    def fail(self, now: datetime, error: str, message: str = "job failed",
             data: Optional[dict] = None, reason: str = "Failed") -> None:
        """`reason`: the failure in one CamelCase word (the Failed condition's reason), kept in the
        `failed` phase's event data."""
        self._require_open()
        self.event("failed", now, message, error=error, data=data)
        self._close(now, "failed")
        self._append("failed", now, "failed", message, {**(data or {}), "reason": reason}, closed=True, error=error)
        self.status["error"] = error

    def cancel(self, now: datetime, message: str = "cancelled on request") -> None:
        self._require_open()
        self.event("cancelled", now, message)
        self._close(now, "completed")
        self._append("cancelled", now, "completed", message, closed=True)

    def retry(self, attempt: int, now: datetime, message: str, error: Optional[str],
              data: Optional[dict] = None) -> None:
        """Record that attempt `attempt - 1` failed and attempt `attempt` starts."""
        self._require_open()
        if attempt <= self.attempt:
            raise PhaseError(f"retry attempt {attempt} is not after {self.attempt}")
        self.status["attempt"] = attempt
        self.event("retry", now, message, error=error, data=data)

    def warnings(self, messages: list[str], now: datetime, data: Optional[dict] = None) -> list[str]:
        """Each worker warning not yet in the history becomes a `warning` event of the current
        phase (once per job, whichever phase first saw it); returns the new ones."""
        self._require_open()
        said = {e.get("message") for ph in self.status["phases"] for e in ph.get("events", []) if e.get("status") == "warning"}
        new = [m for m in messages if m and m not in said]
        for m in new:
            self.event("warning", now, m, data=data)
        return new

    def progress(self, progress: dict, now: datetime) -> bool:
        """Record worker progress in the current phase when it moved enough to be worth an event.

        An event is added when the episode count changes or frames moved by >= 10 % of the
        total since the last progress event of the phase; at most MAX_PROGRESS_EVENTS are kept
        per phase (the oldest after the first are dropped), so the CR stays small.
        """
        self._require_open()
        counts = {k: int(progress.get(k) or 0)
                  for k in ("episodes_done", "episodes_total", "frames_done", "frames_total")}
        events = self.current["events"]
        last = next((e for e in reversed(events) if e["status"] == "progress"), None)
        if last is not None:
            prev = last.get("data") or {}
            step = max(1, counts["frames_total"] // 10)
            if (prev.get("episodes_done") == counts["episodes_done"]
                    and abs(counts["frames_done"] - int(prev.get("frames_done") or 0)) < step
                    and prev.get("episodes_total") == counts["episodes_total"]):
                return False
        msg = progress.get("message") or (
            f"{counts['episodes_done']}/{counts['episodes_total']} episodes, "
            f"{counts['frames_done']}/{counts['frames_total']} frames")
        self.event("progress", now, msg, data={"phase": progress.get("phase"), **counts})
        progress_idx = [i for i, e in enumerate(events) if e["status"] == "progress"]
        while len(progress_idx) > MAX_PROGRESS_EVENTS:
            del events[progress_idx[1]]
            progress_idx = [i for i, e in enumerate(events) if e["status"] == "progress"]
        return True

    def derive(self, generation: Optional[int], report: Optional[dict], now: datetime) -> None:
        """The fields derived from the history (module docstring), for metadata.generation
        `generation`; `report`: the current pod's `status.progress`, if it wrote one."""
        st = self.status
        st.pop("observed_generation", None)  # the snake_case name of observedGeneration before it
        if generation is not None:
            st["observedGeneration"] = generation
        st["conditions"] = conditions(st, generation, now)
        began = next((p["started_at"] for p in st["phases"] if p["name"] in WORKER_PHASES), None)
        if began:
            st["started_at"] = began
        if self.terminal:
            start = parse_ts(began or st.get("created_at") or st["phases"][0]["started_at"])
            st["duration"] = human_duration((parse_ts(self.current["started_at"]) - start).total_seconds())
        pct = progress_percent(report, self.phase, now)
        if pct is not None:
            st["progress_percent"] = pct

    # -- internals ------------------------------------------------------------------------------
    def _require_open(self) -> None:
        if not self.started:
            raise PhaseError("history not started")
        if self.terminal:
            raise PhaseError(f"job already {self.phase}")

    def _bounded(self, moment: Optional[datetime], now: datetime, back: int = 1) -> datetime:
        """`moment` (another clock's) kept between the start of the phase `back` from the end
        and `now`; `now` when unknown."""
        if moment is None:
            return now
        phases = self.status["phases"]
        floor = parse_ts(phases[-back].get("started_at")) if len(phases) >= back else None
        if floor is not None and moment < floor:
            return floor
        return min(moment, now)

    def _began_earlier(self, moment: datetime, now: datetime) -> None:
        """The current phase began at `moment` if that is before the start recorded (and after
        the previous phase's start): the previous phase ended then too."""
        cur, phases = self.current, self.status["phases"]
        began = self._bounded(moment, now, back=2)
        if began >= parse_ts(cur["started_at"]):
            return
        cur["started_at"] = ts(began)
        if len(phases) >= 2:
            prev = phases[-2]
            prev["completed_at"] = ts(began)
            self.transitions = [
                (src, dst, (began - parse_ts(prev["started_at"])).total_seconds() if dst == cur["name"] else secs)
                for src, dst, secs in self.transitions]

    def _close(self, now: datetime, status: str) -> None:
        cur = self.current
        cur["status"] = status
        cur["completed_at"] = ts(now)

    def _append(self, name: str, now: datetime, status: str, message: Optional[str],
                data: Optional[dict] = None, closed: bool = False, error: Optional[str] = None) -> None:
        prev = self.current
        if prev is not None:
            began = parse_ts(prev.get("started_at"))
            self.transitions.append((prev["name"], name, (now - began).total_seconds() if began else None))
        self.status["phases"].append({
            "name": name,
            "status": status,
            "started_at": ts(now),
            "completed_at": ts(now) if closed else None,
            "events": [],
        })
        self.status["current_phase"] = name
        self.status["status"] = job_status_for(name)
        self.event({"completed": "completed", "failed": "failed", "cancelled": "cancelled"}.get(name, "started"),
                   now, message, error=error, data=data)


def progress_percent(report: Optional[dict], phase: Optional[str], now: datetime) -> Optional[int]:
    """Whole percent of `roboaug.api.progress.job_progress` (floored: 100 only when it is);
    None when unknown, so the last known value stays."""
    if phase == PhaseName.completed.value:
        return 100
    if not report:
        return None
    try:
        done = job_progress(Progress.model_validate(report), phase, now)
    except ValidationError:  # the CRD schema refuses such a report; the operator's own guard
        return None
    return int(done.percent) if done is not None and done.percent is not None else None


def human_duration(seconds: float) -> str:
    """A duration as kubectl prints one (k8s.io/apimachinery duration.HumanDuration): 45s,
    3m12s, 47m, 2h5m, 30h, 3d4h, 12d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    return f"{h // 24}d"


# -- conditions -----------------------------------------------------------------------------------
def camel(word: str) -> str:
    """A phase or exit-code name as a condition reason: `dataset_not_found` -> `DatasetNotFound`."""
    return "".join(part[:1].upper() + part[1:] for part in str(word).replace("-", "_").split("_") if part) or "Unknown"


def failure_reason(status: dict) -> str:
    """The failed job's reason (`History.fail`), `Failed` for a history written before reasons."""
    failed = next((p for p in status.get("phases") or [] if p.get("name") == PhaseName.failed.value), None)
    data = ((failed or {}).get("events") or [{}])[0].get("data") or {}
    return camel(data.get("reason") or "Failed")


def _said(phase: dict) -> str:
    """What the phase's last event says (its error, else its message)."""
    events = phase.get("events") or []
    last = events[-1] if events else {}
    return (last.get("error") or last.get("message") or "")[:MAX_CONDITION_MESSAGE]


def _tri(value: Optional[bool]) -> str:
    return "Unknown" if value is None else ("True" if value else "False")


# Each condition's status as a function of one phase name (Accepted is not: see `conditions`).
_BY_PHASE: dict[ConditionType, Callable[[str], Optional[bool]]] = {
    ConditionType.running: lambda n: n in WORKER_PHASES,
    ConditionType.succeeded: lambda n: True if n == "completed" else (False if n in TERMINAL_PHASES else None),
    ConditionType.failed: lambda n: n == "failed",
    ConditionType.reconciling: lambda n: n not in TERMINAL_PHASES,
    ConditionType.stalled: lambda n: n == "failed",
}


def _since(phases: list[dict], rule: Callable[[str], Optional[bool]]) -> Optional[str]:
    """When the rule's present value began: the start of the earliest phase of the trailing run
    of phases for which it has that value."""
    value, began = rule(phases[-1]["name"]), None
    for p in reversed(phases):
        if rule(p["name"]) != value:
            break
        began = p.get("started_at") or began
    return began


def conditions(status: dict, generation: Optional[int], now: datetime) -> list[dict]:
    """`status.conditions` from the phase history of `status` (pure): Accepted, Running,
    Succeeded, Failed, Reconciling, Stalled, in that order; [] before the history starts.

    - Accepted: True once the job was accepted (its effective spec is in status, or it got
      past `queued`); False when it ended before that (the failure's reason, or Cancelled);
      Unknown while it waits `queued` for that (reason Pending, the wait's last words).
    - Running: True in downloading / augmenting / uploading. Succeeded: True when completed,
      False when failed or cancelled, else Unknown. Failed and Stalled: True when failed.
      Reconciling: True until the job ends.
    - reason: the failure's reason (`failure_reason`) for the conditions a failure sets, else
      the current phase in CamelCase (Queued, Augmenting, Completed, ...); message: what the
      current phase last said, for the conditions that are about it.
    - lastTransitionTime changes only when the condition's status does: kept from the stored
      condition while its status stays; on a change, when the history says it changed (the
      start of the phase it changed in), else now.
    """
    phases = status.get("phases") or []
    if not phases:
        return []
    last = phases[-1]
    phase = last["name"]
    said, failed = _said(last), phase == PhaseName.failed.value
    why = failure_reason(status) if failed else camel(phase)
    before = {c.get("type"): c for c in status.get("conditions") or []}
    out = []

    def put(kind: ConditionType, value: Optional[bool], reason: str, message: str, since: Optional[str]) -> None:
        prev, state = before.get(kind.value), _tri(value)
        if prev is not None and prev.get("status") == state and prev.get("lastTransitionTime"):
            moment = prev["lastTransitionTime"]
        else:
            at = parse_ts(since)
            moment = ts(min(at, now) if at else now)
        cond = {"type": kind.value, "status": state, "reason": reason, "message": message,
                "lastTransitionTime": moment}
        if generation is not None:
            cond["observedGeneration"] = generation
        out.append(cond)

    accepted = status.get("effective_spec") is not None or any(
        p["name"] not in (PhaseName.queued.value, *TERMINAL_PHASES) for p in phases)
    if accepted:
        put(ConditionType.accepted, True, "Accepted", "the spec is valid and its project allows it", None)
    elif phase in TERMINAL_PHASES:
        put(ConditionType.accepted, False, why, said, last.get("started_at"))
    else:
        put(ConditionType.accepted, None, "Pending", said, None)
    for kind, rule in _BY_PHASE.items():
        value = rule(phase)
        about_failure = failed and kind in (ConditionType.succeeded, ConditionType.failed, ConditionType.stalled)
        talks = value is True or about_failure or kind is ConditionType.succeeded and value is False
        put(kind, value, why if about_failure else camel(phase), said if talks else "", _since(phases, rule))
    return out


def check(status: dict) -> list[str]:
    """Every broken rule of the module docstring, as text; [] when the status is consistent."""
    problems: list[str] = []
    phases = status.get("phases") or []
    if not phases:
        if status.get("current_phase") or status.get("status"):
            problems.append("status/current_phase set without any phase")
        return problems
    names = [p.get("name") for p in phases]
    last = phases[-1]
    if status.get("current_phase") != last.get("name"):
        problems.append(f"current_phase {status.get('current_phase')!r} != last phase {last.get('name')!r}")
    try:
        expected = job_status_for(last.get("name"))
        if status.get("status") != expected:
            problems.append(f"status {status.get('status')!r} does not match phase {last.get('name')!r} ({expected!r})")
    except ValueError as e:
        problems.append(str(e))
    if len(set(names)) != len(names):
        problems.append(f"a phase appears twice: {names}")
    body = [n for n in names if n not in ("failed", "cancelled")]
    order = [PHASE_ORDER.index(n) for n in body if n in PHASE_ORDER]
    if order != sorted(order):
        problems.append(f"phases out of order: {names}")
    if any(n in ("failed", "cancelled") for n in names[:-1]):
        problems.append(f"a terminal phase is not last: {names}")
    if "completed" in names[:-1]:
        problems.append(f"completed is not last: {names}")
    for p in phases[:-1]:
        if p.get("status") not in ("completed", "failed"):
            problems.append(f"earlier phase {p.get('name')!r} is {p.get('status')!r}")
        if not p.get("completed_at"):
            problems.append(f"earlier phase {p.get('name')!r} has no completed_at")
    if last.get("name") in TERMINAL_PHASES:
        want = "failed" if last.get("name") == "failed" else "completed"
        if last.get("status") != want:
            problems.append(f"terminal phase {last.get('name')!r} is {last.get('status')!r}, expected {want!r}")
    elif last.get("status") != "in_progress":
        problems.append(f"open phase {last.get('name')!r} is {last.get('status')!r}, expected 'in_progress'")
    if (last.get("name") == "failed") != bool(status.get("error")):
        problems.append("error must be set exactly when the job failed")
    for p in phases:
        if not p.get("started_at"):
            problems.append(f"phase {p.get('name')!r} has no started_at")
        stamps = [e.get("timestamp") for e in p.get("events") or []]
        if stamps != sorted(stamps):
            problems.append(f"events of {p.get('name')!r} out of order")
    if "conditions" in status:
        stored = [(c.get("type"), c.get("status"), c.get("reason")) for c in status["conditions"]]
        derived = [(c["type"], c["status"], c["reason"])
                   for c in conditions(status, status.get("observedGeneration"), datetime.now(timezone.utc))]
        if stored != derived:
            problems.append(f"conditions {stored} disagree with the history ({derived})")
    return problems
