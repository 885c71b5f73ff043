"""The leader Lease's decision rule, without a cluster."""
import copy
import threading
import time
from datetime import datetime, timedelta, timezone

from roboaug.operator.config import LeaderElection
from roboaug.operator.kube import ApiError
from roboaug.operator.leader import LeaderElector, evaluate

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def stamp(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_no_lease_yet_is_taken():
    d = evaluate(None, "a", NOW, 15)
    assert d.acquire and d.spec["holderIdentity"] == "a" and d.spec["leaseDurationSeconds"] == 15
    assert d.spec["leaseTransitions"] == 0


def test_live_lease_of_another_holder_is_respected():
    spec = {"holderIdentity": "b", "renewTime": stamp(NOW - timedelta(seconds=5)), "leaseDurationSeconds": 15}
    d = evaluate(spec, "a", NOW, 15)
    assert not d.acquire and d.holder == "b" and abs(d.wait - 10) < 0.01


def test_expired_lease_is_taken_over_and_counted():
    spec = {"holderIdentity": "b", "renewTime": stamp(NOW - timedelta(seconds=16)),
            "leaseDurationSeconds": 15, "leaseTransitions": 3, "acquireTime": stamp(NOW - timedelta(hours=1))}
    d = evaluate(spec, "a", NOW, 15)
    assert d.acquire and d.spec["holderIdentity"] == "a" and d.spec["leaseTransitions"] == 4
    assert d.spec["acquireTime"] == stamp(NOW)


def test_own_lease_is_renewed_keeping_acquire_time():
    acquired = stamp(NOW - timedelta(minutes=5))
    spec = {"holderIdentity": "a", "renewTime": stamp(NOW - timedelta(seconds=2)), "leaseDurationSeconds": 15,
            "acquireTime": acquired, "leaseTransitions": 2}
    d = evaluate(spec, "a", NOW, 15)
    assert d.acquire and d.spec["acquireTime"] == acquired and d.spec["leaseTransitions"] == 2
    assert d.spec["renewTime"] == stamp(NOW)


def test_released_lease_is_free_and_taking_it_is_a_transition():
    spec = {"holderIdentity": None, "renewTime": stamp(datetime(1970, 1, 1, tzinfo=timezone.utc)),
            "leaseDurationSeconds": 15, "leaseTransitions": 3}
    d = evaluate(spec, "a", NOW, 15)
    assert d.acquire and d.spec["leaseTransitions"] == 4
    assert evaluate(None, "a", NOW, 15).spec["leaseTransitions"] == 0  # a new Lease: no change of holder


class FakeLeases:
    """The Lease API as the apiserver answers it: resourceVersion-guarded PUTs. A GET from the
    renew thread can be held at the gate, to freeze a renewal in flight."""

    def __init__(self):
        self.lease = None
        self.rv = 0
        self.lock = threading.Lock()
        self.gate = None                      # threading.Event, when armed
        self.renew_waiting = threading.Event()
        self.timeouts = []                    # (thread name, timeout) of every call
        self.slow_get = 0.0                   # seconds a renewal's GET takes (a loaded apiserver)

    def request(self, method, path, body=None, resource=None, timeout=None):
        self.timeouts.append((threading.current_thread().name, timeout))
        if method == "GET" and self.gate is not None and threading.current_thread().name == "lease-renew":
            self.renew_waiting.set()
            self.gate.wait(10)  # a call stuck on a silent connection, whatever its timeout
        if method == "GET" and self.slow_get and threading.current_thread().name == "lease-renew":
            time.sleep(min(self.slow_get, timeout or self.slow_get))
            if timeout is not None and timeout < self.slow_get:
                raise TimeoutError(f"read timed out (read timeout={timeout})")
        with self.lock:
            if method == "GET":
                if self.lease is None:
                    raise ApiError(404, "Not Found", {})
                return copy.deepcopy(self.lease)
            if method == "POST" and self.lease is not None:
                raise ApiError(409, "Conflict", {})
            if method == "PUT" and body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", {"message": "the object has been modified"})
            self.rv += 1
            self.lease = copy.deepcopy(body)
            self.lease["metadata"]["resourceVersion"] = str(self.rv)
            return copy.deepcopy(self.lease)


def test_release_does_not_race_a_renewal_in_flight():
    # SIGTERM while the renew thread is between its GET and its PUT: the release must not be
    # undone by that renewal (the standby would then wait a whole lease duration), nor make the
    # renewal think the lease was lost (exit status 1 on a clean shutdown).
    kube = FakeLeases()
    lost = []
    el = LeaderElector(kube, LeaderElection(lease_duration_seconds=15, renew_period_seconds=0.05), "ns",
                       identity="a", on_lost=lambda: lost.append(True))
    el.acquire()
    assert kube.lease["spec"]["holderIdentity"] == "a"
    kube.gate = threading.Event()
    el.start_renewing()
    assert kube.renew_waiting.wait(5)
    releasing = threading.Thread(target=el.release)
    releasing.start()
    time.sleep(0.3)
    kube.gate.set()
    releasing.join(10)
    el._thread.join(10)
    assert not releasing.is_alive() and not el._thread.is_alive()
    assert kube.lease["spec"]["holderIdentity"] is None
    assert evaluate(kube.lease["spec"], "b", datetime.now(timezone.utc), 15).acquire
    assert lost == []


def test_a_leader_that_cannot_renew_stops_before_its_lease_ends():
    # The apiserver stops answering (a paused connection): the renewal hangs in its GET. The
    # watchdog, not the stuck renewal, stops the leader at the renew deadline, while the Lease
    # it last wrote is still its own, so no standby can have taken over yet.
    kube = FakeLeases()
    cfg = LeaderElection(lease_duration_seconds=1.5, renew_period_seconds=0.1, renew_deadline_seconds=0.8)
    lost = []
    el = LeaderElector(kube, cfg, "ns", identity="a", on_lost=lambda: lost.append(datetime.now(timezone.utc)))
    el.acquire()
    el.start_renewing()
    time.sleep(0.5)  # a few renewals go through
    renewed = [n for n, _t in kube.timeouts if n == "lease-renew"]
    assert len(renewed) >= 4
    kube.gate = threading.Event()
    try:
        assert kube.renew_waiting.wait(5)
        written = datetime.fromisoformat(kube.lease["spec"]["renewTime"].replace("Z", "+00:00"))
        expires = written + timedelta(seconds=cfg.lease_duration_seconds)
        deadline = time.monotonic() + 5
        while not lost and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(lost) == 1, "the leader kept acting with a renewal stuck"
        assert lost[0] < expires, f"stopped {(lost[0] - expires).total_seconds():.2f}s after its Lease ended"
        assert (lost[0] - written).total_seconds() >= cfg.renew_deadline - 0.05  # not before its deadline
        # every renewal call was bounded by the deadline, so none outlives the Lease
        assert all(t is not None and 0 < t <= cfg.renew_deadline for n, t in kube.timeouts if n == "lease-renew")
    finally:
        kube.gate.set()
    el._thread.join(5)
    assert not el._thread.is_alive() and len(lost) == 1  # the renewal that came back does not act


def test_slow_renewals_keep_the_lease():
    # Each renewal takes most of a period (a loaded apiserver: measured 3 s of a 5 s period).
    # The next one is due a period after the last one began, so it still has the rest of the
    # deadline for its calls; counted from when the last one ended, it had too little, timed
    # out, and the leader exited in the middle of a 500-job burst.
    kube = FakeLeases()
    cfg = LeaderElection(lease_duration_seconds=1.6, renew_period_seconds=0.5, renew_deadline_seconds=1.2)
    lost = []
    el = LeaderElector(kube, cfg, "ns", identity="a", on_lost=lambda: lost.append(True))
    el.acquire()
    kube.slow_get = 0.45
    el.start_renewing()
    time.sleep(3.0)
    el.release()
    el._thread.join(5)
    assert lost == []
    assert len([n for n, _t in kube.timeouts if n == "lease-renew"]) >= 8  # >= 4 renewals, GET + PUT each


def test_acquiring_uses_the_plain_api_timeout():
    kube = FakeLeases()
    el = LeaderElector(kube, LeaderElection(), "ns", identity="a", on_lost=lambda: None)
    el.acquire()
    assert [t for _n, t in kube.timeouts] == [None, None]  # GET (404) and POST: Kube's own timeout
