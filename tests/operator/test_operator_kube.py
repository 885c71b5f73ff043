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
