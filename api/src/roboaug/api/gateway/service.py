"""What the routes do, as plain functions over a `JobStore` (testable without HTTP or a cluster)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional

from pydantic import ValidationError

from roboaug.api.models import (
    GENERATIVE_DISABLED_MESSAGE,
    GROUP,
    KIND,
    LABEL_JOB_ID,
    LABEL_PROJECT_ID,
    TERMINAL_STATUSES,
    VERSION,
    AugmentationJobCreateRequest,
    AugmentationJobSpec,
    AugmentationJobStatus,
    AugmentationStatusResponse,
    JobStatus,
    SecretKeyRef,
    cr_name,
)

from roboaug.api import policy
from roboaug.api.progress import job_progress
from roboaug.api.models.project import ANNOTATION_SPEC_SOURCES, AugmentationProjectSpec, SpecSource
from roboaug.api.models.unbound import LABEL_DEFAULT_PROJECT, JobsWithoutProject, UnboundAction

from .settings import MIN_IDEMPOTENCY_TTL
from .store import AlreadyExists, JobStore, Page, Selector

GENERATIVE_DISABLED = GENERATIVE_DISABLED_MESSAGE  # shared with the operator: one text, either door
CLUSTER_ONLY_FIELDS = frozenset(AugmentationJobSpec.model_fields) - frozenset(AugmentationJobCreateRequest.model_fields)


class GatewayError(Exception):
    """An error the client caused or must know about; `status` is the HTTP status to answer."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used before with a different body (answered as a 422)."""


class StoredStatusUnreadable(Exception):
    """The CR's status does not match the model (an operator bug, not the client's)."""


class PolicyRefused(Exception):
    """The project's policy refuses the request: 403 when a repo or path is forbidden, else 422."""

    def __init__(self, violations: list[policy.Violation]):
        super().__init__("; ".join(v.message for v in violations))
        self.violations = violations
        self.status = 403 if any(v.kind == "forbidden" for v in violations) else 422


# -- projects -------------------------------------------------------------------------------------
def load_project(store: JobStore, project_id: uuid.UUID) -> Optional[AugmentationProjectSpec]:
    """The job's project policy, or None when the project has no AugmentationProject."""
    obj = store.get_project(project_id)
    if obj is None:
        return None
    try:
        return AugmentationProjectSpec.model_validate(obj.get("spec") or {})
    except ValidationError as e:
        # Fail closed: a policy we cannot read must not let the job through unchecked.
        raise StoredStatusUnreadable(f"AugmentationProject {project_id}: {e}") from None


@dataclass(frozen=True)
class JobProject:
    """The policy a new job runs under: its project's, the default project's (`default_project`
    set: its project has no AugmentationProject), or none (`spec` None: allowed without one)."""

    spec: Optional[AugmentationProjectSpec]
    default_project: Optional[str] = None


def resolve_project(store: JobStore, project_id: uuid.UUID, unbound: JobsWithoutProject,
                    namespace: str) -> JobProject:
    """The job's project, else what `jobs_without_project` says: 403 naming project_id and the
    setting (refuse), the default project (default; 503 while it is missing too: the deployment's
    fault, and retrying after an admin creates it succeeds), or no policy (allow)."""
    own = load_project(store, project_id)
    if own is not None or unbound.action is UnboundAction.allow:
        return JobProject(own)
    if unbound.action is UnboundAction.refuse:
        raise GatewayError(403, unbound.refusal(project_id, namespace))
    default = load_project(store, unbound.default_project)
    if default is None:
        raise GatewayError(503, unbound.missing_default(project_id, namespace) + "; retry once it exists")
    return JobProject(default, unbound.default_name)


def apply_project(request: AugmentationJobCreateRequest, project: Optional[AugmentationProjectSpec]
                  ) -> tuple[AugmentationJobCreateRequest, dict[str, SpecSource]]:
    """The effective spec and its sources, or PolicyRefused / a 422 naming the field and the policy."""
    try:
        spec, sources = policy.effective_spec(request, project)
    except policy.EffectiveSpecInvalid as e:
        raise PolicyRefused([policy.Violation(e.field, "defaults", "limit", e.message)]) from None
    if project is not None:
        found = policy.check(spec, project)
        forbidden = [v for v in found if v.kind == "forbidden"]
        if found:
            raise PolicyRefused(forbidden or found)
    return spec, sources


