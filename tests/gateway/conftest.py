"""Gateway test fixtures: an app over the in-process MemoryStore, reached through httpx, and
the gateway as its own process (`python -m roboaug.api.gateway`, uvicorn on real ports)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

import pytest
from fastapi.testclient import TestClient

from tests.gateway.gateway_helpers import ADMIN_KEY, BOUND_KEY, HASHED_KEY, PROJECT, Served, free_port
from roboaug.api.gateway import create_app
from roboaug.api.gateway.auth import KeyRing
from roboaug.api.gateway.settings import Settings
from roboaug.api.gateway.store import MemoryStore


@pytest.fixture
def keys_file(tmp_path) -> Path:
    """Plain-lines format: a plaintext key, a sha256-only key, and a key bound to PROJECT."""
    path = tmp_path / "api-keys"
    path.write_text(
        "# test keys\n"
        f"{ADMIN_KEY}\n"
        f"sha256:{hashlib.sha256(HASHED_KEY.encode()).hexdigest()}\n"
        f"{BOUND_KEY} {PROJECT}\n"
    )
    return path


@pytest.fixture
def settings(keys_file) -> Settings:
    return Settings(namespace="roboaug-test", api_keys_file=keys_file, api_keys_reload_seconds=0,
                    store="memory", hub_token_secret_name="hf-token")


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(namespace="roboaug-test")


@pytest.fixture
def app(settings, store):
    return create_app(settings, store, KeyRing(settings.api_keys_file, 0))


@pytest.fixture
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["x-api-key"] = ADMIN_KEY
        yield c


@pytest.fixture
def served(keys_file, tmp_path):
    """The gateway as its own process (memory store): API and metrics each on a free port."""
    port, metrics_port = free_port(), free_port()
    env = dict(os.environ, ROBOAUG_GATEWAY_STORE="memory", ROBOAUG_GATEWAY_API_KEYS_FILE=str(keys_file),
               ROBOAUG_GATEWAY_NAMESPACE="served", ROBOAUG_GATEWAY_LOG_LEVEL="warning",
               ROBOAUG_GATEWAY_METRICS_PORT=str(metrics_port))
    log_path = tmp_path / "gateway.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "roboaug.api.gateway", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    served = Served(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}", proc.pid, port, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(served.base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("gateway did not start:\n" + log_path.read_text())
            time.sleep(0.2)
        yield served
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
