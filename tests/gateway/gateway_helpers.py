"""Constants and helpers shared by the gateway tests (fixtures are in conftest.py)."""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path


HERE = Path(__file__).resolve().parent
SEED_000 = HERE.parents[2] / "shared" / "seeds" / "000_e70a4a65b8331aef.txt"
SEED_BODY_FILE = HERE / "seed_000_body.json"

PROJECT = "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0"
OTHER_PROJECT = "7f1c2f0e-0d4e-4a57-9a38-0f5b7f2e9a11"
ADMIN_KEY = "test-admin-key-0123456789abcdef"
HASHED_KEY = "test-hashed-key-fedcba9876543210"
BOUND_KEY = "test-bound-key-00112233445566"


def seed_body_text() -> str:
    """Seed 000's request body byte for byte (the fixture copy is checked against the seed)."""
    return SEED_BODY_FILE.read_text().strip()


def seed_body() -> dict:
    return json.loads(seed_body_text())


def seed_body_from_seed_file() -> str | None:
    if not SEED_000.exists():
        return None
    return re.search(r"body: '(\{.*?\})'", SEED_000.read_text()).group(1)


def minimal_body(**fields) -> dict:
    return {"project_id": PROJECT, "dataset_id": "lerobot/pusht", **fields}


def post_job(client, body=None, **headers):
    return client.post("/v1/augmentation", json=body if body is not None else minimal_body(), headers=headers)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Served:
    """A gateway process: its API and metrics base URLs, pid, API port and log file."""

    base: str
    metrics: str
    pid: int
    port: int
    log: Path

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS for pid {self.pid}")
