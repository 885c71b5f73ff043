"""One active replica at a time, through a coordination.k8s.io/v1 Lease (like controller-runtime).

Why a Lease and not kopf's peering: peering needs two extra cluster CRDs (KopfPeering) and only
pauses lower-priority peers; a Lease is the Kubernetes-native lock, needs no CRD, and makes a
standby replica take over within `lease_duration_seconds` of the leader dying. The operator
acquires the lease *before* it starts watching and renews it in a background thread. A leader
that has not renewed for the renew deadline (below the lease duration) exits (status 1, so the
pod restarts as a standby): a watchdog thread decides this, not the renewal, which may be stuck
in a call to an apiserver that stopped answering; and each renewal call times out by the
deadline. So a cut-off leader stops acting while its Lease is still its own, before a standby
may take it: two replicas never act at the same time. On a clean shutdown it releases the lease
so a standby takes over at once.

`evaluate` is the pure part (tested without a cluster); `LeaderElector` does the I/O.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Optional

from .config import LeaderElection
from .kube import ApiError, Kube

log = logging.getLogger("roboaug.operator.leader")
RETRY_SECONDS = 1.0
"""After a failed renewal, the next try (client-go retries every 2 s of its 10 s deadline)."""


def _micro(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Optional[str]) -> Optional[datetime]:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Decision:
    acquire: bool              # write `spec` (take over or renew)
    spec: Optional[dict]       # the Lease spec to write
    wait: float                # seconds until trying again when not acquiring
    holder: Optional[str]


def evaluate(spec: Optional[dict], identity: str, now: datetime, duration: float) -> Decision:
    """Given the Lease's current spec (None: no Lease yet), should `identity` write it?"""
    held_before = bool(spec)  # a Lease someone has held (maybe released since), not a new one
    spec = dict(spec or {})
    holder = spec.get("holderIdentity")
    renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
    held_for = float(spec.get("leaseDurationSeconds") or duration)
    expired = renewed is None or now >= renewed + timedelta(seconds=held_for)
    mine = holder == identity
    if holder and not mine and not expired:
        return Decision(False, None, max(0.1, (renewed + timedelta(seconds=held_for) - now).total_seconds()), holder)
    new = {
        "holderIdentity": identity,
        "leaseDurationSeconds": int(max(1, round(duration))),
        "renewTime": _micro(now),
        "acquireTime": spec.get("acquireTime") if mine and spec.get("acquireTime") else _micro(now),
        # as client-go counts: every change of holder, a released Lease's included
        "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if mine or not held_before else 1),
    }
    return Decision(True, new, 0.0, holder)


def default_identity() -> str:
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}-{os.getpid()}"


