"""The gateway's Kubernetes access layer: a small interface and two implementations.

`KubernetesStore` talks to a real apiserver (AugmentationJob and AugmentationProject CRs through
CustomObjectsApi; idempotency needs nothing else: the CR is its own record, see
`service.create_job`). `MemoryStore` is an in-process stand-in with the same
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
    def get_job_named(self, name: str) -> Optional[dict]: ...
    def list_jobs(self, selector: Optional[Selector], limit: int, continue_token: Optional[str] = None,
                  resource_version: Optional[str] = None) -> Page: ...
    def request_cancel(self, name: str) -> dict: ...
    def get_project(self, project_id: uuid.UUID) -> Optional[dict]: ...
    def ready(self) -> None: ...


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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

    def get_job_named(self, name: str) -> Optional[dict]:
        self._check()
        with self._lock:
            obj = self.jobs.get(name)
            return copy.deepcopy(obj) if obj else None

    def delete_job(self, name: str) -> None:
        """What the operator does when a project's TTL has passed (or kubectl delete); used by tests."""
        with self._lock:
            del self.jobs[name]

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

    def ready(self) -> None:
        self._check()


def _matches(obj: dict, selector: Optional[Selector]) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(labels.get(k) in values for k, values in (selector or {}).items())


# =============================================================================================
# Real apiserver
# =============================================================================================
class KubernetesStore:
    """AugmentationJobs and AugmentationProjects via CustomObjectsApi.

    RBAC the gateway's ServiceAccount needs in its namespace: augmentationjobs get/list/create/patch,
    augmentationprojects get/list. Nothing else (no ConfigMaps, no Secrets).
    """

    def __init__(self, namespace: str, api_client, timeout: float = 10.0):
        from kubernetes import client

        self.namespace = namespace
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
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

    def get_job_named(self, name: str) -> Optional[dict]:
        try:
            return self._co("get_namespaced_custom_object", name=name)
        except NotFound:
            return None

    def get_job(self, job_id: uuid.UUID) -> Optional[dict]:
        found = self.get_job_named(cr_name(job_id))
        if found is not None:
            return found
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
