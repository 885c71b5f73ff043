"""Webhooks (issue 15 item 7): signing, payload, retries and restart safety of
`roboaug.operator.webhooks`, checked by an independent Standard Webhooks verifier and a real
local HTTP receiver (the operator as a process: test_webhooks_cluster.py)."""
from __future__ import annotations

import asyncio
import base64
import copy
import json
from datetime import datetime, timedelta, timezone

import pytest

from roboaug.api.gateway.service import status_from_cr
from roboaug.api.models import AugmentationJobCreateRequest
from roboaug.api.models.webhook import check_notify_url
from roboaug.operator import webhooks
from roboaug.operator.config import WebhookConfig
from roboaug.operator.kube import ApiError
from tests.operator._webhook_receiver import Receiver, Unverified, verify

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
PROJECT = "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0"
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
FAST = WebhookConfig(allow_http_hosts=["127.0.0.1"], backoff_seconds=0.05, max_backoff_seconds=0.2,
                     max_attempts=5, timeout_seconds=5)


def finished_cr(url: str, state: str = "completed", uid: str = "0b7e0c2e-5d0c-4b8e-9a53-2c3f2a9c1d11") -> dict:
    spec = {"project_id": PROJECT, "dataset_id": "lerobot/pusht", "notify_url": url}
    ts = lambda s: (T0 + timedelta(seconds=s)).isoformat().replace("+00:00", "Z")  # noqa: E731
    phases = [{"name": "queued", "status": "completed", "started_at": ts(0), "completed_at": ts(1), "events": []},
              {"name": "augmenting", "status": "completed", "started_at": ts(1), "completed_at": ts(9), "events": []},
              {"name": state, "status": "completed" if state == "completed" else "failed",
               "started_at": ts(9), "completed_at": ts(9), "events": []}]
    return {"apiVersion": "roboaug.dev/v1alpha1", "kind": "AugmentationJob",
            "metadata": {"name": "j1", "namespace": "team", "uid": uid, "resourceVersion": "7",
                         "creationTimestamp": ts(0)},
            "spec": spec,
            "status": {"job_id": "5b0b8f0e-1111-4c4c-8d8d-000000000001", "status": state, "current_phase": state,
                       "phases": phases, "augmented_dataset_id": "lerobot/pusht-augmented-5b0b8f0e",
                       "effective_spec": AugmentationJobCreateRequest.model_validate(spec).model_dump(mode="json"),
                       "spec_sources": {"notify_url": "request"}, "attempt": 0, "job_name": "j1-worker"}}


class FakeKube:
    """The three calls the notifier makes; status patches are applied to `cr`."""

    def __init__(self, cr: dict, secret: str = SECRET, project_secret: dict | None = None):
        self.cr = cr
        self.secret = secret
        self.project_secret = project_secret if project_secret is not None else {"name": "hooks", "key": "k"}
        self.patches: list[dict] = []
        self.secret_reads = 0

    def get_project(self, ns, name):
        return {"spec": {"notify_secret": self.project_secret}} if self.project_secret else {"spec": {}}

    def request(self, method, path, body=None, query=None, content_type=None, resource=None):
        assert (method, resource) == ("GET", "secrets") and path == "/api/v1/namespaces/team/secrets/hooks"
        self.secret_reads += 1
        return {"data": {"k": base64.b64encode(self.secret.encode()).decode()}}

    def patch_cr_status(self, ns, name, status, rv):
        assert rv is None and set(status) == {"webhook"}  # never touches what the controller writes
        self.patches.append(copy.deepcopy(status["webhook"]))
        self.cr["status"].update(status)
        return self.cr


def run(cr: dict, kube: FakeKube, cfg: WebhookConfig = FAST) -> webhooks.Notifier:
    async def go():
        n = webhooks.Notifier(cfg, kube)
        n.notice(("team", "j1"), cr)
        await n.idle()
        return n
    return asyncio.run(go())


