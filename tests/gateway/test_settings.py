"""Settings come from ROBOAUG_GATEWAY_* variables, with bounds that keep the contract."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from roboaug.api.gateway.settings import Settings


def test_reads_prefixed_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBOAUG_GATEWAY_NAMESPACE", "jobs")
    monkeypatch.setenv("ROBOAUG_GATEWAY_API_KEYS_FILE", str(tmp_path / "keys"))
    monkeypatch.setenv("ROBOAUG_GATEWAY_HUB_TOKEN_SECRET_NAME", "hf-token")
    monkeypatch.setenv("ROBOAUG_GATEWAY_PORT", "9000")
    monkeypatch.setenv("ROBOAUG_GATEWAY_LIST_DEFAULT_LIMIT", "500")
    s = Settings()
    assert (s.namespace, s.api_keys_file, s.hub_token_secret_name, s.port) == ("jobs", tmp_path / "keys", "hf-token", 9000)
    assert s.store == "kubernetes" and s.idempotency_ttl_seconds == 86400
    assert s.limits() == (100, 100)  # the default page size never exceeds the maximum


@pytest.mark.parametrize("name, value", [
    ("IDEMPOTENCY_TTL_SECONDS", "3600"),  # keys must be remembered at least 24 h
    ("NAMESPACE", "Not_A_Namespace"),
    ("HUB_TOKEN_SECRET_NAME", "Bad Name"),
    ("STORE", "etcd"),
])
def test_rejects_values_that_break_the_contract(monkeypatch, name, value):
    monkeypatch.setenv(f"ROBOAUG_GATEWAY_{name}", value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert name.lower() in str(info.value)


def test_surface_and_body_defaults(monkeypatch):
    s = Settings()
    assert (s.max_body_bytes, s.metrics_port, s.docs_enabled) == (64 * 1024, 9090, False)
    monkeypatch.setenv("ROBOAUG_GATEWAY_DOCS_ENABLED", "true")
    monkeypatch.setenv("ROBOAUG_GATEWAY_MAX_BODY_BYTES", "1048576")
    monkeypatch.setenv("ROBOAUG_GATEWAY_METRICS_PORT", "9100")
    s = Settings()
    assert (s.max_body_bytes, s.metrics_port, s.docs_enabled) == (1048576, 9100, True)


@pytest.mark.parametrize("env, field", [
    ({"MAX_BODY_BYTES": "100"}, "max_body_bytes"),  # smaller than any real request
    ({"MAX_BODY_BYTES": str(64 * 1024 * 1024)}, "max_body_bytes"),
    ({"PORT": "9000", "METRICS_PORT": "9000"}, "metrics_port"),  # metrics never on the API port
])
def test_rejects_bad_surface_settings(monkeypatch, env, field):
    for name, value in env.items():
        monkeypatch.setenv(f"ROBOAUG_GATEWAY_{name}", value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert field in str(info.value)
