"""Gateway test fixtures: an app over the in-process MemoryStore, reached through httpx."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.gateway.gateway_helpers import ADMIN_KEY, BOUND_KEY, HASHED_KEY, PROJECT
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
    return create_app(settings, store, KeyRing(settings.api_keys_file, 0), purge=False)


@pytest.fixture
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["x-api-key"] = ADMIN_KEY
        yield c
