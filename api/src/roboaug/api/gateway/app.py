"""Builds the FastAPI application from settings, a store and a key ring."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timezone
from typing import Optional

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from roboaug.api.models import ErrorResponse

from . import errors
from .auth import KeyRing
from .metrics import Metrics, MetricsMiddleware
from .routes import build_router
from .settings import Settings
from .store import JobStore, KubernetesStore, MemoryStore, StoreError

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 600


def make_store(settings: Settings) -> JobStore:
    if settings.store == "memory":
        log.warning("ROBOAUG_GATEWAY_STORE=memory: jobs live in this process only (development)")
        return MemoryStore(namespace=settings.namespace)
    return KubernetesStore.from_settings(settings)


async def _purge_loop(store: JobStore) -> None:
    # Expired idempotency records are already ignored on read; this only keeps the namespace tidy.
    while True:
        try:
            removed = await run_in_threadpool(store.purge_idempotency, datetime.now(timezone.utc))
            if removed:
                log.info("removed %d expired idempotency record(s)", removed)
        except StoreError as e:
            log.warning("idempotency purge failed: %s", e)
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)


def create_app(settings: Optional[Settings] = None, store: Optional[JobStore] = None,
               keyring: Optional[KeyRing] = None, *, purge: bool = True) -> FastAPI:
    settings = settings or Settings()
    store = store if store is not None else make_store(settings)
    keyring = keyring or KeyRing(settings.api_keys_file, settings.api_keys_reload_seconds)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(_purge_loop(store)) if purge else None
        try:
            yield
        finally:
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="roboaug gateway",
        version="v1",
        summary="Augment robot-learning datasets on Kubernetes.",
        description=(
            "Creates and reads AugmentationJob resources. Every /v1 route needs an `x-api-key` header. "
            "Errors are `{\"detail\": str}`; validation errors (422) list `{loc, msg, type}` items whose "
            "`msg` names the field and the rule."
        ),
        lifespan=lifespan,
    )
    app.state.settings, app.state.store, app.state.keyring, app.state.metrics = settings, store, keyring, metrics
    errors.install(app)
    default_limit, max_limit = settings.limits()
    app.include_router(build_router(max_limit=max_limit, default_limit=default_limit))

    @app.get("/healthz", tags=["ops"], summary="Liveness", response_model=dict[str, str])
    def healthz() -> dict[str, str]:
        """The process answers; says nothing about the apiserver."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Readiness", response_model=dict[str, str],
             responses={503: {"model": ErrorResponse, "description": "The Kubernetes API is unreachable"}})
    def readyz():
        """Ready when the apiserver answers a list of AugmentationJobs in our namespace (CRD and RBAC in place)."""
        try:
            store.ready()
        except StoreError as e:
            log.warning("not ready: %s", e)
            return JSONResponse({"detail": "the Kubernetes API is unavailable"}, status_code=503)
        return {"status": "ready"}

    app.add_api_route("/metrics", metrics.endpoint, methods=["GET"], include_in_schema=False)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
