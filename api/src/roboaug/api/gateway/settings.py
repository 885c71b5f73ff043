"""Gateway settings: every knob read from the environment in one place (prefix `ROBOAUG_GATEWAY_`).

| variable | default | meaning |
|---|---|---|
| `ROBOAUG_GATEWAY_NAMESPACE` | the pod's namespace, else `default` | namespace of the AugmentationJobs (and projects) |
| `ROBOAUG_GATEWAY_API_KEYS_FILE` | unset | mounted keys file (format: `roboaug.api.gateway.auth`); unset = every /v1 call is refused; set but missing or unparsable = every key refused and /readyz 503 |
| `ROBOAUG_GATEWAY_API_KEYS_RELOAD_SECONDS` | `2` | how often the keys file's mtime/size is checked (key rotation without restart) |
| `ROBOAUG_GATEWAY_STORE` | `kubernetes` | `kubernetes`, or `memory` (in-process, for local development only) |
| `ROBOAUG_GATEWAY_KUBECONFIG` | unset | kubeconfig path; unset = in-cluster config when in a pod, else `~/.kube/config` |
| `ROBOAUG_GATEWAY_KUBE_TIMEOUT_SECONDS` | `10` | per-request timeout towards the apiserver |
| `ROBOAUG_GATEWAY_IDEMPOTENCY_TTL_SECONDS` | `86400` | how long an Idempotency-Key is remembered (at least 24 h; less if its job is deleted sooner) |
| `ROBOAUG_GATEWAY_MAX_BODY_BYTES` | `65536` | largest request body; a larger one gets 413 before it is read (after the API key check) |
| `ROBOAUG_GATEWAY_HUB_TOKEN_SECRET_NAME` | unset | Secret (in the namespace) holding the Hub token; copied into each CR's `spec.hub_token_secret` |
| `ROBOAUG_GATEWAY_HUB_TOKEN_SECRET_KEY` | `token` | key within that Secret |
| `ROBOAUG_GATEWAY_JOBS_WITHOUT_PROJECT` | `allow` | a project_id with no AugmentationProject: `refuse` (403), `default` (run under the default project), `allow` (built-in defaults, no policy); the chart sets `refuse` unless told otherwise |
| `ROBOAUG_GATEWAY_DEFAULT_PROJECT` | unset | with `default`: the UUID of the AugmentationProject (in the namespace) such jobs run under |
| `ROBOAUG_GATEWAY_LIST_DEFAULT_LIMIT` / `..._LIST_MAX_LIMIT` | `20` / `100` | page size of GET /v1/augmentation |
| `ROBOAUG_GATEWAY_HOST` / `ROBOAUG_GATEWAY_PORT` | `0.0.0.0` / `8080` | where uvicorn listens (CLI flags override) |
| `ROBOAUG_GATEWAY_METRICS_PORT` | `9090` | Prometheus `/metrics`, on its own listener (same host), never on the API port |
| `ROBOAUG_GATEWAY_DOCS_ENABLED` | `false` | serve `/docs`, `/redoc` and `/openapi.json` on the API port (no key needed) |
| `ROBOAUG_GATEWAY_LOG_LEVEL` | `info` | uvicorn and gateway log level |
| `ROBOAUG_GATEWAY_PREVIEW_URL` | unset | base URL of the preview service (`roboaug.worker.preview_server`); unset = POST /v1/augmentation/preview answers 503 |
| `ROBOAUG_GATEWAY_PREVIEW_TIMEOUT_SECONDS` | `60` | how long the gateway waits for one preview |

Secrets are only ever named here (file paths, Secret names), never held as values.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from roboaug.api.models.unbound import JobsWithoutProject, UnboundAction

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
MIN_IDEMPOTENCY_TTL = 24 * 3600
DEFAULT_MAX_BODY_BYTES = 64 * 1024


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
    jobs_without_project: UnboundAction = UnboundAction.allow
    default_project: Optional[uuid.UUID] = None
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024, le=16 * 1024 * 1024)
    list_default_limit: int = Field(20, ge=1)
    list_max_limit: int = Field(100, ge=1, le=1000)
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    metrics_port: int = Field(9090, ge=0, le=65535)
    docs_enabled: bool = False
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    preview_url: Optional[str] = Field(None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    preview_timeout_seconds: float = Field(60.0, gt=0, le=600)

    @model_validator(mode="after")
    def _metrics_port_is_its_own(self) -> "Settings":
        if self.metrics_port and self.metrics_port == self.port:
            raise ValueError("metrics_port: must differ from port (metrics stay off the API port)")
        return self

    @model_validator(mode="after")
    def _unbound_is_consistent(self) -> "Settings":
        self.unbound()  # the operator's rule, so both doors refuse the same settings
        return self

    def unbound(self) -> JobsWithoutProject:
        """The jobs_without_project setting, as the operator's config holds it."""
        try:
            return JobsWithoutProject(action=self.jobs_without_project, default_project=self.default_project)
        except ValidationError as e:
            msg = e.errors()[0]["msg"].removeprefix("Value error, ")
            raise ValueError(f"ROBOAUG_GATEWAY_JOBS_WITHOUT_PROJECT / ROBOAUG_GATEWAY_DEFAULT_PROJECT: {msg}") from None

    def limits(self) -> tuple[int, int]:
        """(default, max) page size, the default clamped to the max."""
        return min(self.list_default_limit, self.list_max_limit), self.list_max_limit