# -- create ---------------------------------------------------------------------------------------
def fingerprint(request: AugmentationJobCreateRequest) -> str:
    """Digest of the request as validated, so key order, spacing and spelled-out defaults do not
    make two identical requests look different."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_record_id(project_id: uuid.UUID, key: str) -> str:
    # Scoped by project so two tenants choosing the same key never meet.
    return hashlib.sha256(f"{str(project_id).lower()}\n{key}".encode()).hexdigest()


# An Idempotency-Key needs no record of its own: the job's CR is the record. Its name comes from
# (project, key) and the day-long window the first request fell in, and its annotations hold the
# key's digest (never the key), the body's digest and when the key expires. The apiserver's atomic
# create by name makes concurrent retries meet on one CR; the key is forgotten when the TTL has
# passed or when the CR itself goes (project TTL, kubectl delete).
ANNOTATION_IDEMPOTENCY_KEY = f"{GROUP}/idempotency-key-sha256"
ANNOTATION_REQUEST_DIGEST = f"{GROUP}/request-sha256"
ANNOTATION_IDEMPOTENCY_EXPIRES = f"{GROUP}/idempotency-expires-at"
IDEMPOTENCY_WINDOW_SECONDS = MIN_IDEMPOTENCY_TTL
"""Fixed, whatever the TTL (which is at least this long): a changed TTL setting never moves a
job to another name. A job made in window w expires at or after the end of w, so the current
window's name is free whenever every job found under the key has expired."""
_IDEMPOTENCY_NAMESPACE = uuid.UUID("6b1c8a52-3f0e-4c55-9a8e-2f1d7e0b5c31")


def idempotent_job_id(record_id: str, window: int) -> uuid.UUID:
    """The job id (hence the CR name) a key's request gets in `window` (a name-based UUID)."""
    return uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{record_id}/{window}")


