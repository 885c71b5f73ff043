"""Signed webhooks: one POST to the job's `notify_url` per terminal state (completed, failed,
cancelled), following the Standard Webhooks convention (https://www.standardwebhooks.com/).

Headers `webhook-id` (stable per job and state, so a receiver dedupes a repeat), `webhook-timestamp`
(Unix seconds of this attempt) and `webhook-signature` = `v1,` + base64(HMAC-SHA256(key,
"{id}.{timestamp}.{body}")), where the key is the base64 text after `whsec_` of the secret named by
reference (the project's `notify_secret`, else the CR's). The body is {"type":
"augmentation_job.<state>", "timestamp": when the state began, "data": the REST GET answer}, the
same bytes on every attempt.

Retries: a 2xx ends the delivery (`delivered`), so does 410 Gone (`abandoned`: the receiver asks
to stop); anything else is tried again after backoff (base * 2^(n-1), capped) until
`max_attempts`. Every attempt is recorded in `status.webhook` before the next one is planned, so
an operator restarted meanwhile resumes from status: it never sends again for a state status
calls delivered (or abandoned), and a repeat after a crash between a POST and its record carries
the same webhook-id.

The pure parts (sign, payload, what to do next) are plain functions; `Notifier` is the small
async sender the controller hands finished jobs to.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from roboaug.api.models.status import AugmentationJobStatus, AugmentationStatusResponse, JobStatus
from roboaug.api.models.webhook import (
    MAX_ATTEMPTS_RECORDED,
    DeliveryState,
    WebhookAttempt,
    WebhookDelivery,
    check_notify_url,
    event_type,
    forbidden_address,
)

from .config import WebhookConfig
from .kube import ApiError
from .observe import cr_project

log = logging.getLogger("roboaug.operator.webhooks")
SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES = 24  # Standard Webhooks: secrets of 24 to 64 random bytes
MAX_KEY_BYTES = 64
MAX_ERROR_CHARS = 300
TERMINAL = (JobStatus.completed.value, JobStatus.failed.value, JobStatus.cancelled.value)


class Refused(Exception):
    """A delivery that cannot work as configured (URL, secret): recorded and not retried."""


class AttemptFailed(Exception):
    """An attempt that may work later (network, a Secret not there yet): recorded and retried."""


# -- pure functions ---------------------------------------------------------------------------
def webhook_id(job_uid: str, state: str) -> str:
    """The `webhook-id` for one job's terminal state: the same across attempts and restarts."""
    return "msg_" + hashlib.sha256(f"{job_uid}.{state}".encode()).hexdigest()[:32]


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (`whsec_` + base64 of 24..64 random bytes)."""
    text = secret.strip()
    if not text.startswith(SECRET_PREFIX):
        raise Refused(f"notify_secret: the secret must start with {SECRET_PREFIX!r} followed by base64 "
                      "(Standard Webhooks)")
    try:
        key = base64.b64decode(text[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise Refused(f"notify_secret: the text after {SECRET_PREFIX!r} is not base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise Refused(f"notify_secret: the key must be {MIN_KEY_BYTES}..{MAX_KEY_BYTES} bytes "
                      f"(got {len(key)})")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"content-type": "application/json", "user-agent": "roboaug-operator",
            "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(key, msg_id, timestamp, body)}


def status_answer(cr: dict) -> dict:
    """The job's REST GET answer (AugmentationStatusResponse) for a job the operator has
    settled: its stored status, the response's fields only (the gateway's `status_from_cr`
    does the same; tests/operator/test_webhooks.py compares the two)."""
    stored = AugmentationJobStatus.model_validate((cr.get("status") or {}))
    data = stored.model_dump(include=set(AugmentationStatusResponse.model_fields))
    spec, meta = cr.get("spec") or {}, cr.get("metadata") or {}
    data["job_id"] = data.get("job_id") or spec.get("job_id") or meta.get("uid")
    data["created_at"] = data.get("created_at") or meta.get("creationTimestamp")
    return AugmentationStatusResponse.model_validate(data).model_dump(mode="json")


def state_began(status: dict, state: str) -> Optional[str]:
    """When the job entered its terminal phase (the last phase of that name), as stored."""
    for phase in reversed(status.get("phases") or []):
        if phase.get("name") == state:
            return phase.get("started_at")
    return None


def payload(cr: dict) -> bytes:
    """The body, the same bytes on every attempt (its timestamp is when the state began)."""
    status = cr.get("status") or {}
    state = status["status"]
    answer = status_answer(cr)
    doc = {"type": event_type(state),
           "timestamp": state_began(status, state) or answer.get("created_at"),
           "data": answer}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def retry_delay(attempt: int, cfg: WebhookConfig) -> float:
    """Seconds after failed attempt `attempt` (1-based) before the next one."""
    return min(cfg.max_backoff_seconds, cfg.backoff_seconds * 2 ** (attempt - 1))


def outcome(attempt: int, http_status: Optional[int], error: Optional[str], now: datetime,
            cfg: WebhookConfig, final: bool = False) -> tuple[WebhookAttempt, DeliveryState]:
    """The record of attempt `attempt` and the delivery's state after it. `final`: the failure
    cannot be helped by trying again (a URL or secret refused)."""
    if http_status is not None and 200 <= http_status < 300:
        return WebhookAttempt(attempt=attempt, time=now, http_status=http_status), DeliveryState.delivered
    if http_status is not None and error is None:
        error = "410 Gone: the receiver asked to stop" if http_status == 410 else f"HTTP {http_status}"
    if final or http_status == 410 or attempt >= cfg.max_attempts:
        if attempt >= cfg.max_attempts and not final and http_status != 410:
            error = f"{error}; gave up after {attempt} attempts"
        return (WebhookAttempt(attempt=attempt, time=now, http_status=http_status, error=error[:500]),
                DeliveryState.abandoned)
    nxt = now + timedelta(seconds=retry_delay(attempt, cfg))
    return (WebhookAttempt(attempt=attempt, time=now, http_status=http_status, error=error[:500],
                           next_retry_at=nxt), DeliveryState.retrying)


def record(previous: Optional[WebhookDelivery], msg_id: str, state: str, attempt: WebhookAttempt,
           after: DeliveryState) -> WebhookDelivery:
    """status.webhook with `attempt` appended (the latest MAX_ATTEMPTS_RECORDED kept)."""
    kept = list(previous.attempts) if previous is not None and previous.id == msg_id else []
    return WebhookDelivery(id=msg_id, type=event_type(state), state=after,
                           attempts=(kept + [attempt])[-MAX_ATTEMPTS_RECORDED:])


@dataclass(frozen=True)
class Due:
    """What to do for a finished job: attempt number `attempt` at `at` (None: now)."""
    attempt: int
    at: Optional[datetime]


def due(cr: dict) -> Optional[Due]:
    """Whether a finished job still owes a webhook, from its status alone (so a restarted
    operator decides as the one before it): None when it has no notify_url or the delivery for
    its terminal state is delivered or abandoned."""
    status = cr.get("status") or {}
    state = status.get("status")
    url = (status.get("effective_spec") or {}).get("notify_url")
    if state not in TERMINAL or not url:
        return None
    msg_id = webhook_id((cr.get("metadata") or {}).get("uid", ""), state)
    raw = status.get("webhook")
    if not raw or raw.get("id") != msg_id:
        return Due(attempt=1, at=None)
    delivery = WebhookDelivery.model_validate(raw)
    if delivery.state != DeliveryState.retrying.value or not delivery.attempts:
        return None
    last = delivery.attempts[-1]
    return Due(attempt=last.attempt + 1, at=last.next_retry_at)


def secret_ref(cr: dict, project: Optional[dict]) -> dict:
    """The Secret {name, key} that signs this job's webhooks: the project's, else the CR's."""
    mine = (cr.get("spec") or {}).get("notify_secret")
    theirs = ((project or {}).get("spec") or {}).get("notify_secret")
    if theirs and mine and (mine.get("name"), mine.get("key", "token")) != (theirs.get("name"), theirs.get("key", "token")):
        raise Refused(f"notify_secret: the job names Secret {mine.get('name')!r} but its project signs with "
                      f"{theirs.get('name')!r}; leave it out or name the project's")
    ref = theirs or mine
    if not ref:
        raise Refused("notify_secret: neither the project nor the job names the Secret holding the signing "
                      "secret (notify_secret: {name, key})")
    return {"name": ref["name"], "key": ref.get("key") or "token"}


