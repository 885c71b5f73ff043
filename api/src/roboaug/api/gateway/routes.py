"""The /v1 routes: thin wrappers that check the caller's project and call `service`.

Handlers are plain `def`: the Kubernetes client blocks, so FastAPI runs them in its thread pool.
"""


import uuid
from typing import Annotated, Optional

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status

from roboaug.api.models import (
    LABEL_PROJECT_ID,
    AugmentationJobCreateRequest,
    AugmentationJobCreateResponse,
    AugmentationStatusResponse,
    ErrorResponse,
    JobStatus,
    SecretKeyRef,
)

from . import logs, preview, service
from .deps import PrincipalDep, SettingsDep, StoreDep, require_principal
from .schemas import AugmentationJobPage

_E = {"model": ErrorResponse}
AUTH_ERRORS = {401: {**_E, "description": "Invalid or missing API key"},
               503: {**_E, "description": "The Kubernetes API is unavailable"}}
NOT_FOUND = {404: {**_E, "description": "Augmentation job not found (or of a project the key may not see)"}}
IDEMPOTENCY_KEY = r"^[\x21-\x7e]{1,255}$"


def build_router(max_limit: int, default_limit: int) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["augmentation"], dependencies=[Depends(require_principal)])

    @router.post(
        "/augmentation",
        status_code=status.HTTP_201_CREATED,
        response_model=AugmentationJobCreateResponse,
        summary="Create Augmentation Job",
        responses={
            201: {"description": "Augmentation job created (or, with a replayed Idempotency-Key, the job it created)",
                  "headers": {
                      "Location": {"description": "URL of the job's status", "schema": {"type": "string"}},
                      "Idempotent-Replayed": {"description": "`true` when an earlier request with this "
                                              "Idempotency-Key created the job", "schema": {"type": "string"}},
                  }},
            400: {**_E, "description": "Invalid request parameters (generative augmentation is disabled)"},
            403: {**_E, "description": "The API key may not act on this project_id, or the project's policy "
                                       "forbids the source or output repo or path (the detail names field and policy), or the "
                                       "project_id names no AugmentationProject and such jobs are refused"},
            409: {**_E, "description": "Concurrent requests with the same Idempotency-Key; retry"},
            413: {**_E, "description": "Request body larger than the gateway's limit (default 64 KiB)"},
            **AUTH_ERRORS,
        },
    )
    def create_augmentation(
        body: AugmentationJobCreateRequest,
        request: Request,
        response: Response,
        principal: PrincipalDep,
        store: StoreDep,
        settings: SettingsDep,
        idempotency_key: Annotated[Optional[str], Header(
            alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY,
            description="Retry-safe submission: the same key and body within 24 h (while the job "
                        "exists) return the same job; the same key with a different body is refused (422).",
        )] = None,
    ) -> AugmentationJobCreateResponse:
        """Start a dataset augmentation job.

        Applies deterministic transforms (lighting, noise, blur, occlusion) to a Hugging Face dataset
        and uploads the augmented result. Generative augmentation (Cosmos Transfer 2.5) is currently
        disabled and returns 400.
        """
        if not principal.allows(body.project_id):
            raise HTTPException(403, f"project_id: this API key may not act on project {body.project_id}")
        secret = (SecretKeyRef(name=settings.hub_token_secret_name, key=settings.hub_token_secret_key)
                  if settings.hub_token_secret_name else None)
        project = service.resolve_project(store, body.project_id, settings.unbound(), settings.namespace)
        created = service.create_job(store, body, idempotency_key=idempotency_key, hub_token_secret=secret,
                                     project=project.spec, default_project=project.default_project,
                                     ttl_seconds=settings.idempotency_ttl_seconds)
        if not created.replayed:
            request.app.state.metrics.jobs_created.inc()
        response.headers["Location"] = f"/v1/augmentation/{created.job_id}"
        if idempotency_key is not None:
            response.headers["Idempotent-Replayed"] = "true" if created.replayed else "false"
        return AugmentationJobCreateResponse(job_id=created.job_id, status=JobStatus.queued, message=created.message)

    @router.get(
        "/augmentation",
        response_model=AugmentationJobPage,
        summary="List Augmentation Jobs",
        responses={400: {**_E, "description": "Cursor not recognised or expired"},
                   403: {**_E, "description": "The API key may not see this project_id"}, **AUTH_ERRORS},
    )
    def list_augmentations(
        principal: PrincipalDep,
        store: StoreDep,
        project_id: Annotated[Optional[uuid.UUID], Query(description="Only jobs of this project.")] = None,
        status_: Annotated[Optional[JobStatus], Query(alias="status", description="Only jobs in this status.")] = None,
        limit: Annotated[int, Query(ge=1, le=max_limit, description=f"Page size, 1..{max_limit}.")] = default_limit,
        cursor: Annotated[Optional[str], Query(max_length=4096, description="`next_cursor` of the previous page.")] = None,
    ) -> AugmentationJobPage:
        """List jobs, one page at a time, in a stable order (by CR name, not by time).

        A page may hold fewer than `limit` items even when more exist (status filtering examines
        at most 1000 jobs per call): follow `next_cursor` until it is null.
        """
        if project_id is not None:
            if not principal.allows(project_id):
                raise HTTPException(403, f"project_id: this API key may not see project {project_id}")
            selector = {LABEL_PROJECT_ID: frozenset({str(project_id).lower()})}
        elif principal.projects is not None:
            selector = {LABEL_PROJECT_ID: frozenset(str(p).lower() for p in principal.projects)}
        else:
            selector = None
        items, next_cursor = service.list_jobs(
            store, selector=selector, status=status_.value if status_ else None, limit=limit, cursor=cursor)
        return AugmentationJobPage(items=items, next_cursor=next_cursor)

    @router.get(
        "/augmentation/{job_id}",
        response_model=AugmentationStatusResponse,
        summary="Get Augmentation Status",
        responses={**NOT_FOUND, **AUTH_ERRORS},
    )
    def get_augmentation(job_id: uuid.UUID, principal: PrincipalDep, store: StoreDep) -> AugmentationStatusResponse:
        """Get the status of an augmentation job: current phase, phase history, and the augmented
        dataset id once the job has completed."""
        obj = service.visible(store.get_job(job_id), principal)
        if obj is None:
            raise HTTPException(404, f"augmentation job {job_id} not found")
        return service.status_from_cr(obj)

    @router.post(
        "/augmentation/{job_id}/cancel",
        response_model=AugmentationStatusResponse,
        summary="Cancel Augmentation Job",
        responses={**NOT_FOUND, **AUTH_ERRORS},
    )
    def cancel_augmentation(job_id: uuid.UUID, principal: PrincipalDep, store: StoreDep) -> AugmentationStatusResponse:
        """Request cancellation (idempotent). The operator stops the job and its status becomes
        `cancelled`; a job that already ended is left as it is. Answers the current status."""
        obj = service.visible(store.get_job(job_id), principal)
        if obj is None:
            raise HTTPException(404, f"augmentation job {job_id} not found")
        return service.cancel_job(store, obj)

    logs.add_routes(router)  # GET /v1/augmentation/{job_id}/logs
    preview.add_routes(router)  # POST /v1/augmentation/preview
    return router