def idempotency_windows(now: datetime, ttl_seconds: int) -> list[int]:
    """The windows, newest first, in which a job still inside its TTL can have been made."""
    if ttl_seconds < IDEMPOTENCY_WINDOW_SECONDS:
        raise ValueError(f"ttl_seconds must be at least {IDEMPOTENCY_WINDOW_SECONDS}")
    current = int(now.timestamp()) // IDEMPOTENCY_WINDOW_SECONDS
    back = -(-ttl_seconds // IDEMPOTENCY_WINDOW_SECONDS)
    return [current - i for i in range(back + 1)]


@dataclass(frozen=True)
class KeyedJob:
    """What a CR made with an Idempotency-Key says about it (from its annotations)."""

    job_id: uuid.UUID
    request_digest: str
    expires_at: datetime


def keyed_job(obj: dict, record_id: str) -> KeyedJob:
    """The key's record in `obj`; 409 when the CR under the key's name was not made with this key."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    try:
        if annotations[ANNOTATION_IDEMPOTENCY_KEY] != record_id:
            raise KeyError(ANNOTATION_IDEMPOTENCY_KEY)
        return KeyedJob(job_id_of(obj), annotations[ANNOTATION_REQUEST_DIGEST],
                        datetime.fromisoformat(annotations[ANNOTATION_IDEMPOTENCY_EXPIRES].replace("Z", "+00:00")))
    except (KeyError, ValueError):
        raise GatewayError(409, f"Idempotency-Key: the job name {meta.get('name')!r} it maps to is taken by "
                                "a job not created with this key; use another key") from None


def keyed_annotations(record_id: str, body_print: str, expires_at: datetime) -> dict[str, str]:
    return {ANNOTATION_IDEMPOTENCY_KEY: record_id, ANNOTATION_REQUEST_DIGEST: body_print,
            ANNOTATION_IDEMPOTENCY_EXPIRES: expires_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def build_cr(request: AugmentationJobCreateRequest, job_id: uuid.UUID,
             hub_token_secret: Optional[SecretKeyRef] = None,
             sources: Optional[dict[str, SpecSource]] = None,
             default_project: Optional[str] = None) -> dict:
    """The AugmentationJob CR for a request: the spec records every effective value (project and
    built-in defaults included), so later default changes never alter a submitted job. A job
    running under the default project carries its UUID as a label (LABEL_DEFAULT_PROJECT)."""
    spec = AugmentationJobSpec.model_validate(
        {**request.model_dump(), "job_id": job_id, "hub_token_secret": hub_token_secret}
    )
    labels = {LABEL_JOB_ID: str(job_id).lower(), LABEL_PROJECT_ID: str(request.project_id).lower()}
    if default_project:
        labels[LABEL_DEFAULT_PROJECT] = default_project
    metadata: dict = {"name": cr_name(job_id), "labels": labels}
    if sources is not None:
        metadata["annotations"] = {ANNOTATION_SPEC_SOURCES: json.dumps(
            {k: SpecSource(v).value for k, v in sorted(sources.items())}, separators=(",", ":"))}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": metadata,
        "spec": spec.model_dump(mode="json", exclude_none=True),
    }


def create_message(request: AugmentationJobCreateRequest) -> str:
    ignored = request.ignored_fields_message()
    return "Augmentation job queued." + (f" Note: {ignored}." if ignored else "")


@dataclass
class Created:
    job_id: uuid.UUID
    message: str
    replayed: bool = False


def create_job(store: JobStore, request: AugmentationJobCreateRequest, *,
               idempotency_key: Optional[str] = None,
               hub_token_secret: Optional[SecretKeyRef] = None,
               project: Optional[AugmentationProjectSpec] = None,
               default_project: Optional[str] = None,
               ttl_seconds: int = MIN_IDEMPOTENCY_TTL,
               now: Optional[datetime] = None) -> Created:
    """Create the CR; with an idempotency key, at most one CR per (project, key) within the TTL.

    The keyed CR is its own record (see ANNOTATION_IDEMPOTENCY_KEY): a retry finds it by name
    and replays it when the body's digest matches (422 when it does not); two concurrent retries
    both create the same name and the loser replays the winner's job. A CR the apiserver refuses
    leaves nothing behind.
    """
    effective, sources = apply_project(request, project)
    if effective.augmentation_type == "generative":
        raise GatewayError(400, GENERATIVE_DISABLED)
    if project is not None and project.hub_token_secret is not None:
        hub_token_secret = project.hub_token_secret  # project-scoped credentials win
    message = create_message(effective)

    if idempotency_key is None:
        job_id = uuid.uuid4()
        store.create_job(build_cr(effective, job_id, hub_token_secret, sources, default_project))
        return Created(job_id, message)

    now = now or datetime.now(timezone.utc)
    record_id = idempotency_record_id(request.project_id, idempotency_key)
    body_print = fingerprint(request)

    def replay(obj: dict) -> Optional[Created]:
        found = keyed_job(obj, record_id)
        if found.expires_at <= now:
            return None
        if found.request_digest != body_print:
            raise IdempotencyKeyReused()
        return Created(found.job_id, message, replayed=True)

    windows = idempotency_windows(now, ttl_seconds)
    for window in windows:
        obj = store.get_job_named(cr_name(idempotent_job_id(record_id, window)))
        created = replay(obj) if obj is not None else None
        if created is not None:
            return created
    job_id = idempotent_job_id(record_id, windows[0])
    body = build_cr(effective, job_id, hub_token_secret, sources, default_project)
    body["metadata"].setdefault("annotations", {}).update(
        keyed_annotations(record_id, body_print, now + timedelta(seconds=ttl_seconds)))
    try:
        store.create_job(body)
    except AlreadyExists:
        # A concurrent request with this key created it first: its body decides.
        obj = store.get_job_named(cr_name(job_id))
        created = replay(obj) if obj is not None else None
        if created is None:
            raise GatewayError(409, "Idempotency-Key is being used by concurrent requests; retry") from None
        return created
    return Created(job_id, message)


# -- read -----------------------------------------------------------------------------------------
def job_id_of(obj: dict) -> uuid.UUID:
    spec = obj.get("spec") or {}
    meta = obj.get("metadata") or {}
    for candidate in (spec.get("job_id"), (meta.get("labels") or {}).get(LABEL_JOB_ID), meta.get("uid")):
        if candidate:
            try:
                return uuid.UUID(str(candidate))
            except ValueError:
                continue
    raise StoredStatusUnreadable(f"CR {meta.get('name')!r} has no usable job id")


def project_id_of(obj: dict) -> Optional[str]:
    return (obj.get("spec") or {}).get("project_id")


def status_from_cr(obj: dict) -> AugmentationStatusResponse:
    """Seed 001's response from a CR: the operator's status as stored, queued before it writes one."""
    raw = obj.get("status") or {}
    try:
        stored = AugmentationJobStatus.model_validate(raw)
    except ValidationError as e:
        raise StoredStatusUnreadable(f"status of CR {obj.get('metadata', {}).get('name')!r}: {e}") from None
    # `progress` of the CR is the worker's report; the answer's is made from it.
    data = stored.model_dump(include=set(AugmentationStatusResponse.model_fields) - {"progress"})
    data["job_id"] = data.get("job_id") or job_id_of(obj)
    data["status"] = data.get("status") or JobStatus.queued.value
    data["current_phase"] = data.get("current_phase") or data["status"]
    data["created_at"] = data.get("created_at") or (obj.get("metadata") or {}).get("creationTimestamp")
    if stored.effective_spec is None:
        # Until the operator accepts the job, the CR's spec is the effective spec and the
        # gateway's annotation says where each field came from.
        data["effective_spec"] = effective_spec_of(obj)
        data["spec_sources"] = spec_sources_of(obj)
    data["progress"] = job_progress(stored.progress, data["current_phase"], datetime.now(timezone.utc),
                                    attempt=stored.attempt)
    return AugmentationStatusResponse.model_validate(data)


def effective_spec_of(obj: dict) -> Optional[AugmentationJobCreateRequest]:
    """The CR's spec without its job-only fields; None when it is not a valid request (a
    hand-written CR the apiserver let through), which the operator then refuses."""
    spec = obj.get("spec") or {}
    try:
        return AugmentationJobCreateRequest.model_validate(
            {k: v for k, v in spec.items() if k in AugmentationJobCreateRequest.model_fields})
    except ValidationError:
        return None


def spec_sources_of(obj: dict) -> dict[str, SpecSource]:
    """The gateway's per-field sources (annotation); empty for a CR without it or with a bad one."""
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_SPEC_SOURCES)
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
        return {str(k): SpecSource(v) for k, v in parsed.items()}
    except (ValueError, AttributeError):
        return {}