def check_target(url: str, cfg: WebhookConfig,
                 resolve: Callable[[str, int], list[str]]) -> tuple[str, str, int, str]:
    """(scheme, host, port, the address to connect to) for `url`, or Refused naming notify_url.

    http only for hosts in `allow_http_hosts` (the chart's `webhooks.allowHttpHosts`), which may
    also resolve to loopback; every resolved address is checked, and the one connected to is the
    one checked (no second lookup a DNS answer could change in between)."""
    try:
        check_notify_url(url)
    except ValueError as e:
        raise Refused(str(e)) from None
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    allowed = host in {h.lower() for h in cfg.allow_http_hosts}
    if parts.scheme == "http" and not allowed:
        raise Refused(f"notify_url: http:// is allowed only for hosts the deployment lists in "
                      f"webhooks.allowHttpHosts ({host!r} is not); use https://")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = resolve(host, port)
    except OSError as e:
        raise AttemptFailed(f"cannot resolve {host}: {e}") from None
    if not addresses:
        raise AttemptFailed(f"cannot resolve {host}")
    for addr in addresses:
        ip = ipaddress.ip_address(addr.split("%")[0])
        why = forbidden_address(ip)
        if why is None and ip.is_loopback and not allowed:
            why = "a loopback address"
        if why:
            raise Refused(f"notify_url: {host} resolves to {addr}, {why}, which the operator never calls")
    return parts.scheme, host, port, addresses[0]


def resolve(host: str, port: int) -> list[str]:
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


