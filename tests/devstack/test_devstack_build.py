"""Unit tests of the dev stack's build and manifest helpers (no Go, no cluster needed)."""
from pathlib import Path

import yaml

from roboaug.devstack import build
from roboaug.devstack.cluster import DEFAULT_NODES, STAGES_FILE, node_manifest

GOMOD = """module k8s.io/kubernetes

go 1.24.0

godebug default=go1.24

require (
	go.etcd.io/etcd/server/v3 v3.6.4 // indirect
	k8s.io/api v0.0.0
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
)
"""


def test_parse_k8s_gomod():
    info = build.parse_k8s_gomod(GOMOD)
    assert info["staging"] == ["k8s.io/api", "k8s.io/client-go"]
    assert info["godebug"] == "godebug default=go1.24"
    assert info["etcd"] == "v3.6.4"
    assert info["go"] == "1.24.0"


def test_wrapper_module_replaces_every_staging_module(tmp_path: Path):
    build.write_k8s_module(tmp_path, "v1.34.4", build.parse_k8s_gomod(GOMOD))
    text = (tmp_path / "go.mod").read_text()
    assert "k8s.io/api => k8s.io/api v0.34.4" in text
    assert "k8s.io/client-go => k8s.io/client-go v0.34.4" in text
    assert "godebug default=go1.24" in text
    assert "require k8s.io/kubernetes v1.34.4" in text


def test_version_stamps():
    flags = build.k8s_ldflags("v1.34.4")
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion=v1.34.4" in flags
        assert f"-X {pkg}.gitMinor=34" in flags
    assert build.staging_version("v1.34.4") == "v0.34.4"


def test_cache_is_outside_the_repo(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBOAUG_CACHE", str(tmp_path))
    assert build.bin_dir("v9.9.9") == tmp_path / "bin" / "k8s-v9.9.9"
    assert not build.is_built("v9.9.9")


def test_node_pools_match_the_architecture():
    gpu = node_manifest(next(n for n in DEFAULT_NODES if n["name"] == "gpu-0"))
    assert gpu["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert gpu["metadata"]["labels"]["roboaug.dev/pool"] == "gpu"
    assert gpu["status"]["allocatable"]["nvidia.com/gpu"] == "1"
    assert gpu["spec"]["taints"][0]["key"] == "nvidia.com/gpu"
    cpu = [n for n in DEFAULT_NODES if n["labels"]["roboaug.dev/pool"] == "cpu"]
    assert {n["labels"]["node.kubernetes.io/instance-type"] for n in cpu} == {"c7i.4xlarge"}


def test_stage_set_is_valid_yaml_with_our_knobs():
    stages = list(yaml.safe_load_all(STAGES_FILE.read_text()))
    names = {s["metadata"]["name"] for s in stages}
    assert {"roboaug-node-initialize", "roboaug-node-heartbeat", "roboaug-pod-ready",
            "roboaug-pod-complete", "roboaug-pod-fail", "roboaug-pod-delete",
            "roboaug-pod-waiting"} <= names
    assert all(s["kind"] == "Stage" for s in stages)
    assert "roboaug.dev/kwok-fail" in STAGES_FILE.read_text()
