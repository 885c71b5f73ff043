"""Gateway settings: every knob read from the environment in one place (prefix `ROBOAUG_GATEWAY_`).

| variable | default | meaning |
|---|---|---|
| `ROBOAUG_GATEWAY_NAMESPACE` | the pod's namespace, else `default` | namespace of AugmentationJobs and idempotency records |
| `ROBOAUG_GATEWAY_API_KEYS_FILE` | unset | mounted keys file (format: `roboaug.api.gateway.auth`); unset = every /v1 call is refused |
| `ROBOAUG_GATEWAY_API_KEYS_RELOAD_SECONDS` | `2` | how often the keys file's mtime/size is checked (key rotation without restart) |
| `ROBOAUG_GATEWAY_STORE` | `kubernetes` | `kubernetes`, or `memory` (in-process, for local development only) |
| `ROBOAUG_GATEWAY_KUBECONFIG` | unset | kubeconfig path; unset = in-cluster config when in a pod, else `~/.kube/config` |
| `ROBOAUG_GATEWAY_KUBE_TIMEOUT_SECONDS` | `10` | per-request timeout towards the apiserver |
| `ROBOAUG_GATEWAY_IDEMPOTENCY_TTL_SECONDS` | `86400` | how long an Idempotency-Key is remembered (at least 24 h) |
| `ROBOAUG_GATEWAY_HUB_TOKEN_SECRET_NAME` | unset | Secret (in the namespace) holding the Hub token; copied into each CR's `spec.hub_token_secret` |
| `ROBOAUG_GATEWAY_HUB_TOKEN_SECRET_KEY` | `token` | key within that Secret |
| `ROBOAUG_GATEWAY_LIST_DEFAULT_LIMIT` / `..._LIST_MAX_LIMIT` | `20` / `100` | page size of GET /v1/augmentation |
| `ROBOAUG_GATEWAY_HOST` / `ROBOAUG_GATEWAY_PORT` | `0.0.0.0` / `8080` | where uvicorn listens (CLI flags override) |
| `ROBOAUG_GATEWAY_LOG_LEVEL` | `info` | uvicorn and gateway log level |

Secrets are only ever named here (file paths, Secret names), never held as values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
MIN_IDEMPOTENCY_TTL = 24 * 3600


def _pod_namespace() -> str:
    # In a pod the ServiceAccount mount says where we run; a Deployment need not repeat it.
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


class Settings(BaseSettings):
    """Gateway configuration (see the module docstring for the variables)."""

    model_config = SettingsConfigDict(env_prefix="ROBOAUG_GATEWAY_", extra="ignore")

    namespace: str = Field(default_factory=_pod_namespace, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    api_keys_file: Optional[Path] = None
    api_keys_reload_seconds: float = Field(2.0, ge=0)
    store: Literal["kubernetes", "memory"] = "kubernetes"
    kubeconfig: Optional[Path] = None
    kube_timeout_seconds: float = Field(10.0, gt=0)
    idempotency_ttl_seconds: int = Field(MIN_IDEMPOTENCY_TTL, ge=MIN_IDEMPOTENCY_TTL)
    hub_token_secret_name: Optional[str] = Field(None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    hub_token_secret_key: str = Field("token", pattern=r"^[-._a-zA-Z0-9]+$")
    list_default_limit: int = Field(20, ge=1)
    list_max_limit: int = Field(100, ge=1, le=1000)
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    def limits(self) -> tuple[int, int]:
        """(default, max) page size, the default clamped to the max."""
        return min(self.list_default_limit, self.list_max_limit), self.list_max_limit
