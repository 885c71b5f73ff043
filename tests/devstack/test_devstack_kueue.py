"""devstack/kueue.py without building or running anything: the wrapper module it generates from
Kueue's own source, the one patched line, the Configuration, the cache check."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from roboaug.devstack import kueue


def fake_source(tmp_path: Path, main: str) -> Path:
    src = tmp_path / "src"
    (src / "cmd" / "kueue").mkdir(parents=True)
    (src / "go.mod").write_text("module sigs.k8s.io/kueue\n\ngo 1.25.0\n\nrequire (\n\tx v1\n)\n")
    (src / "cmd" / "kueue" / "main.go").write_text(main)
    return src


MAIN = ('package main\n\nimport "os"\n\nfunc main() {\n\tmetricsCertPath := "/etc/kueue/metrics/certs"\n'
        '\t_ = metricsCertPath\n\tos.Exit(0)\n}\n')


def test_the_wrapper_module_is_kueues_main_with_the_cert_path_from_the_environment(tmp_path):
    src = fake_source(tmp_path, MAIN)
    out = tmp_path / "mod"
    kueue.write_module(out, "v0.17.0", src)
    gomod = (out / "go.mod").read_text()
    assert "go 1.25.0" in gomod and "require sigs.k8s.io/kueue v0.17.0" in gomod
    assert "replace" not in gomod  # Kueue has none: the same dependency versions as upstream
    main = (out / "main.go").read_text()
    assert '"/etc/kueue/metrics/certs"' not in main
    assert f'metricsCertPath := os.Getenv("{kueue.METRICS_CERTS_ENV}")' in main
    # nothing else of upstream's file changes
    assert main.split("\n", 1)[1] == MAIN.replace('"/etc/kueue/metrics/certs"',
                                                  f'os.Getenv("{kueue.METRICS_CERTS_ENV}")')


def test_an_upstream_main_without_that_line_stops_the_build():
    with pytest.raises(RuntimeError, match="no longer holds"):
        kueue.patch_main("package main\n")


def test_the_configuration_manages_only_labelled_jobs_on_loopback(tmp_path):
    cfg = json.loads(kueue.config_yaml(9443, 8081, tmp_path))
    assert cfg["apiVersion"] == "config.kueue.x-k8s.io/v1beta2" and cfg["kind"] == "Configuration"
    assert cfg["manageJobsWithoutQueueName"] is False
    assert cfg["integrations"] == {"frameworks": ["batch/job"]}
    assert cfg["webhook"] == {"port": 9443, "host": "127.0.0.1", "certDir": str(tmp_path)}
    assert cfg["health"]["healthProbeBindAddress"] == "127.0.0.1:8081"
    assert cfg["leaderElection"] == {"leaderElect": False}
    assert cfg["internalCertManagement"] == {"enable": False}


def test_is_built_needs_the_stamp_the_binary_and_the_crds(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOAUG_CACHE", str(tmp_path))
    d = kueue.bin_dir("v0.17.0")
    assert not kueue.is_built("v0.17.0")
    (d / "crd").mkdir(parents=True)
    (d / "kueue").write_text("")
    (d / "crd" / "kueue.x-k8s.io_workloads.yaml").write_text("")
    assert not kueue.is_built("v0.17.0")  # no stamp
    (d / kueue.STAMP).write_text(json.dumps({"kueue": "v0.16.0"}))
    assert not kueue.is_built("v0.17.0")  # another version's
    (d / kueue.STAMP).write_text(json.dumps({"kueue": "v0.17.0"}))
    assert kueue.is_built("v0.17.0")
    (d / "crd" / "kueue.x-k8s.io_workloads.yaml").unlink()
    assert not kueue.is_built("v0.17.0")
