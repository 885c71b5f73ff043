"""bench/bench_operator.py --quick runs end to end against the test cluster and reports figures."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_bench_quick(cluster, crd, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_operator.py"), "--quick",
                           "--kubeconfig", str(cluster.kubeconfig), "--json", str(out), "--timeout", "600"],
                          capture_output=True, text=True, timeout=800, env=cluster.env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["n"] == 20 and r["completed"] == 20 and r["jobs_seen"] == 20
    assert 0 < r["cr_to_job_p50_s"] <= r["cr_to_job_p95_s"] <= r["cr_to_job_max_s"]
    assert 20 < r["operator_peak_rss_mb"] < 300
    assert r["operator_requests_by_kind"]["POST jobs"] == 20
    # per job (measured 16.5): one Job with its identity (ServiceAccount, Role, RoleBinding) and
    # spec ConfigMap, 3 status writes, 3 Events, 2 project reads, the log archive's pods/log read
    # and ConfigMap check, one CR read; a sign of a hot loop if it grows
    assert 3 <= r["requests_per_job"] < 20, json.dumps(r["operator_requests_by_kind"])
    assert "CR -> Job: p50" in proc.stdout
