"""Classifying worker failures into status.error, without a cluster."""
from roboaug.operator.errors import (PodFailure, job_failure_text, kubelet_waiting_text, last_message,
                                     pending_timeout_text, redact, start_timeout_text)


def test_permanent_exit_code_with_worker_line():
    f = PodFailure(exit_code=10, reason="Error",
                   message="downloading...\nroboaug-worker: error[10 dataset_not_found]: lerobot/nope not found\n")
    assert f.permanent
    assert f.describe() == ("worker exited with code 10 (dataset_not_found, permanent): "
                            "roboaug-worker: error[10 dataset_not_found]: lerobot/nope not found")
    assert f.data()["exit_name"] == "dataset_not_found"


def test_retryable_and_oom_and_unknown():
    assert not PodFailure(exit_code=75).permanent
    assert PodFailure(exit_code=75).describe() == "worker exited with code 75 (network, retryable)"
    assert "OOMKilled" in PodFailure(exit_code=137, reason="OOMKilled").describe()
    assert "(unknown, retryable)" in PodFailure(exit_code=3).describe()
    assert PodFailure(exit_code=None, reason="Evicted").describe() == "worker pod failed (Evicted)"


def test_last_message_prefers_worker_line_and_bounds_length():
    assert last_message("a\n\n  b  \n") == "b"
    assert last_message(None) is None and last_message("\n \n") is None
    assert len(last_message("x" * 5000)) == 500


def test_secrets_are_masked():
    msg = "failed with token=hf_abcdefghijklmnopqrstu and Authorization: Bearer abc.def.ghi123"
    out = redact(msg)
    assert "hf_abcdefghijklmnopqrstu" not in out and "abc.def.ghi123" not in out
    assert "hf_" not in PodFailure(exit_code=14, message="bad token hf_ABCDEFGHIJKLMNOP").describe().replace("hf_***", "")


def test_job_failure_texts():
    f = PodFailure(exit_code=75, message="roboaug-worker: error[75 network]: 503")
    assert job_failure_text("BackoffLimitExceeded", "x", f, 4).endswith("(gave up after 4 attempts)")
    assert job_failure_text("DeadlineExceeded", "Job was active longer", None, 0) == \
        "Job failed: DeadlineExceeded: Job was active longer"
    assert pending_timeout_text(60, "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.") == \
        "no node could run the worker within 60s: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


def test_kubelet_waiting_texts():
    assert kubelet_waiting_text("CreateContainerConfigError", 'secret "roboaug-hf-token" not found') == \
        'CreateContainerConfigError: secret "roboaug-hf-token" not found'
    assert kubelet_waiting_text("ImagePullBackOff", None) == "ImagePullBackOff"
    assert kubelet_waiting_text("ErrImagePull", "a\n  b") == "ErrImagePull: a b"
    assert len(kubelet_waiting_text("ErrImagePull", "x" * 5000)) == 500
    masked = kubelet_waiting_text("CreateContainerError", "env HF_TOKEN=hf_ABCDEFGHIJKLMNOP")
    assert "ABCDEFGHIJKLMNOP" not in masked and masked.startswith("CreateContainerError: env HF_TOKEN=")
    assert start_timeout_text(60, "CreateContainerConfigError", "couldn't find key token in Secret ns/s") == (
        "the worker container did not start within 60s: CreateContainerConfigError: "
        "couldn't find key token in Secret ns/s")
