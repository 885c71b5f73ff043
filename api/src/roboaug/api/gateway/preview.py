"""POST /v1/augmentation/preview: the project's policy here, the pixels in the preview service.

The gateway checks the key and the project exactly as on create (`service.resolve_project`,
`service.apply_project`: the same 403/422 naming field and policy) and forwards the effective
request to the preview service (`roboaug.worker.preview_server`, worker image), whose answer
(a PNG grid or JSON, or an error naming the field) it passes through. The gateway image has no
decoders or kernels and never parses a video; see docs/architecture.md, "Preview".
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from fastapi import APIRouter, HTTPException, Response

from roboaug.api.models import ErrorResponse
from roboaug.api.models.preview import AugmentationPreviewRequest, AugmentationPreviewResponse

from . import service
from .deps import PrincipalDep, SettingsDep, StoreDep

log = logging.getLogger(__name__)

_E = {"model": ErrorResponse}
PASSED_THROUGH = {"application/json", "image/png"}


def forward(url: str, call: AugmentationPreviewRequest, timeout: float) -> Response:
    """The preview service's answer to `call`, as this gateway's answer."""
    req = urllib.request.Request(f"{url.rstrip('/')}/v1/preview", data=call.model_dump_json().encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, ctype, body, retry = resp.status, resp.headers.get_content_type(), resp.read(), None
    except urllib.error.HTTPError as e:
        status, ctype, body, retry = e.code, e.headers.get_content_type(), e.read(), e.headers.get("Retry-After")
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        log.warning("preview service at %s: %s", url, e)
        raise service.GatewayError(503, "the preview service is unavailable; retry later") from None
    if ctype not in PASSED_THROUGH or status >= 500 and status not in (502, 503):
        log.error("preview service answered %s (%s)", status, ctype)
        raise service.GatewayError(502, "the preview service failed (server fault)")
    return Response(body, status_code=status, media_type=ctype, headers={"Retry-After": retry} if retry else None)


def add_routes(router: APIRouter) -> None:
    @router.post(
        "/augmentation/preview",
        summary="Preview an Augmentation",
        response_model=AugmentationPreviewResponse,
        responses={
            200: {"description": "`format: png`: one PNG grid, a row per (episode, frame, camera): the original, "
                                 "then each augmented copy. `format: json`: the frames as base64 PNGs.",
                  "content": {"image/png": {}}},
            400: {**_E, "description": "Generative augmentation is disabled"},
            401: {**_E, "description": "Invalid or missing API key"},
            403: {**_E, "description": "The API key may not act on this project_id, or the project's policy forbids "
                                       "the source or output (as on create)"},
            422: {"description": "Invalid request, a project limit (as on create), a pick the source does not have "
                                 "or an answer over the preview's bounds (naming episodes or frames), or a source "
                                 "that cannot be read without a Hub token (naming dataset_id)"},
            502: {**_E, "description": "The Hub could not be reached"},
            503: {**_E, "description": "The preview service is busy, unavailable or not configured"},
        },
    )
    def preview_augmentation(body: AugmentationPreviewRequest, principal: PrincipalDep, store: StoreDep,
                             settings: SettingsDep) -> Response:
        """Show what a request would do to a few frames, without creating a job.

        The frames are the job's own, byte for byte (same kernels, sampling and seed), before
        video encoding. `episodes` (default [0]) and `frames` (default: each episode's middle
        frame) pick them; only the picked episodes' files are read. Sources are read without a
        Hub token: a private or gated dataset can be augmented but not previewed.
        """
        if not principal.allows(body.project_id):
            raise HTTPException(403, f"project_id: this API key may not act on project {body.project_id}")
        project = service.resolve_project(store, body.project_id, settings.unbound(), settings.namespace)
        effective, _ = service.apply_project(body.job_request(), project.spec)
        if effective.augmentation_type == "generative":
            raise service.GatewayError(400, service.GENERATIVE_DISABLED)
        if not settings.preview_url:
            raise service.GatewayError(503, "previews are not enabled on this gateway (ROBOAUG_GATEWAY_PREVIEW_URL "
                                            "is unset; the chart's preview.enabled)")
        call = AugmentationPreviewRequest.model_validate(
            {**effective.model_dump(), "episodes": body.episodes, "frames": body.frames, "format": body.format})
        return forward(settings.preview_url, call, settings.preview_timeout_seconds)
