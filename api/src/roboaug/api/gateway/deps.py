"""FastAPI dependencies: settings, the store, and the caller's API key."""

from __future__ import annotations

from typing import Annotated, Optional

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from .auth import KeyRing, Principal
from .settings import Settings
from .store import JobStore

API_KEY_HEADER = "x-api-key"
# auto_error=False: we answer 401 ourselves with the documented `{"detail": ...}` body.
api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, scheme_name="ApiKeyAuth",
    description="API key issued by the operator of this gateway.",
)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> JobStore:
    return request.app.state.store


def get_keyring(request: Request) -> KeyRing:
    return request.app.state.keyring


def unauthorized_detail(api_key: Optional[str]) -> str:
    """The 401 text: one definition for the guard (before the body) and this dependency."""
    return "missing x-api-key header" if not api_key else "invalid API key"


def require_principal(
    request: Request,
    keyring: Annotated[KeyRing, Depends(get_keyring)],
    api_key: Annotated[Optional[str], Security(api_key_header)] = None,
) -> Principal:
    # The request guard (guard.py) has already checked the key before the body was read; the
    # check here serves an app without it and declares the scheme in the OpenAPI document.
    principal = request.scope.get("state", {}).get("principal")
    if principal is None:
        principal = keyring.authenticate(api_key)
    if principal is None:
        raise HTTPException(status_code=401, detail=unauthorized_detail(api_key))
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
PrincipalDep = Annotated[Principal, Depends(require_principal)]