def visible(obj: Optional[dict], principal) -> Optional[dict]:
    """The CR if the caller may see it; a job of another project reads as unknown (404)."""
    if obj is None or principal is None:
        return obj
    return obj if principal.allows(project_id_of(obj) or "") else None


def cancel_job(store: JobStore, obj: dict) -> AugmentationStatusResponse:
    """Ask the operator to cancel; a finished or already-cancelling job is left as it is."""
    current = status_from_cr(obj)
    if current.status in {s.value for s in TERMINAL_STATUSES} or (obj.get("spec") or {}).get("cancel_requested"):
        return current
    return status_from_cr(store.request_cancel(obj["metadata"]["name"]))


# -- list -----------------------------------------------------------------------------------------
SCAN_LIMIT = 1000
"""Most CRs one list request examines when filtering by status; the page may then hold fewer
items than asked, with a cursor to go on."""


@dataclass
class Cursor:
    continue_token: Optional[str]
    offset: int
    resource_version: Optional[str]
    query: str

    def encode(self) -> str:
        raw = json.dumps({"c": self.continue_token, "o": self.offset, "rv": self.resource_version,
                          "q": self.query}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, query: str) -> "Cursor":
        try:
            raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            cursor = cls(raw["c"], int(raw["o"]), raw["rv"], raw["q"])
            assert cursor.offset >= 0
            assert cursor.continue_token is None or isinstance(cursor.continue_token, str)
            assert cursor.resource_version is None or isinstance(cursor.resource_version, str)
        except Exception:
            raise GatewayError(400, "cursor: not a cursor this API issued; list again without it") from None
        if cursor.query != query:
            raise GatewayError(400, "cursor: issued for different project_id/status/limit filters")
        return cursor


def query_hash(selector: Optional[Selector], status: Optional[str], limit: int) -> str:
    text = json.dumps([sorted((k, sorted(v)) for k, v in (selector or {}).items()), status, limit])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def list_jobs(store: JobStore, *, selector: Optional[Selector], status: Optional[str], limit: int,
              cursor: Optional[str]) -> tuple[list[AugmentationStatusResponse], Optional[str]]:
    """One page of jobs (in CR-name order) and the cursor of the next, None at the end.

    Project filtering is a label selector the apiserver applies; status lives in `.status`, which
    a CR list cannot select on, so it is filtered here. The cursor is the apiserver's continue
    token plus how many items of that chunk were already returned.
    """
    q = query_hash(selector, status, limit)
    pos = Cursor.decode(cursor, q) if cursor else Cursor(None, 0, None, q)
    chunk = limit if status is None else max(limit, 100)
    found: list[AugmentationStatusResponse] = []
    scanned = 0
    token, offset, rv = pos.continue_token, pos.offset, pos.resource_version
    while True:
        page: Page = store.list_jobs(selector, chunk, continue_token=token,
                                     resource_version=rv if token is None and offset else None)
        rv = rv or page.resource_version
        for index in range(offset, len(page.items)):
            scanned += 1
            item = status_from_cr(page.items[index])
            if status is None or item.status == status:
                found.append(item)
            if len(found) == limit or scanned >= SCAN_LIMIT:
                if index + 1 < len(page.items):
                    return found, Cursor(token, index + 1, rv, q).encode()
                return found, (Cursor(page.continue_token, 0, None, q).encode() if page.continue_token else None)
        if not page.continue_token:
            return found, None
        token, offset = page.continue_token, 0
