"""The leader Lease's decision rule, without a cluster."""
from datetime import datetime, timedelta, timezone

from roboaug_operator.leader import evaluate

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


def test_released_lease_is_free():
    spec = {"holderIdentity": None, "renewTime": stamp(datetime(1970, 1, 1, tzinfo=timezone.utc)),
            "leaseDurationSeconds": 15}
    assert evaluate(spec, "a", NOW, 15).acquire
