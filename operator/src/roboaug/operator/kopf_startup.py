"""kopf's start-up with thousands of objects: its index-readiness wait, made linear.

kopf holds every object of its initial listings until all indexes are filled: each object's
worker indexes it, drops its own toggle from one `ToggleSet(all)` and waits for the set to be
on. Every `make_toggle` (the watcher, per listed object) and `drop_toggle` (each worker) calls
`notify_all` on the set's one condition, so each wakes every worker already parked there
(each re-takes the lock and re-checks the set): n objects cost ~n^2/2 wakeups. Profiled with
~1,800 finished AugmentationJobs, the event loop spent most of its time there and indexed ~10
objects a second; with 5,000 the operator's first request came after ~23 min (issue 14 item 8).

Adding or removing a toggle changes no toggle's own state, so the only waiters it can concern
are those of the set's overall state (`ToggleSet.wait_for`): notifying only when that state
flips wakes each parked worker once, when the last index is filled. Same semantics, linear.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from kopf._cogs.aiokits import aiotoggles

log = logging.getLogger(__name__)
_MARK = "_roboaug_notifies_on_flip"


async def _make_toggle(self: Any, __val: bool = False, *, name: Optional[str] = None) -> Any:
    toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
    await _changed(self, lambda: self._toggles.add(toggle))
    return toggle


async def _changed(self: Any, change: Any) -> None:
    """Apply `change` to the set's toggles; wake the waiters only if the set's state flipped."""
    async with self._condition:
        before = self.is_on()
        change()
        if self.is_on() != before:
            self._condition.notify_all()


async def _drop_toggle(self: Any, toggle: Any) -> None:
    await _changed(self, lambda: self._toggles.discard(toggle))


async def _drop_toggles(self: Any, toggles: Any) -> None:
    await _changed(self, lambda: self._toggles.difference_update(toggles))


def _shape_known() -> bool:
    """The private layout the replacements rely on (kopf 1.37 to 1.45 at least)."""
    probe = aiotoggles.ToggleSet(all)
    return (hasattr(probe, "_condition") and isinstance(getattr(probe, "_toggles", None), set)
            and callable(getattr(probe, "_fn", None)) and hasattr(probe, "is_on"))


def install() -> bool:
    """Make kopf's ToggleSet notify only when its overall state flips. Idempotent. Returns
    whether it is in place; a kopf whose ToggleSet looks different is left as it is (correct,
    only slow to start with many objects) with a warning."""
    cls = aiotoggles.ToggleSet
    if getattr(cls, _MARK, False):
        return True
    if not _shape_known():
        log.warning("kopf's ToggleSet is not as expected; its start-up stays quadratic in the "
                    "number of listed objects")
        return False
    cls.make_toggle = _make_toggle
    cls.drop_toggle = _drop_toggle
    cls.drop_toggles = _drop_toggles
    setattr(cls, _MARK, True)
    return True


# -- the streamed initial listing (sendInitialEvents): the probe and the watch's retries --------
# kopf's watch (kopf/_cogs/clients/watching.py) ends its watcher on any ERROR event but 410, and
# on an HTTP 5xx once its request retries are spent. A streamed start asks the apiserver's watch
# cache to catch up with etcd first; while the apiserver is busy with writes it answers 504
# "Too large resource version" (measured: on every try for ~30 s), and Kubernetes documents that
# the client should retry. Also, a stream cut before its initial-events-end bookmark made kopf
# resume a plain watch from the last object's resourceVersion: the initial events come in key
# order, not resourceVersion order, so objects not yet sent and older than that one were never
# seen. The guard below wraps kopf's `watch_objs` (looked up as a module global by its
# `continuous_watch`): a 504 ends that one request after a backoff (kopf then repeats it), and a
# streamed start that was cut before its bookmark starts again from scratch.
_WATCH_MARK = "_roboaug_watch_guard"
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


class _Stream:
    """Per watcher (resource, namespace): whether its streamed start is still before its first
    bookmark, and how many 504s came in a row."""
    __slots__ = ("initial", "failures")

    def __init__(self) -> None:
        self.initial = False
        self.failures = 0


_streams: dict[tuple[Any, Any], _Stream] = {}


def _retryable(status: Any) -> bool:
    return isinstance(status, dict) and status.get("code") == 504


async def _back_off(stream: _Stream, where: str, why: str, retry_after: Any = None) -> None:
    import asyncio

    stream.failures += 1
    delay = min(RETRY_FIRST_SECONDS * 2 ** (stream.failures - 1), RETRY_MAX_SECONDS)
    if isinstance(retry_after, (int, float)) and retry_after > delay:
        delay = min(float(retry_after), RETRY_MAX_SECONDS)
    log.warning("watch of %s: %s; retrying in %.1f s (try %d)", where, why, delay, stream.failures)
    await asyncio.sleep(delay)


def _wrap_watch_objs(original: Any) -> Any:
    from kopf._cogs.clients import errors

    async def watch_objs(*, settings: Any, resource: Any, namespace: Any, since: Optional[str] = None,
                         operator_pause_waiter: Any) -> Any:
        stream = _streams.setdefault((resource, namespace), _Stream())
        where = f"{resource}" + (f" in {namespace!r}" if namespace is not None else " cluster-wide")
        if settings.watching.initial_streaming:
            if since is None:
                stream.initial = True
            elif stream.initial:
                # cut before its bookmark: kopf would resume from the last object sent (see above)
                log.warning("watch of %s: the streamed initial events were cut before their end; "
                            "starting them again", where)
                since = None
        try:
            async for raw in original(settings=settings, resource=resource, namespace=namespace,
                                      since=since, operator_pause_waiter=operator_pause_waiter):
                if isinstance(raw, dict) and raw.get("type") == "ERROR" and _retryable(raw.get("object")):
                    status = raw["object"]
                    await _back_off(stream, where, f"{status.get('code')} {status.get('message', '')}",
                                    (status.get("details") or {}).get("retryAfterSeconds"))
                    return
                stream.failures = 0
                if isinstance(raw, dict) and raw.get("type") == "BOOKMARK":
                    stream.initial = False  # as kopf: the first bookmark ends the initial events
                yield raw
        except errors.APIServerError as e:
            if getattr(e, "status", None) != 504:
                raise
            await _back_off(stream, where, f"HTTP 504 {e}")

    watch_objs.__wrapped__ = original  # type: ignore[attr-defined]
    return watch_objs


def _watch_shape_known() -> bool:
    """The layout the guard relies on (kopf 1.45): `continuous_watch` calls the module's
    `watch_objs` by name with these keywords, and 5xx errors are `errors.APIServerError`."""
    import inspect

    from kopf._cogs.clients import errors, watching

    try:
        params = set(inspect.signature(watching.watch_objs).parameters)
        return ({"settings", "resource", "namespace", "since", "operator_pause_waiter"} == params
                and "watch_objs" in watching.continuous_watch.__code__.co_names
                and inspect.isasyncgenfunction(watching.continuous_watch)
                and isinstance(getattr(errors, "APIServerError", None), type))
    except (AttributeError, TypeError, ValueError):
        return False


def install_watch_guard() -> bool:
    """Put the watch guard (504 retries, streamed starts restarted whole) in place. Idempotent.
    Returns whether it is in place; a kopf whose watching module looks different is left as it
    is, with a warning (then `auto` does not choose the streamed start)."""
    from kopf._cogs.clients import watching

    if getattr(watching.watch_objs, _WATCH_MARK, False):
        return True
    if not _watch_shape_known():
        log.warning("kopf's watch-stream is not as expected; a 504 from the apiserver still ends "
                    "kopf's watcher, and the streamed initial listing is not chosen automatically")
        return False
    guarded = _wrap_watch_objs(watching.watch_objs)
    setattr(guarded, _WATCH_MARK, True)
    watching.watch_objs = guarded
    return True


def probe_initial_streaming(api: Any, namespace: Optional[str], timeout: float = 10.0) -> tuple[bool, str]:
    """Ask the apiserver once for a streamed watch of AugmentationJobs (sendInitialEvents) that
    matches no object: a server with WatchList answers at once with the bookmark that ends the
    initial events (annotation k8s.io/initial-events-end). Returns (supported, why).

    A 504 "Too large resource version" means the server does stream (it waits for its watch
    cache first) and is only behind: supported (the watch guard retries it). Any other refusal,
    or a watch without that bookmark (a server ignoring the parameters), is not."""
    from urllib.parse import urlencode

    from roboaug.api.models import GROUP, PLURAL, VERSION

    base = f"/apis/{GROUP}/{VERSION}" + (f"/namespaces/{namespace}" if namespace else "")
    query = {"watch": "true", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
             "allowWatchBookmarks": "true", "timeoutSeconds": str(max(1, int(timeout))),
             # no object can have this name: the answer is the bookmark alone, whatever the count
             "fieldSelector": "metadata.name=roboaug.probe.no-such-name"}
    method, url, headers, body, _ = api.param_serialize(
        method="GET", resource_path=f"{base}/{PLURAL}?{urlencode(query)}",
        header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
    try:
        resp = api.call_api(method, url, header_params=headers, body=body,
                            _request_timeout=(timeout, timeout + 5))
    except Exception as e:  # noqa: BLE001 - any failure to ask means: do not rely on it
        return False, f"the probe failed: {type(e).__name__}: {e}"
    raw = resp.response
    try:
        if resp.status != 200:
            text = (raw.data or b"")[:300].decode("utf-8", "replace")
            return False, f"the apiserver refused a streamed watch (HTTP {resp.status}: {text.strip()})"
        import json

        for line in raw:
            line = line.strip()
            if not line:
                continue
            event = json.loads(line)
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "BOOKMARK":
                annotations = (obj.get("metadata") or {}).get("annotations") or {}
                if annotations.get(INITIAL_EVENTS_END) == "true":
                    return True, "the apiserver streams initial events (WatchList)"
                return False, "the apiserver's first bookmark did not end initial events"
            if kind == "ERROR":
                if _retryable(obj):
                    return True, ("the apiserver streams initial events (WatchList); its watch cache "
                                  "is behind for now (504, retried)")
                return False, f"the apiserver refused a streamed watch ({obj.get('code')}: {obj.get('message')})"
            return False, f"the apiserver sent {kind} before ending initial events"
        return False, "the apiserver never ended initial events (no WatchList)"
    except Exception as e:  # noqa: BLE001
        return False, f"the probe failed: {type(e).__name__}: {e}"
    finally:
        # the watch may still be open: close it rather than hand a half-read stream to the pool
        for done in ("close", "release_conn"):
            if hasattr(raw, done):
                getattr(raw, done)()


def resolve_initial_streaming(mode: str, api: Any, namespace: Optional[str]) -> tuple[bool, str]:
    """The config's `watch_initial_streaming` (auto | on | off) made a decision, with its reason."""
    if mode == "off":
        return False, "watch_initial_streaming: off"
    if mode == "on":
        return True, "watch_initial_streaming: on"
    if not install_watch_guard():
        return False, "auto: kopf's watch-stream cannot be guarded against 504s"
    supported, why = probe_initial_streaming(api, namespace)
    return supported, f"auto: {why}"
