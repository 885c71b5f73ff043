"""pytest fixtures for the local Hub. Import them into a test module:

    from roboaug.devstack.hubserver.fixtures import local_hub, local_hub_session  # noqa: F401

`local_hub` is the session's server with faults and request log cleared, and the environment
pointed at it (HF_ENDPOINT, a private HF_HOME, no proxy for loopback, no HF_TOKEN).
`hub_env(hub)` gives the same environment as a dict for a subprocess.
"""

from __future__ import annotations

import os

import pytest

from .server import LocalHub

# Small on purpose: the tests cross it with a few hundred KiB, and 5 entries per tree page makes
# the client follow Link pagination on every listing of a worker-sized dataset.
LFS_THRESHOLD = 64 * 1024
TREE_PAGE_SIZE = 5


def hub_env(hub: LocalHub, hf_home: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_DISABLE_XET", "HF_HUB_OFFLINE")}
    env.update({
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": hf_home,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    })
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def local_hub_session(tmp_path_factory):
    hub = LocalHub(tmp_path_factory.mktemp("hubstore"), lfs_threshold=LFS_THRESHOLD,
                   tree_page_size=TREE_PAGE_SIZE).start()
    yield hub
    hub.stop()


@pytest.fixture
def local_hub(local_hub_session, monkeypatch, tmp_path):
    hub = local_hub_session
    hub.reset()
    for k, v in hub_env(hub, str(tmp_path / "hf_home")).items():
        if os.environ.get(k) != v:
            monkeypatch.setenv(k, v)
    for k in ("HF_TOKEN", "HF_HUB_DISABLE_XET", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(k, raising=False)
    yield hub
    hub.reset()
