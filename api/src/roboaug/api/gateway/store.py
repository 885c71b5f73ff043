"""The gateway's Kubernetes access layer: a small interface and two implementations.

`KubernetesStore` talks to a real apiserver (AugmentationJob CRs through CustomObjectsApi,
idempotency records as labelled ConfigMaps). `MemoryStore` is an in-process stand-in with the same
semantics (atomic create, snapshot-consistent paging, schema validation of specs) for unit tests
and local development; it is not a cluster and keeps nothing across processes.

Errors are translated into the few the gateway acts on (`NotFound`, `AlreadyExists`, `Invalid`,
`Expired`, `Unavailable`), so no route ever sees an `ApiException`.
"""

from __future__ import annotations

import base64
import copy
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional, Protocol

from pydantic import ValidationError

from roboaug.api.models import (
    GROUP,
    KIND,
    LABEL_JOB_ID,
    PLURAL,
    VERSION,
    AugmentationJobSpec,
    cr_name,
)
from roboaug.api.models.project import PROJECT_PLURAL, AugmentationProjectSpec

LABEL_IDEMPOTENCY = f"{GROUP}/idempotency"
IDEMPOTENCY_PREFIX = "roboaug-idem-"

Selector = dict[str, frozenset[str]]
"""Label -> allowed values (AND across labels); rendered as `k=v` or `k in (a,b)`."""


class StoreError(Exception):
    """Base of the access layer's errors."""


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class Invalid(StoreError):
    """The apiserver refused the object (its message names the field)."""


class Expired(StoreError):
    """A continue token or pinned resourceVersion is too old (the list must restart)."""


class Unavailable(StoreError):
    """The apiserver could not be reached or answered with a server error."""


@dataclass
class Page:
    items: list[dict]
    continue_token: Optional[str] = None
    resource_version: Optional[str] = None


@dataclass
class IdempotencyRecord:
    """What a POST with an Idempotency-Key left behind (never the key itself, only its digest)."""

    record_id: str  # sha256 hex of (project_id, key)
    fingerprint: str  # sha256 hex of the canonical request body
    job_id: uuid.UUID
    created_at: datetime
    expires_at: datetime
    resource_version: Optional[str] = None

    @property
    def object_name(self) -> str:
        return idempotency_object_name(self.record_id)


def idempotency_object_name(record_id: str) -> str:
    return IDEMPOTENCY_PREFIX + record_id[:40]


def render_selector(selector: Optional[Selector]) -> Optional[str]:
    if not selector:
        return None
    parts = []
    for key in sorted(selector):
        values = sorted(selector[key])
        parts.append(f"{key}={values[0]}" if len(values) == 1 else f"{key} in ({','.join(values)})")
    return ",".join(parts)


class JobStore(Protocol):
    """What the gateway needs from Kubernetes."""

    namespace: str

    def create_job(self, body: dict) -> dict: ...
    def get_job(self, job_id: uuid.UUID) -> Optional[dict]: ...
    def list_jobs(self, selector: Optional[Selector], limit: int, continue_token: Optional[str] = None,
                  resource_version: Optional[str] = None) -> Page: ...
    def request_cancel(self, name: str) -> dict: ...
    def get_project(self, project_id: uuid.UUID) -> Optional[dict]: ...
    def get_idempotency(self, record_id: str) -> Optional[IdempotencyRecord]: ...
    def create_idempotency(self, record: IdempotencyRecord) -> None: ...
    def delete_idempotency(self, record: IdempotencyRecord) -> None: ...
    def purge_idempotency(self, now: datetime) -> int: ...
    def ready(self) -> None: ...


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _record_data(record: IdempotencyRecord) -> dict[str, str]:
    return {
        "fingerprint": record.fingerprint,
        "job_id": str(record.job_id),
        "created_at": _rfc3339(record.created_at),
        "expires_at": _rfc3339(record.expires_at),
    }


