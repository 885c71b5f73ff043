"""Fixtures: the real gateway app over a MemoryStore, served on a real port in this process."""

from __future__ import annotations

import hashlib

import pytest

from roboaug.api.gateway import create_app
from roboaug.api.gateway.auth import KeyRing
from roboaug.api.gateway.settings import Settings
from roboaug.api.gateway.store import MemoryStore
from tests.cli._live import serve
from tests.gateway.gateway_helpers import ADMIN_KEY, BOUND_KEY, HASHED_KEY, PROJECT


@pytest.fixture
def keys_file(tmp_path):
    path = tmp_path / "api-keys"
    path.write_text(f"{ADMIN_KEY}\nsha256:{hashlib.sha256(HASHED_KEY.encode()).hexdigest()}\n{BOUND_KEY} {PROJECT}\n")
    return path


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(namespace="roboaug-test")


@pytest.fixture
def settings(keys_file) -> Settings:
    return Settings(namespace="roboaug-test", api_keys_file=keys_file, api_keys_reload_seconds=0,
                    store="memory", hub_token_secret_name="hf-token")


@pytest.fixture
def gateway(settings, store):
    """Base URL of the real gateway app (memory store) on a free port."""
    with serve(create_app(settings, store, KeyRing(settings.api_keys_file, 0))) as url:
        yield url


@pytest.fixture
def env(gateway, tmp_path):
    """The CLI's environment: this gateway, the admin key, a config file nobody else uses."""
    return {"ROBOAUG_URL": gateway, "ROBOAUG_API_KEY": ADMIN_KEY, "HOME": str(tmp_path / "home"),
            "ROBOAUG_CONFIG": str(tmp_path / "home" / ".config" / "roboaug" / "config"), "TERM": "xterm"}
