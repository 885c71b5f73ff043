"""Builds the FastAPI application from settings, a store and a key ring."""

from __future__ import annotations

import logging
from typing import Optional

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from roboaug.api.models import ErrorResponse

from . import errors
from .auth import KeyRing
from .guard import RequestGuard
from .metrics import Metrics, MetricsMiddleware
from .routes import build_router
from .settings import Settings
from .store import JobStore, KubernetesStore, MemoryStore, StoreError

log = logging.getLogger(__name__)

DOCS_PATHS = {"docs_url": "/docs", "redoc_url": "/redoc", "openapi_url": "/openapi.json"}


def make_store(settings: Settings) -> JobStore:
    if settings.store == "memory":
        log.warning("ROBOAUG_GATEWAY_STORE=memory: jobs live in this process only (development)")
        return MemoryStore(namespace=settings.namespace)
    return KubernetesStore.from_settings(settings)


def create_app(settings: Optional[Settings] = None, store: Optional[JobStore] = None,
               keyring: Optional[KeyRing] = None) -> FastAPI:
    """The API app. Metrics are not among its routes: `python -m roboaug.api.gateway` serves
    `app.state.metrics` on the metrics port. /docs, /redoc and /openapi.json only with
    `settings.docs_enabled` (`app.openapi()` builds the document either way)."""
    settings = settings or Settings()
    store = store if store is not None else make_store(settings)
    keyring = keyring or KeyRing(settings.api_keys_file, settings.api_keys_reload_seconds)
    metrics = Metrics()

    app = FastAPI(
        title="roboaug gateway",
        version="v1",
        summary="Augment robot-learning datasets on Kubernetes.",
        description=(
            "Creates and reads AugmentationJob resources. Every /v1 route needs an `x-api-key` header. "
            "Errors are `{\"detail\": str}`; validation errors (422) list `{loc, msg, type}` items whose "
            "`msg` names the field and the rule. Request bodies larger than the gateway's limit "
            f"(default {Settings.model_fields['max_body_bytes'].default} bytes) get 413."
        ),
        **(DOCS_PATHS if settings.docs_enabled else dict.fromkeys(DOCS_PATHS)),
    )
    app.state.settings, app.state.store, app.state.keyring, app.state.metrics = settings, store, keyring, metrics
    default_limit, max_limit = settings.limits()
    v1 = build_router(max_limit=max_limit, default_limit=default_limit)
    app.include_router(v1)
    errors.install(app, routers=[v1])

    @app.get("/healthz", tags=["ops"], summary="Liveness", response_model=dict[str, str])
    def healthz() -> dict[str, str]:
        """The process answers; says nothing about the apiserver."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Readiness", response_model=dict[str, str],
             responses={503: {"model": ErrorResponse,
                              "description": "The Kubernetes API is unreachable, or the API keys file is "
                                             "missing or unparsable (no key is valid)"}})
    def readyz():
        """Ready when the API keys file (if configured) is usable and the apiserver answers a list
        of AugmentationJobs in our namespace (CRD and RBAC in place)."""
        if keyring.problem is not None:
            # KeyRing logged the cause once when it changed; not again on every probe.
            return JSONResponse({"detail": "the API keys file is missing or unusable; no key is valid"},
                                status_code=503)
        try:
            store.ready()
        except StoreError as e:
            log.warning("not ready: %s", e)
            return JSONResponse({"detail": "the Kubernetes API is unavailable"}, status_code=503)
        return {"status": "ready"}

    # Outermost first: metrics see every answer, the guard's 401/413 included.
    app.add_middleware(RequestGuard, keyring=keyring, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