# -- sending ----------------------------------------------------------------------------------
class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:  # TLS to the checked address, verified against the URL's host
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(url: str, body: bytes, hdrs: dict[str, str], cfg: WebhookConfig,
         resolver: Callable[[str, int], list[str]] = resolve) -> int:
    """POST once (no redirects followed); the receiver's HTTP status."""
    scheme, host, port, address = check_target(url, cfg, resolver)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cls = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    conn = cls(host, port, address, cfg.timeout_seconds)
    try:
        conn.request("POST", path, body=body, headers=hdrs)
        resp = conn.getresponse()
        resp.read(64 * 1024)
        return resp.status
    except (OSError, http.client.HTTPException) as e:
        # No URL in the text: its path or query may carry a receiver's token.
        raise AttemptFailed(f"POST to {host}: {type(e).__name__}: {e}"[:MAX_ERROR_CHARS]) from None
    finally:
        conn.close()


class Notifier:
    """Delivers the webhooks of finished jobs, one task per job at a time.

    `notice` is called by the controller whenever it looks at a finished job (its terminal
    status write coming back through the watch, an operator start); it does nothing unless
    status says a delivery is owed and none is in flight here."""

    def __init__(self, cfg: WebhookConfig, kube: Any,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 call: Optional[Callable[..., Any]] = None,
                 resolver: Callable[[str, int], list[str]] = resolve):
        self.cfg = cfg
        self.kube = kube
        self.clock = clock
        self.resolver = resolver
        self._call = call or (lambda fn, *a: asyncio.get_running_loop().run_in_executor(None, fn, *a))
        self._tasks: dict[tuple[str, str], asyncio.Task] = {}

    def notice(self, key: tuple[str, str], cr: dict) -> None:
        if not self.cfg.enabled or key in self._tasks or due(cr) is None:
            return
        task = asyncio.ensure_future(self._deliver(key, cr))
        self._tasks[key] = task
        task.add_done_callback(lambda _t: self._tasks.pop(key, None))

    async def idle(self) -> None:
        """Wait for every delivery in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def _deliver(self, key: tuple[str, str], cr: dict) -> None:
        ns, name = key
        status = cr["status"]
        state = status["status"]
        msg_id = webhook_id(cr["metadata"]["uid"], state)
        url = status["effective_spec"]["notify_url"]
        body = payload(cr)
        delivery = WebhookDelivery.model_validate(status["webhook"]) if status.get("webhook") else None
        nxt = due(cr)
        while nxt is not None:
            if nxt.at is not None:
                wait = (nxt.at - self.clock()).total_seconds()
                if wait > 0:
                    await asyncio.sleep(wait)
            http_status = error = None
            final = False
            try:
                key_bytes = await self._signing_key(cr)
                now = int(self.clock().timestamp())
                http_status = await self._call(post, url, body, headers(key_bytes, msg_id, now, body),
                                               self.cfg, self.resolver)
            except Refused as e:
                error, final = str(e), True
            except AttemptFailed as e:
                error = str(e)
            attempt, after = outcome(nxt.attempt, http_status, error, self.clock(), self.cfg, final=final)
            delivery = record(delivery, msg_id, state, attempt, after)
            log.info("webhook %s attempt %d: %s", msg_id, attempt.attempt,
                     attempt.http_status or attempt.error, extra={"object": {"namespace": ns, "name": name}})
            try:
                await self._call(self.kube.patch_cr_status, ns, name,
                                 {"webhook": delivery.model_dump(mode="json")}, None)
            except ApiError as e:
                if e.status == 404:  # the job is gone (deleted, its TTL): nothing to record
                    return
                log.warning("could not record webhook attempt of %s/%s: %s", ns, name, e)
            if after != DeliveryState.retrying:
                return
            nxt = Due(attempt=attempt.attempt + 1, at=attempt.next_retry_at)

    async def _signing_key(self, cr: dict) -> bytes:
        ns = cr["metadata"]["namespace"]
        try:
            project = await self._call(self.kube.get_project, ns, cr_project(cr))
        except ApiError as e:
            raise AttemptFailed(f"cannot read the job's project: {e.message}") from None
        ref = secret_ref(cr, project)
        names = self.cfg.secret_names
        if names is not None and ref["name"] not in names:
            raise Refused(f"notify_secret: the operator may read only the Secrets listed in the chart value "
                          f"webhooks.secretNames ({', '.join(names) or 'none'}); {ref['name']!r} is not one")
        try:
            secret = await self._call(self.kube.request, "GET", f"/api/v1/namespaces/{ns}/secrets/{ref['name']}",
                                      None, None, "application/json", "secrets")
        except ApiError as e:
            raise AttemptFailed(f"notify_secret: cannot read Secret {ref['name']!r}: HTTP {e.status}") from None
        raw = ((secret or {}).get("data") or {}).get(ref["key"])
        if raw is None:
            raise AttemptFailed(f"notify_secret: Secret {ref['name']!r} has no key {ref['key']!r}")
        try:
            text = base64.b64decode(raw).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Refused(f"notify_secret: Secret {ref['name']!r} key {ref['key']!r} is not text") from None
        return signing_key(text)