# -- signing ------------------------------------------------------------------------------------
def test_signature_matches_the_spec_example_and_an_independent_verifier():
    # The example of the Standard Webhooks specification (secret, id, timestamp, body -> signature).
    key = webhooks.signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert webhooks.sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}') \
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    body = webhooks.payload(finished_cr("https://hooks.example/x"))
    hdrs = webhooks.headers(webhooks.signing_key(SECRET), "msg_1", 1_700_000_000, body)
    assert verify(SECRET, hdrs, body, now=1_700_000_000)["type"] == "augmentation_job.completed"
    with pytest.raises(Unverified):
        verify(SECRET, hdrs, body + b" ", now=1_700_000_000)
    with pytest.raises(Unverified):  # replayed an hour later
        verify(SECRET, hdrs, body, now=1_700_003_600)


@pytest.mark.parametrize("secret, rule", [("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with"),
                                          ("whsec_not base64!", "not base64"),
                                          ("whsec_" + base64.b64encode(b"short").decode(), "24..64 bytes")])
def test_bad_secrets_are_refused_naming_the_rule(secret, rule):
    with pytest.raises(webhooks.Refused, match=rule) as e:
        webhooks.signing_key(secret)
    assert "notify_secret" in str(e.value)


# -- payload --------------------------------------------------------------------------------------
def test_payload_is_type_timestamp_and_the_rest_answer():
    for state in ("completed", "failed", "cancelled"):
        cr = finished_cr("https://hooks.example/x", state)
        doc = json.loads(webhooks.payload(cr))
        assert set(doc) == {"type", "timestamp", "data"}
        assert doc["type"] == f"augmentation_job.{state}"
        assert doc["timestamp"] == "2026-05-01T12:00:09Z"  # when the state began: same bytes every attempt
        assert doc["data"] == status_from_cr(cr).model_dump(mode="json")  # the gateway's GET answer
        assert webhooks.payload(cr) == webhooks.payload(copy.deepcopy(cr))


def test_webhook_id_is_stable_per_job_and_state():
    a = webhooks.webhook_id("uid-1", "completed")
    assert a == webhooks.webhook_id("uid-1", "completed") and a.startswith("msg_")
    assert len({a, webhooks.webhook_id("uid-1", "failed"), webhooks.webhook_id("uid-2", "completed")}) == 3


# -- retries ------------------------------------------------------------------------------------
def test_outcomes_and_backoff():
    cfg = WebhookConfig(backoff_seconds=10, max_backoff_seconds=60, max_attempts=4)
    assert [webhooks.retry_delay(n, cfg) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]
    rec, st = webhooks.outcome(1, 204, None, T0, cfg)
    assert st == "delivered" and rec.next_retry_at is None and rec.error is None
    rec, st = webhooks.outcome(2, 500, None, T0, cfg)
    assert st == "retrying" and rec.next_retry_at == T0 + timedelta(seconds=20) and rec.error == "HTTP 500"
    rec, st = webhooks.outcome(1, 410, None, T0, cfg)
    assert st == "abandoned" and rec.next_retry_at is None and "410" in rec.error
    rec, st = webhooks.outcome(4, None, "timed out", T0, cfg)
    assert st == "abandoned" and "gave up after 4 attempts" in rec.error
    rec, st = webhooks.outcome(1, None, "notify_url: http://...", T0, cfg, final=True)
    assert st == "abandoned" and rec.next_retry_at is None


def test_due_reads_only_status():
    cr = finished_cr("https://hooks.example/x")
    assert webhooks.due(cr) == webhooks.Due(attempt=1, at=None)
    msg_id = webhooks.webhook_id(cr["metadata"]["uid"], "completed")
    later = T0 + timedelta(seconds=30)
    cr["status"]["webhook"] = {"id": msg_id, "type": "augmentation_job.completed", "state": "retrying",
                               "attempts": [{"attempt": 2, "time": T0.isoformat(), "http_status": 500,
                                             "next_retry_at": later.isoformat()}]}
    assert webhooks.due(cr) == webhooks.Due(attempt=3, at=later)
    for done in ("delivered", "abandoned"):
        cr["status"]["webhook"]["state"] = done
        assert webhooks.due(cr) is None
    cr["status"]["webhook"]["id"] = webhooks.webhook_id(cr["metadata"]["uid"], "failed")  # another state's
    assert webhooks.due(cr) == webhooks.Due(attempt=1, at=None)
    assert webhooks.due(finished_cr(None)) is None
    running = finished_cr("https://hooks.example/x")
    running["status"]["status"] = "running"
    assert webhooks.due(running) is None


