"""How the operator's watches start (issue 14 item 8): `watch_initial_streaming: auto` probes the
apiserver once, and kopf's watch, guarded by `kopf_startup`, survives the apiserver's 504 "Too
large resource version" and a streamed start cut before its end."""
from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs, urlsplit

import kopf
import pytest
from kopf._cogs.clients import api as kopf_api
from kopf._cogs.clients import errors, watching
from kopf._cogs.structs import references

from roboaug.api.models import GROUP, PLURAL, VERSION
from roboaug.operator import kopf_startup

RESOURCE = references.Resource(GROUP, VERSION, PLURAL, namespaced=True)


# -- auto: the probe -------------------------------------------------------------------------
def test_auto_streams_against_the_real_apiserver(cluster, crd, namespace):
    with cluster.api_client() as api:
        supported, why = kopf_startup.probe_initial_streaming(api, namespace)
        assert supported, why
        assert kopf_startup.resolve_initial_streaming("auto", api, namespace)[0] is True
        assert kopf_startup.resolve_initial_streaming("off", api, namespace)[0] is False


def test_the_operator_starts_streamed_by_default(operator, cluster, k8s, namespace):
    from tests.operator._cluster_helpers import create_cr, wait_cr

    create_cr(k8s, namespace, "before")  # present at start-up: one of the streamed initial events
    op = operator()  # watch_initial_streaming unset: auto
    wait_cr(cluster, k8s, namespace, "before", lambda st: bool(st.get("status")), "a first status", op=op)
    assert ("initial listing: streamed initial events (auto: the apiserver streams initial events"
            in op.log.read_text()), op.tail(20)


class _Raw:
    def __init__(self, lines, data=b""):
        self.lines, self.data, self.closed = lines, data, False

    def __iter__(self):
        return iter(self.lines)

    def close(self):
        self.closed = True


class _Resp:
    def __init__(self, status, lines=(), data=b""):
        self.status, self.response = status, _Raw([json.dumps(x).encode() + b"\n" for x in lines], data)


class _FakeApi:
    """The two calls the probe makes on a kubernetes ApiClient, answered with `resp`."""

    def __init__(self, resp):
        self.resp, self.paths = resp, []

    def param_serialize(self, method, resource_path, header_params, auth_settings):
        self.paths.append(resource_path)
        return method, "https://apiserver" + resource_path, header_params, None, None

    def call_api(self, method, url, header_params=None, body=None, _request_timeout=None):
        return self.resp


_REFUSED = {"kind": "Status", "code": 422, "reason": "Invalid",
            "message": 'resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch '
                       'unless sendInitialEvents is provided'}


@pytest.mark.parametrize("resp", [
    _Resp(422, data=json.dumps(_REFUSED).encode()),                       # WatchList off / old server
    _Resp(200, [{"type": "ERROR", "object": _REFUSED}]),
    _Resp(200, []),                                                       # parameters ignored: no bookmark
    _Resp(200, [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}]),
], ids=["http-422", "error-event", "no-bookmark", "plain-bookmark"])
def test_auto_lists_when_the_probe_is_refused(resp):
    fake = _FakeApi(resp)
    streaming, why = kopf_startup.resolve_initial_streaming("auto", fake, "ns1")
    assert streaming is False and why.startswith("auto: ")
    q = parse_qs(urlsplit(fake.paths[0]).query)
    assert q["sendInitialEvents"] == ["true"] and q["resourceVersionMatch"] == ["NotOlderThan"]
    assert resp.response.closed  # a watch left open would hold a pooled connection
    # on/off never ask
    assert kopf_startup.resolve_initial_streaming("on", _FakeApi(None), None) == (True, "watch_initial_streaming: on")


def test_auto_streams_when_the_server_ends_the_initial_events_or_is_only_behind():
    end = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9", "annotations": {
        kopf_startup.INITIAL_EVENTS_END: "true"}}}}
    assert kopf_startup.resolve_initial_streaming("auto", _FakeApi(_Resp(200, [end])), None)[0] is True
    behind = {"type": "ERROR", "object": {"code": 504, "reason": "Timeout",
                                          "message": "Timeout: Too large resource version: 12, current: 9"}}
    assert kopf_startup.resolve_initial_streaming("auto", _FakeApi(_Resp(200, [behind])), None)[0] is True


# -- kopf's watch with the guard -----------------------------------------------------------
def _too_large(rv="12"):
    return {"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Timeout", "code": 504,
        "message": f"Timeout: Too large resource version: {rv}, current: 9",
        "details": {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                    "retryAfterSeconds": 1}}}


