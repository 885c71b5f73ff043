"""What the operator's Kubernetes calls send, without a cluster: `Kube.request` is replaced by a
recorder."""
import pytest

from roboaug.operator.kube import ApiError, Kube


class Recorder(Kube):
    def __init__(self, answer=None):
        super().__init__(api=None)
        self.sent, self.answer = [], answer

    def request(self, method, path, body=None, query=None, content_type="application/json", resource="?"):
        self.sent.append((method, path, body))
        if self.answer is not None:
            raise self.answer


def test_delete_cr_spares_a_newer_cr_of_the_same_name_and_lets_its_jobs_follow():
    k = Recorder()
    k.delete_cr("ns1", "aug-a", "u-1")
    [(method, path, body)] = k.sent
    assert (method, path) == ("DELETE", "/apis/roboaug.dev/v1alpha1/namespaces/ns1/augmentationjobs/aug-a")
    assert body["preconditions"] == {"uid": "u-1"} and body["propagationPolicy"] == "Background"


@pytest.mark.parametrize("status,raised", [(404, False), (409, False), (403, True), (500, True)])
def test_delete_cr_treats_gone_or_replaced_as_done(status, raised):
    k = Recorder(ApiError(status, "x", {"message": "m"}))
    if raised:
        with pytest.raises(ApiError):
            k.delete_cr("ns1", "aug-a", "u-1")
    else:
        k.delete_cr("ns1", "aug-a", "u-1")


def test_a_call_to_a_silent_apiserver_gives_up_after_one_timeout(tmp_path):
    # A connection that takes requests and never answers (a paused network): the call ends after
    # its timeout, once; urllib3's default retries would make it four times as long.
    import socket
    import time

    import yaml
    from roboaug.operator.kube import load_api_client

    server = socket.create_server(("127.0.0.1", 0))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.getsockname()[1]}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    kube = Kube(load_api_client(str(kubeconfig)), timeout=0.4)
    try:
        started = time.monotonic()
        with pytest.raises(Exception, match="(?i)timed? ?out"):
            kube.request("GET", "/api/v1/namespaces/x/pods", resource="pods")
        took = time.monotonic() - started
        assert 0.35 < took < 0.8, took
        started = time.monotonic()
        with pytest.raises(Exception, match="(?i)timed? ?out"):  # a shorter one for this call (the Lease's)
            kube.request("GET", "/api/v1/namespaces/x/pods", resource="pods", timeout=0.1)
        assert time.monotonic() - started < 0.35
    finally:
        server.close()
