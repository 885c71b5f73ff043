"""Webhooks through the real apiserver and the operator as its own process (kwok runs the worker
pods): a job that completes sends one signed POST to a local receiver; a receiver answering 500
twice then 200 gets three attempts, all recorded in status.webhook; a restarted operator sends
nothing more for a delivered state."""
from __future__ import annotations

import base64
import time

import pytest

from tests.operator._cluster_helpers import OperatorProcess, base_config, create_cr, final, wait_cr
from tests.operator._webhook_receiver import Receiver, verify

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SECRET = "whsec_" + base64.b64encode(b"roboaug-webhook-test-key-32bytes").decode()


def test_completed_jobs_send_signed_webhooks_with_retries_recorded(cluster, crd, namespace, k8s, tmp_path):
    k8s.core.create_namespaced_service_account(namespace, {"metadata": {"name": "roboaug-worker"}})
    k8s.core.create_namespaced_secret(namespace, {"metadata": {"name": "hooks"},
                                                  "stringData": {"signing": SECRET}})
    cfg = base_config(namespace, webhooks={"allow_http_hosts": ["127.0.0.1"], "backoff_seconds": 0.5,
                                           "max_backoff_seconds": 1, "secret_names": ["hooks"]})
    ref = {"name": "hooks", "key": "signing"}
    with Receiver([200]) as ok, Receiver([500, 500, 200]) as flaky:
        create_cr(k8s, namespace, "once", notify_url=ok.url, notify_secret=ref)
        create_cr(k8s, namespace, "flaky", notify_url=flaky.url, notify_secret=ref)
        op = OperatorProcess(cluster, cfg, tmp_path).start()
        try:
            delivered = lambda st: (st.get("webhook") or {}).get("state") == "delivered"  # noqa: E731
            once = wait_cr(cluster, k8s, namespace, "once", delivered, "webhook delivered", op=op)
            flaky_cr = wait_cr(cluster, k8s, namespace, "flaky", delivered, "webhook delivered", op=op)
            op.stop()
            op.start()  # a new operator looks at both finished jobs again
            time.sleep(8)
            assert op.alive(), op.tail()
        finally:
            op.stop()
            print(f"--- operator log ({op.log}) ---\n{op.tail(40)}")
        assert len(ok.received) == 1, "one POST for one terminal state, none after the restart"
        assert len(flaky.received) == 3
    st = once["status"]
    assert final(st) and st["status"] == "completed"
    headers, body = ok.received[0]
    doc = verify(SECRET, headers, body)
    assert doc["type"] == "augmentation_job.completed" and doc["data"]["status"] == "completed"
    assert doc["data"]["job_id"] == st["job_id"] and headers["webhook-id"] == st["webhook"]["id"]
    assert [(a["attempt"], a["http_status"]) for a in st["webhook"]["attempts"]] == [(1, 200)]
    wh = flaky_cr["status"]["webhook"]
    assert [(a["attempt"], a["http_status"]) for a in wh["attempts"]] == [(1, 500), (2, 500), (3, 200)]
    assert all(a.get("next_retry_at") for a in wh["attempts"][:2]) and "next_retry_at" not in wh["attempts"][2] \
        or wh["attempts"][2].get("next_retry_at") is None
    assert len({h["webhook-id"] for h, _ in flaky.received}) == 1
    for h, b in flaky.received:
        verify(SECRET, h, b)
