"""FastAPI dependencies: settings, the store, and the caller's API key."""

from __future__ import annotations

from typing import Annotated, Optional

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from .auth import KeyRing, Principal
from .settings import Settings
from .store import JobStore

# auto_error=False: we answer 401 ourselves with the documented `{"detail": ...}` body.
api_key_header = APIKeyHeader(
    name="x-api-key", auto_error=False, scheme_name="ApiKeyAuth",
    description="API key issued by the operator of this gateway.",
)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> JobStore:
    return request.app.state.store


def get_keyring(request: Request) -> KeyRing:
    return request.app.state.keyring


def require_principal(
    keyring: Annotated[KeyRing, Depends(get_keyring)],
    api_key: Annotated[Optional[str], Security(api_key_header)] = None,
) -> Principal:
    principal = keyring.authenticate(api_key)
    if principal is None:
        detail = "missing x-api-key header" if not api_key else "invalid API key"
        raise HTTPException(status_code=401, detail=detail)
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
PrincipalDep = Annotated[Principal, Depends(require_principal)]
