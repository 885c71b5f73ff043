"""Python client of the roboaug gateway (extra `client`): `Client().submit(...)`, `get`, `list`,
`wait`, `logs`, `cancel`, `preview`. The `roboaug` CLI (roboaug.api.cli) is built on it."""

from .client import Client, WaitTimeout
from .config import Config, ConfigError
from .errors import ApiError
from .logs import LogLine
from .progress import ProgressView, progress_of

__all__ = ["ApiError", "Client", "Config", "ConfigError", "LogLine", "ProgressView", "WaitTimeout", "progress_of"]