def _added(name, rv):
    return {"type": "ADDED", "object": {"metadata": {"name": name, "namespace": "ns1", "uid": name,
                                                     "resourceVersion": rv}}}


_END = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20", "annotations": {
    kopf_startup.INITIAL_EVENTS_END: "true"}}}}


def _listed_and_next(seen):
    return len(seen) >= 2 and seen[-2] is watching.Bookmark.LISTED


def _watch(monkeypatch, answers, *, streaming=True, until=_listed_and_next):
    """Run kopf's own infinite_watch (one watcher) against `answers`: one item per watch request,
    a list of events or an exception to raise. Returns (what kopf yielded until `until` (by
    default: its LISTED bookmark and the next event), the query of each request)."""
    assert kopf_startup.install_watch_guard()
    monkeypatch.setattr(kopf_startup, "RETRY_FIRST_SECONDS", 0.01)
    queries = []
    answers = list(answers)

    async def stream(url, **_):
        queries.append(parse_qs(urlsplit(url).query))
        answer = answers.pop(0) if answers else []
        if isinstance(answer, BaseException):
            raise answer
        for event in answer:
            yield json.loads(json.dumps(event))
        if not answers:
            await asyncio.sleep(3600)  # an idle, open watch

    monkeypatch.setattr(kopf_api, "stream", stream)
    settings = kopf.OperatorSettings()
    settings.watching.initial_streaming = streaming
    settings.watching.reconnect_backoff = 0.01

    async def go():
        seen = []
        async for event in watching.infinite_watch(settings=settings, resource=RESOURCE, namespace="ns1"):
            seen.append(event)
            if until(seen):
                return seen

    return asyncio.run(asyncio.wait_for(go(), 10)), queries


def _names(seen):
    return [e["object"]["metadata"].get("name") for e in seen if isinstance(e, dict) and e["type"] is None]


def test_a_504_on_the_streamed_start_is_retried(monkeypatch):
    seen, queries = _watch(monkeypatch, [[_too_large()], [_too_large()],
                                        [_added("a", "5"), _added("b", "3"), _END]])
    assert _names(seen) == ["a", "b"] and seen[-1]["type"] == "BOOKMARK"
    assert len(queries) == 3 and all(q.get("sendInitialEvents") == ["true"] for q in queries)


def test_an_http_504_is_retried(monkeypatch):
    gone = errors.APIServerError({"code": 504, "message": "Timeout: Too large resource version"},
                                 status=504, headers={})
    seen, queries = _watch(monkeypatch, [gone, [_added("a", "5"), _END]])
    assert _names(seen) == ["a"] and len(queries) == 2


def test_other_watch_errors_still_end_the_watcher(monkeypatch):
    forbidden = {"type": "ERROR", "object": {"code": 403, "message": "forbidden"}}
    with pytest.raises(watching.WatchingError):
        _watch(monkeypatch, [[forbidden]])


def test_a_streamed_start_cut_before_its_end_starts_again(monkeypatch):
    # the first stream ends (connection dropped) after "b" (rv 7); "a" (rv 3) comes after it in
    # key order on the server: resuming from rv 7 would never show "c" (rv 5)
    seen, queries = _watch(monkeypatch, [[_added("b", "7")],
                                        [_added("a", "3"), _added("b", "7"), _added("c", "5"), _END]])
    assert len(queries) == 2
    assert queries[1].get("sendInitialEvents") == ["true"] and "resourceVersion" not in queries[1]
    assert set(_names(seen)) == {"a", "b", "c"}


def test_after_its_end_a_stream_resumes_from_where_it_was(monkeypatch):
    # the server closes every watch after timeoutSeconds: past the initial events, that is a
    # plain resume from the last resourceVersion, never all objects streamed again
    seen, queries = _watch(monkeypatch, [[_added("a", "5"), _END], [_added("d", "21")]],
                           until=lambda seen: seen[-1] is not watching.Bookmark.LISTED
                           and seen[-1]["object"]["metadata"].get("name") == "d")
    assert queries[1].get("resourceVersion") == ["20"] and "sendInitialEvents" not in queries[1]
    assert seen[-1]["type"] == "ADDED"


def test_a_listed_start_continues_from_its_list_after_a_504(monkeypatch):
    async def fetch_objs(**_):
        yield [_added("a", "5")["object"]], "40"

    monkeypatch.setattr(watching.fetching, "fetch_objs", fetch_objs)
    seen, queries = _watch(monkeypatch, [[_too_large("40")], [_added("b", "41")]], streaming=False)
    assert _names(seen) == ["a"] and seen[-1]["object"]["metadata"]["name"] == "b"
    assert [q.get("resourceVersion") for q in queries] == [["40"], ["40"]]