class LeaderElector:
    def __init__(self, kube: Kube, cfg: LeaderElection, namespace: str,
                 identity: Optional[str] = None, on_lost: Optional[Callable[[], None]] = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.kube = kube
        self.cfg = cfg
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.on_lost = on_lost or (lambda: os._exit(1))
        self.clock = clock
        self._stop = threading.Event()
        # Held for a whole renewal (GET, decide, PUT) and for the release: a renewal that read
        # the Lease just before a release would otherwise write it back right after it (taking
        # the released Lease again, so the standby waits out a whole duration) or take the
        # release's 409 for a lost Lease.
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._watchdog: Optional[threading.Thread] = None
        # monotonic time at which the last successful write of the Lease began: the Lease runs
        # from no earlier than that, so stopping by it + renew deadline stops inside the Lease
        self._last_renew = 0.0
        self._leading = False

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.cfg.lease_name}"

    def _request(self, method: str, path: str, body: Optional[dict] = None):
        """A Lease call; while leading, it gives up by the renew deadline (a call still waiting
        then is of no use: the watchdog stops us)."""
        timeout = None
        if self._leading:
            timeout = max(0.05, self._last_renew + self.cfg.renew_deadline - time.monotonic())
        return self.kube.request(method, path, body, resource="leases", timeout=timeout)

    def _try_once(self) -> Decision:
        began = time.monotonic()
        try:
            lease = self._request("GET", self.path)
        except ApiError as e:
            if e.status != 404:
                raise
            lease = None
        decision = evaluate((lease or {}).get("spec"), self.identity, self.clock(),
                            self.cfg.lease_duration_seconds)
        if not decision.acquire:
            return decision
        try:
            if lease is None:
                self._request("POST", self.path.rsplit("/", 1)[0], {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.cfg.lease_name, "namespace": self.namespace},
                    "spec": decision.spec})
            else:
                body = dict(lease)
                body["spec"] = decision.spec
                self._request("PUT", self.path, body)  # resourceVersion guards it
        except ApiError as e:
            if e.status in (409, 422):  # someone else wrote first
                return Decision(False, None, 0.5, decision.holder)
            raise
        self._last_renew = began
        return decision

    def acquire(self) -> None:
        """Block until this process holds the lease."""
        announced = None
        while not self._stop.is_set():
            try:
                d = self._try_once()
            except Exception as e:
                log.warning("leader election: %s", e)
                d = Decision(False, None, 1.0, None)
            if d.acquire:
                log.info("became leader (lease %s/%s, identity %s)", self.namespace, self.cfg.lease_name, self.identity)
                return
            if d.holder != announced:
                log.info("waiting for lease %s/%s held by %s", self.namespace, self.cfg.lease_name, d.holder)
                announced = d.holder
            self._stop.wait(min(d.wait, self.cfg.renew_period_seconds))

    def start_renewing(self) -> None:
        self._leading = True
        self._thread = threading.Thread(target=self._renew_loop, name="lease-renew", daemon=True)
        self._thread.start()
        self._watchdog = threading.Thread(target=self._watch, name="lease-watchdog", daemon=True)
        self._watchdog.start()

    def _lost(self, why: str) -> None:
        if self._stop.is_set():  # released, or already stopping
            return
        self._stop.set()
        self._leading = False
        log.error("%s; exiting", why)
        self.on_lost()

    def _watch(self) -> None:
        """Stop once the renew deadline has passed without a renewal, whatever the renewal is
        doing (a call to an apiserver that stopped answering may not come back in time)."""
        while not self._stop.is_set():
            left = self._last_renew + self.cfg.renew_deadline - time.monotonic()
            if left <= 0:
                self._lost(f"could not renew the lease within its renew deadline "
                           f"({self.cfg.renew_deadline:g}s of {self.cfg.lease_duration_seconds:g}s)")
                return
            self._stop.wait(left)

    def _renew_loop(self) -> None:
        wait = self.cfg.renew_period_seconds
        while not self._stop.wait(wait):
            try:
                with self._lock:
                    if self._stop.is_set():  # released meanwhile: nothing to renew
                        return
                    d = self._try_once()
                if not d.acquire:
                    self._lost(f"lost the lease to {d.holder}")
                    return
                # Due a period after this renewal *began*, not after it ended: on a loaded
                # apiserver a renewal took 3 s, the next began 8 s into the 10 s deadline with
                # under 2 s for its GET and PUT, timed out, and the operator exited mid-burst.
                wait = max(0.0, self._last_renew + self.cfg.renew_period_seconds - time.monotonic())
            except Exception as e:  # the watchdog stops us if this goes on past the deadline
                log.warning("lease renewal failed (will retry): %s", e)
                wait = min(RETRY_SECONDS, self.cfg.renew_period_seconds)  # soon: the deadline is near

    def release(self) -> None:
        """Give the lease up (clean shutdown) so a standby takes over immediately."""
        self._stop.set()
        try:
            with self._lock:
                self._leading = False
                lease = self._request("GET", self.path)
                if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                    lease["spec"]["holderIdentity"] = None
                    lease["spec"]["renewTime"] = _micro(datetime(1970, 1, 1, tzinfo=timezone.utc))
                    self._request("PUT", self.path, lease)
                    log.info("released lease %s/%s", self.namespace, self.cfg.lease_name)
        except Exception as e:
            log.warning("could not release the lease: %s", e)