# -- where it may go ------------------------------------------------------------------------------
@pytest.mark.parametrize("url, rule", [
    ("http://169.254.169.254/latest/meta-data", "link-local or cloud metadata"),
    ("https://[fe80::1]/x", "link-local"),
    ("https://2852039166/x", "link-local"),  # 169.254.169.254 as one decimal number
    ("https://metadata.google.internal/x", "cloud metadata"),
    ("https://user:pw@hooks.example/x", "credentials"),
    ("ftp://hooks.example/x", "https://"),
    ("https://hooks.example/" + "a" * 2048, "at most 2048"),
    ("https:///x", "no host"),
])
def test_notify_url_rules_name_the_field(url, rule):
    with pytest.raises(ValueError, match=rule) as e:
        check_notify_url(url)
    assert str(e.value).startswith("notify_url: ")
    with pytest.raises(ValueError, match="notify_url"):
        AugmentationJobCreateRequest(project_id=PROJECT, dataset_id="a/b", notify_url=url)


def test_targets_checked_on_the_resolved_address():
    cfg = WebhookConfig(allow_http_hosts=["127.0.0.1", "hooks.local"])
    to = lambda addr: (lambda host, port: [addr])  # noqa: E731
    assert webhooks.check_target("https://hooks.example/x", cfg, to("203.0.113.7")) == \
        ("https", "hooks.example", 443, "203.0.113.7")
    with pytest.raises(webhooks.Refused, match="resolves to 169.254.169.254"):
        webhooks.check_target("https://evil.example/x", cfg, to("169.254.169.254"))
    with pytest.raises(webhooks.Refused, match="loopback"):
        webhooks.check_target("https://evil.example/x", cfg, to("127.0.0.1"))
    with pytest.raises(webhooks.Refused, match="webhooks.allowHttpHosts"):
        webhooks.check_target("http://hooks.example/x", cfg, to("203.0.113.7"))
    assert webhooks.check_target("http://hooks.local:8080/x", cfg, to("127.0.0.1"))[3] == "127.0.0.1"


def test_secret_by_reference_project_first():
    cr = finished_cr("https://hooks.example/x")
    project = {"spec": {"notify_secret": {"name": "hooks", "key": "k"}}}
    assert webhooks.secret_ref(cr, project) == {"name": "hooks", "key": "k"}
    cr["spec"]["notify_secret"] = {"name": "mine", "key": "k"}
    assert webhooks.secret_ref(cr, {"spec": {}}) == {"name": "mine", "key": "k"}
    with pytest.raises(webhooks.Refused, match="'mine' but its project signs with 'hooks'"):
        webhooks.secret_ref(cr, project)
    del cr["spec"]["notify_secret"]
    with pytest.raises(webhooks.Refused, match="neither the project nor the job"):
        webhooks.secret_ref(cr, {"spec": {}})


# -- the sender, against a real HTTP receiver ----------------------------------------------------
def test_one_signed_post_when_the_receiver_answers_200():
    with Receiver([200]) as rx:
        cr = finished_cr(rx.url)
        kube = FakeKube(cr)
        run(cr, kube)
    assert len(rx.received) == 1
    hdrs, body = rx.received[0]
    doc = verify(SECRET, hdrs, body)
    assert doc["data"]["status"] == "completed" and doc["data"]["job_id"] == cr["status"]["job_id"]
    assert hdrs["webhook-id"] == webhooks.webhook_id(cr["metadata"]["uid"], "completed")
    assert kube.patches[-1]["state"] == "delivered"
    assert [(a["attempt"], a["http_status"]) for a in kube.patches[-1]["attempts"]] == [(1, 200)]


