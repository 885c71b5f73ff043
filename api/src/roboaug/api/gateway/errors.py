"""Error bodies: `{"detail": str}` for every error, FastAPI's list form for 422; 405 and
OPTIONS name in `Allow` every method served at the path.

422 items keep FastAPI's shape (`loc`, `msg`, `type`) but drop `input` and `ctx`, which can echo
a whole request body back, and every `msg` starts with the field it is about, so a client that
only prints messages still learns which field broke which rule.
"""

from __future__ import annotations

import logging
from typing import Sequence

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .service import GatewayError, IdempotencyKeyReused, PolicyRefused, StoredStatusUnreadable
from .store import Expired, Invalid, Unavailable

log = logging.getLogger(__name__)

_PREFIXES = ("Value error, ", "Assertion failed, ")


def field_path(loc) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"} and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) or "request"


def validation_item(error: dict) -> dict:
    path = field_path(error.get("loc", ()))
    msg = str(error.get("msg", "invalid"))
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    leaf = path.rsplit(".", 1)[-1]
    if leaf not in msg:
        msg = f"{path}: {msg}"
    return {"loc": list(error.get("loc", ())), "msg": msg, "type": str(error.get("type", "value_error"))}


def unprocessable(items: list[dict]) -> JSONResponse:
    return JSONResponse({"detail": items}, status_code=422)


def allowed_methods(routes, scope) -> list[str]:
    """Every method one of `routes` serves at the scope's path (OPTIONS too), sorted.

    Starlette answers 405 from the first route whose path matches, so `/v1/augmentation`
    (a POST route and a GET route) would say `Allow: POST` only; this asks every route.
    """
    methods: set[str] = set()
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods | {"OPTIONS"}) if methods else []


def install(app: FastAPI, routers: Sequence[APIRouter] = ()) -> None:
    """Error handlers; `routers` are the included routers whose routes 405/OPTIONS answers
    consider besides the app's own (FastAPI may keep an included router's routes to itself)."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code != 405:
            return await http_exception_handler(request, exc)
        routes = [*app.router.routes, *(r for router in routers for r in router.routes)]
        allow = {"Allow": ", ".join(allowed_methods(routes, request.scope))}
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=allow)
        return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers=allow)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return unprocessable([validation_item(e) for e in exc.errors()])

    @app.exception_handler(GatewayError)
    async def _gateway(request: Request, exc: GatewayError):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(PolicyRefused)
    async def _policy(request: Request, exc: PolicyRefused):
        # 403 (forbidden repo or path) as `{"detail": str}`; 422 (a limit, or defaults that clash
        # with the request) in the list form, each item naming the field and the project policy.
        if exc.status == 403:
            return JSONResponse({"detail": str(exc)}, status_code=403)
        return unprocessable([{"loc": ["body", v.field], "msg": f"{v.message} [project policy: {v.policy}]",
                               "type": f"project_policy.{v.policy}"} for v in exc.violations])

    @app.exception_handler(IdempotencyKeyReused)
    async def _reused(request: Request, exc: IdempotencyKeyReused):
        return unprocessable([{
            "loc": ["header", "Idempotency-Key"],
            "msg": "Idempotency-Key: already used with a different request body; use a new key for a new request",
            "type": "idempotency_key_reused",
        }])

    @app.exception_handler(Invalid)
    async def _invalid(request: Request, exc: Invalid):
        # The apiserver's own message names the field (CRD schema / CEL rule).
        return unprocessable([{"loc": ["body"], "msg": f"refused by the Kubernetes API: {exc}", "type": "apiserver_invalid"}])

    @app.exception_handler(Expired)
    async def _expired(request: Request, exc: Expired):
        return JSONResponse({"detail": "cursor: expired; list again without a cursor"}, status_code=400)

    @app.exception_handler(Unavailable)
    async def _unavailable(request: Request, exc: Unavailable):
        log.error("Kubernetes API unavailable: %s", exc)
        return JSONResponse({"detail": "the Kubernetes API is unavailable; retry later"}, status_code=503)

    @app.exception_handler(StoredStatusUnreadable)
    async def _unreadable(request: Request, exc: StoredStatusUnreadable):
        log.error("%s", exc)
        return JSONResponse({"detail": "the job's stored status cannot be read (server fault)"}, status_code=500)