def _record_from(record_id: str, data: dict, resource_version: Optional[str]) -> IdempotencyRecord:
    return IdempotencyRecord(
        record_id=record_id,
        fingerprint=data["fingerprint"],
        job_id=uuid.UUID(data["job_id"]),
        created_at=_parse_ts(data["created_at"]),
        expires_at=_parse_ts(data["expires_at"]),
        resource_version=resource_version,
    )


# =============================================================================================
# In-process fake
# =============================================================================================
@dataclass
class MemoryStore:
    """A fast, faithful-enough stand-in for the apiserver (one process, one namespace).

    Like the apiserver it stamps metadata (uid, creationTimestamp, resourceVersion, generation),
    refuses a spec the CRD schema would refuse (validated with the same model), lists in name order
    with opaque continue tokens, and creates atomically (AlreadyExists on a name clash).
    """

    namespace: str = "default"
    jobs: dict[str, dict] = field(default_factory=dict)
    records: dict[str, tuple[dict, str]] = field(default_factory=dict)
    projects: dict[str, dict] = field(default_factory=dict)
    unavailable: bool = False  # tests flip this to exercise 503 / readyz
    _rv: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _check(self) -> None:
        if self.unavailable:
            raise Unavailable("memory store marked unavailable")

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def create_job(self, body: dict) -> dict:
        self._check()
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        name = meta.get("name")
        try:
            AugmentationJobSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            first = e.errors()[0]
            raise Invalid(f"{KIND}.{GROUP} {name!r} is invalid: spec.{'.'.join(map(str, first['loc']))}: "
                          f"{first['msg']}") from None
        with self._lock:
            if name in self.jobs:
                raise AlreadyExists(name)
            meta.update(namespace=self.namespace, uid=str(uuid.uuid4()), generation=1,
                        creationTimestamp=_rfc3339(_now()), resourceVersion=self._next_rv())
            self.jobs[name] = body
            return copy.deepcopy(body)

    def get_job(self, job_id: uuid.UUID) -> Optional[dict]:
        self._check()
        with self._lock:
            obj = self.jobs.get(cr_name(job_id))
            if obj is None:
                wanted = str(job_id).lower()
                obj = next((o for o in self.jobs.values()
                            if (o["metadata"].get("labels") or {}).get(LABEL_JOB_ID) == wanted), None)
            return copy.deepcopy(obj) if obj else None

    def list_jobs(self, selector, limit, continue_token=None, resource_version=None) -> Page:
        self._check()
        start = ""
        if continue_token:
            try:
                start = base64.urlsafe_b64decode(continue_token.encode()).decode()
            except Exception:
                raise Expired("continue token not recognised") from None
        with self._lock:
            names = sorted(n for n in self.jobs if n > start and _matches(self.jobs[n], selector))
            chosen = names[:limit]
            more = len(names) > limit
            items = [copy.deepcopy(self.jobs[n]) for n in chosen]
            token = base64.urlsafe_b64encode(chosen[-1].encode()).decode() if more and chosen else None
            return Page(items, token, str(self._rv))

    def request_cancel(self, name: str) -> dict:
        self._check()
        with self._lock:
            obj = self.jobs.get(name)
            if obj is None:
                raise NotFound(name)
            if not obj["spec"].get("cancel_requested"):
                obj["spec"]["cancel_requested"] = True
                obj["metadata"]["generation"] += 1
                obj["metadata"]["resourceVersion"] = self._next_rv()
            return copy.deepcopy(obj)

    def put_project(self, project_id: uuid.UUID | str, spec: dict) -> dict:
        """What `kubectl apply` of an AugmentationProject does (validated like the CRD); used by tests."""
        AugmentationProjectSpec.model_validate(spec)
        name = str(project_id).lower()
        with self._lock:
            self.projects[name] = {"metadata": {"name": name, "namespace": self.namespace,
                                                "resourceVersion": self._next_rv()},
                                   "spec": copy.deepcopy(spec)}
            return copy.deepcopy(self.projects[name])

    def get_project(self, project_id: uuid.UUID) -> Optional[dict]:
        self._check()
        with self._lock:
            found = self.projects.get(str(project_id).lower())
            return copy.deepcopy(found) if found else None

    def patch_status(self, name: str, status: dict) -> dict:
        """What the operator does (merge into the status subresource); used by tests."""
        with self._lock:
            obj = self.jobs[name]
            obj.setdefault("status", {}).update(copy.deepcopy(status))
            obj["metadata"]["resourceVersion"] = self._next_rv()
            return copy.deepcopy(obj)

    def get_idempotency(self, record_id: str) -> Optional[IdempotencyRecord]:
        self._check()
        with self._lock:
            found = self.records.get(idempotency_object_name(record_id))
            return _record_from(record_id, found[0], found[1]) if found else None

    def create_idempotency(self, record: IdempotencyRecord) -> None:
        self._check()
        with self._lock:
            if record.object_name in self.records:
                raise AlreadyExists(record.object_name)
            self.records[record.object_name] = (_record_data(record), self._next_rv())

    def delete_idempotency(self, record: IdempotencyRecord) -> None:
        self._check()
        with self._lock:
            found = self.records.get(record.object_name)
            if found and (record.resource_version is None or found[1] == record.resource_version):
                del self.records[record.object_name]

    def purge_idempotency(self, now: datetime) -> int:
        self._check()
        with self._lock:
            old = [n for n, (data, _) in self.records.items() if _parse_ts(data["expires_at"]) <= now]
            for n in old:
                del self.records[n]
            return len(old)

    def ready(self) -> None:
        self._check()