def test_500_twice_then_200_records_three_attempts_with_one_id():
    with Receiver([500, 500, 200]) as rx:
        cr = finished_cr(rx.url, "failed")
        kube = FakeKube(cr)
        run(cr, kube)
    assert len(rx.received) == 3
    assert len({h["webhook-id"] for h, _ in rx.received}) == 1
    for h, b in rx.received:
        verify(SECRET, h, b)
    final = cr["status"]["webhook"]
    assert final["state"] == "delivered" and final["type"] == "augmentation_job.failed"
    assert [(a["attempt"], a["http_status"]) for a in final["attempts"]] == [(1, 500), (2, 500), (3, 200)]
    assert all(a.get("next_retry_at") for a in final["attempts"][:2]) and not final["attempts"][2].get("next_retry_at")
    assert [p["state"] for p in kube.patches] == ["retrying", "retrying", "delivered"]  # each recorded before the next


def test_410_stops_and_attempts_are_bounded():
    with Receiver([410]) as rx:
        cr = finished_cr(rx.url)
        run(cr, FakeKube(cr))
    assert len(rx.received) == 1 and cr["status"]["webhook"]["state"] == "abandoned"
    with Receiver([503]) as rx:
        cr = finished_cr(rx.url)
        run(cr, FakeKube(cr))
    assert len(rx.received) == FAST.max_attempts
    final = cr["status"]["webhook"]
    assert final["state"] == "abandoned" and final["attempts"][-1]["attempt"] == FAST.max_attempts


def test_a_restarted_operator_resumes_from_status_and_never_resends_a_delivered_state():
    with Receiver([500, 200]) as rx:
        cr = finished_cr(rx.url)
        kube = FakeKube(cr)
        run(cr, kube)
        assert len(rx.received) == 2
        run(copy.deepcopy(cr), FakeKube(copy.deepcopy(cr)))  # a new operator, status says delivered
        assert len(rx.received) == 2
    # Stopped after attempt 1 (retrying): the next operator goes on with attempt 2, same id.
    with Receiver([200]) as rx:
        cr = finished_cr(rx.url)
        msg_id = webhooks.webhook_id(cr["metadata"]["uid"], "completed")
        cr["status"]["webhook"] = {"id": msg_id, "type": "augmentation_job.completed", "state": "retrying",
                                   "attempts": [{"attempt": 1, "time": T0.isoformat(), "http_status": 502,
                                                 "next_retry_at": T0.isoformat()}]}
        run(cr, FakeKube(cr))
    assert [h["webhook-id"] for h, _ in rx.received] == [msg_id]
    assert [(a["attempt"], a["http_status"]) for a in cr["status"]["webhook"]["attempts"]] == [(1, 502), (2, 200)]


def test_refusals_are_recorded_not_retried_and_name_the_field():
    with Receiver([200]) as rx:
        cr = finished_cr(rx.url)
        kube = FakeKube(cr)
        run(cr, kube, WebhookConfig(backoff_seconds=0.05))  # 127.0.0.1 not allowed for http
        cr2 = finished_cr(rx.url)
        kube2 = FakeKube(cr2, project_secret={})
        run(cr2, kube2)
        cr3 = finished_cr(rx.url)
        run(cr3, FakeKube(cr3), FAST.model_copy(update={"secret_names": ["roboaug-webhook"]}))
    assert rx.received == []
    for c, field, rule in ((cr, "notify_url", "webhooks.allowHttpHosts"), (cr2, "notify_secret", "neither"),
                           (cr3, "notify_secret", "webhooks.secretNames")):
        final = c["status"]["webhook"]
        assert final["state"] == "abandoned" and len(final["attempts"]) == 1
        assert final["attempts"][0]["error"].startswith(field) and rule in final["attempts"][0]["error"]
    assert kube.secret_reads == 1 and kube2.secret_reads == 0  # refused before any Secret was read, or after
    assert SECRET not in json.dumps([cr["status"], cr2["status"], cr3["status"]])


def test_a_deleted_job_ends_its_delivery():
    class Gone(FakeKube):
        def patch_cr_status(self, *a):
            raise ApiError(404, "Not Found", {"message": "gone"})
    with Receiver([500]) as rx:
        cr = finished_cr(rx.url)
        run(cr, Gone(cr))
    assert len(rx.received) == 1
