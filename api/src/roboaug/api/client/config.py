"""Where the client finds the gateway and its API key.

`ROBOAUG_URL` and `ROBOAUG_API_KEY` win, each on its own; what they leave unset comes from the
config file that `roboaug login` writes (as the Hub CLI keeps its token): `$ROBOAUG_CONFIG`, else
`$XDG_CONFIG_HOME/roboaug/config`, else `~/.config/roboaug/config`. The file is JSON
(`{"url": ..., "api_key": ...}`), readable by its owner only (0600, folder 0700). The key is never
printed: `Config`'s repr leaves it out and `masked` shows its last four characters.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

ENV_URL = "ROBOAUG_URL"
ENV_API_KEY = "ROBOAUG_API_KEY"
ENV_CONFIG = "ROBOAUG_CONFIG"


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Config:
    url: Optional[str]
    api_key: Optional[str] = field(default=None, repr=False)
    path: Optional[Path] = None
    """The config file read (None when the environment gave both values)."""

    @property
    def masked_key(self) -> str:
        return masked(self.api_key)


def masked(key: Optional[str]) -> str:
    if not key:
        return "(none)"
    return "****" + key[-4:] if len(key) >= 12 else "****"


def config_path(env: Optional[Mapping[str, str]] = None) -> Path:
    env = os.environ if env is None else env
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path(env.get("HOME") or Path.home()) / ".config"
    return base / "roboaug" / "config"


def read_file(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except ValueError:
        raise ConfigError(f"{path}: not a roboaug config (expected JSON with url and api_key)") from None
    return {k: str(v) for k, v in data.items() if k in ("url", "api_key") and v}


def load(env: Optional[Mapping[str, str]] = None) -> Config:
    """The environment's values, else the file's, per field."""
    env = os.environ if env is None else env
    url, key = env.get(ENV_URL) or None, env.get(ENV_API_KEY) or None
    path = None
    if url is None or key is None:
        path = config_path(env)
        stored = read_file(path)
        url, key = url or stored.get("url"), key or stored.get("api_key")
    return Config(url=url.rstrip("/") if url else None, api_key=key, path=path)


def save(url: str, api_key: str, env: Optional[Mapping[str, str]] = None) -> Path:
    """Write the config file, owner-only from the first byte (no window in which another user
    could read the key), replacing any earlier one atomically."""
    path = config_path(env)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"url": url.rstrip("/"), "api_key": api_key}, f)
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