def _matches(obj: dict, selector: Optional[Selector]) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(labels.get(k) in values for k, values in (selector or {}).items())


# =============================================================================================
# Real apiserver
# =============================================================================================
class KubernetesStore:
    """AugmentationJobs via CustomObjectsApi; idempotency records as ConfigMaps.

    RBAC the gateway's ServiceAccount needs in its namespace: augmentationjobs get/list/create/patch,
    augmentationprojects get/list, configmaps get/list/create/delete.
    """

    def __init__(self, namespace: str, api_client, timeout: float = 10.0):
        from kubernetes import client

        self.namespace = namespace
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings) -> "KubernetesStore":
        import os

        from kubernetes import client, config

        cfg = client.Configuration()
        if settings.kubeconfig:
            config.load_kube_config(config_file=str(settings.kubeconfig), client_configuration=cfg)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)
        else:
            config.load_kube_config(client_configuration=cfg)
        return cls(settings.namespace, client.ApiClient(cfg), timeout=settings.kube_timeout_seconds)

    def close(self) -> None:
        self.api_client.close()

    # -- error translation ---------------------------------------------------------------------
    def _call(self, fn, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException

        kwargs.setdefault("_request_timeout", self.timeout)
        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            raise _translate(e) from None
        except StoreError:
            raise
        except Exception as e:  # urllib3 connection / timeout errors and the like
            raise Unavailable(f"{type(e).__name__}: {e}") from None

    def _co(self, method: str, **kwargs):
        fn = getattr(self.custom, method)
        return self._call(fn, group=GROUP, version=VERSION, namespace=self.namespace, plural=PLURAL, **kwargs)

    # -- jobs ------------------------------------------------------------------------------------
    def create_job(self, body: dict) -> dict:
        return self._co("create_namespaced_custom_object", body=body)

    def get_job(self, job_id: uuid.UUID) -> Optional[dict]:
        try:
            return self._co("get_namespaced_custom_object", name=cr_name(job_id))
        except NotFound:
            pass
        # A CR applied with kubectl under another name is still found by its job-id label.
        page = self.list_jobs({LABEL_JOB_ID: frozenset({str(job_id).lower()})}, limit=1)
        return page.items[0] if page.items else None

    def list_jobs(self, selector, limit, continue_token=None, resource_version=None) -> Page:
        kwargs = dict(label_selector=render_selector(selector), limit=limit)
        if continue_token:
            kwargs["_continue"] = continue_token
        elif resource_version:
            kwargs.update(resource_version=resource_version, resource_version_match="Exact")
        out = self._co("list_namespaced_custom_object", **kwargs)
        meta = out.get("metadata") or {}
        return Page(out.get("items") or [], meta.get("continue") or None, meta.get("resourceVersion"))

    def request_cancel(self, name: str) -> dict:
        return self._co("patch_namespaced_custom_object", name=name,
                        body={"spec": {"cancel_requested": True}})

    # -- projects ----------------------------------------------------------------------------------
    def get_project(self, project_id: uuid.UUID) -> Optional[dict]:
        try:
            return self._call(self.custom.get_namespaced_custom_object, group=GROUP, version=VERSION,
                              namespace=self.namespace, plural=PROJECT_PLURAL, name=str(project_id).lower())
        except NotFound:
            return None

    # -- idempotency records ---------------------------------------------------------------------
    def get_idempotency(self, record_id: str) -> Optional[IdempotencyRecord]:
        try:
            cm = self._call(self.core.read_namespaced_config_map, idempotency_object_name(record_id),
                            self.namespace)
        except NotFound:
            return None
        return _record_from(record_id, cm.data or {}, cm.metadata.resource_version)

    def create_idempotency(self, record: IdempotencyRecord) -> None:
        from kubernetes.client import V1ConfigMap, V1ObjectMeta

        body = V1ConfigMap(
            metadata=V1ObjectMeta(
                name=record.object_name,
                labels={LABEL_IDEMPOTENCY: "true", LABEL_JOB_ID: str(record.job_id)},
                annotations={f"{GROUP}/expires-at": _rfc3339(record.expires_at)},
            ),
            data=_record_data(record),
        )
        self._call(self.core.create_namespaced_config_map, self.namespace, body)

    def delete_idempotency(self, record: IdempotencyRecord) -> None:
        from kubernetes.client import V1DeleteOptions, V1Preconditions

        options = V1DeleteOptions(
            preconditions=V1Preconditions(resource_version=record.resource_version)
            if record.resource_version else None
        )
        try:
            self._call(self.core.delete_namespaced_config_map, record.object_name, self.namespace,
                       body=options)
        except (NotFound, AlreadyExists):  # gone already, or replaced by a newer record
            pass

    def purge_idempotency(self, now: datetime) -> int:
        removed, token = 0, None
        while True:
            out = self._call(self.core.list_namespaced_config_map, self.namespace,
                             label_selector=f"{LABEL_IDEMPOTENCY}=true", limit=200, _continue=token)
            for cm in out.items:
                try:
                    expires = _parse_ts((cm.data or {})["expires_at"])
                except (KeyError, ValueError):
                    continue
                if expires <= now:
                    rid = cm.metadata.name[len(IDEMPOTENCY_PREFIX):]
                    self.delete_idempotency(IdempotencyRecord(rid, "", uuid.UUID(int=0), now, expires,
                                                              cm.metadata.resource_version))
                    removed += 1
            # The generated client names the field `var_continue` (newer) or `_continue` (older).
            meta = out.metadata
            token = (getattr(meta, "var_continue", None) or getattr(meta, "_continue", None)) if meta else None
            if not token:
                return removed

    def ready(self) -> None:
        self._co("list_namespaced_custom_object", limit=1)


def _translate(e) -> StoreError:
    import json

    try:
        message = json.loads(e.body or "{}").get("message") or e.reason
    except (ValueError, AttributeError):
        message = e.reason
    status = e.status or 0
    if status == 404:
        return NotFound(message)
    if status == 409:  # AlreadyExists on create, precondition mismatch on delete
        return AlreadyExists(message)
    if status == 422:
        return Invalid(message)
    if status == 410:
        return Expired(message)
    if status == 400 and "continue" in str(message).lower():
        return Expired(message)
    return Unavailable(f"apiserver answered {status}: {message}")
