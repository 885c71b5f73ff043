"""The few Kubernetes API calls the operator makes, as plain JSON over the official client's
transport (auth, TLS and token refresh come from `kubernetes.config`).

Raw JSON rather than the typed models: the operator reads and writes small parts of objects and
must round-trip CR status exactly as stored. Every call is counted (metrics
`roboaug_api_requests_total`, and `Kube.counts` for the benchmark). Calls are blocking; the
controller runs them in a thread pool.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Iterator, Optional
from urllib.parse import urlencode

from kubernetes import client, config

from roboaug.api.models import GROUP, KIND, PLURAL, VERSION
from roboaug.api.models.project import PROJECT_PLURAL

from . import kueue
from .metrics import API_LATENCY, API_REQUESTS

USER_AGENT = "roboaug-operator"
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, body: Any):
        self.status = status
        self.reason = reason
        self.body = body
        msg = body.get("message") if isinstance(body, dict) else None
        super().__init__(f"HTTP {status} {reason}: {msg or body}")

    @property
    def message(self) -> str:
        if isinstance(self.body, dict) and self.body.get("message"):
            return str(self.body["message"])
        return f"HTTP {self.status} {self.reason}"


def load_api_client(kubeconfig: Optional[str] = None, pool_size: int = 16) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG)."""
    cfg = client.Configuration()
    try:
        if kubeconfig:
            raise config.ConfigException("explicit kubeconfig")
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = pool_size
    # One try per call: urllib3 would repeat a timed-out call up to three times, so a call could
    # last four timeouts (past the leader Lease), and repeat a write the apiserver may have
    # applied. The controller and the Lease renewal retry on their own terms.
    cfg.retries = 0
    api = client.ApiClient(cfg)
    api.user_agent = USER_AGENT
    return api


class Kube:
    def __init__(self, api: client.ApiClient, timeout: float = 10.0):
        self.api = api
        # seconds per call (config api_timeout_seconds): below the leader Lease's duration, so a
        # call cannot hang on past the leadership it was made under
        self.timeout = timeout
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._nodes: dict[str, tuple[float, dict]] = {}

    # -- transport --------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, query: Optional[dict] = None,
                content_type: str = "application/json", resource: str = "?",
                timeout: Optional[float] = None) -> Any:
        with self._lock:
            self.counts[f"{method} {resource}"] += 1
        API_REQUESTS.labels(verb=method, resource=resource).inc()
        if query:
            path = f"{path}?{urlencode(query)}"
        headers = {"Accept": "application/json", "Content-Type": content_type}
        m, url, hdrs, data, _post = self.api.param_serialize(
            method=method, resource_path=path, header_params=headers, body=body,
            auth_settings=["BearerToken"])
        started = time.monotonic()
        resp = self.api.call_api(m, url, header_params=hdrs, body=data,
                                 _request_timeout=min(timeout or self.timeout, self.timeout))
        resp.read()
        API_LATENCY.labels(verb=method, resource=resource).observe(time.monotonic() - started)
        raw = resp.data.decode() if isinstance(resp.data, bytes) else resp.data
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, resp.reason or "", payload)
        return payload

    @property
    def total_requests(self) -> int:
        return sum(self.counts.values())

    # -- AugmentationJobs -------------------------------------------------------------------
    @staticmethod
    def _cr_path(namespace: str, name: str = "") -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        return f"{base}/{name}" if name else base

    def get_cr(self, namespace: str, name: str) -> dict:
        return self.request("GET", self._cr_path(namespace, name), resource=PLURAL)

    def patch_cr_status(self, namespace: str, name: str, status: dict,
                        resource_version: Optional[str]) -> dict:
        """Merge-patch `status`; with `resource_version` it only applies to that exact version
        (HTTP 409 otherwise), so a decision made on stale data is never written."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return self.request("PATCH", self._cr_path(namespace, name) + "/status", body,
                            content_type=MERGE_PATCH, resource=f"{PLURAL}/status")

    def patch_cr_labels(self, namespace: str, name: str, labels: dict) -> dict:
        return self.request("PATCH", self._cr_path(namespace, name), {"metadata": {"labels": labels}},
                            content_type=MERGE_PATCH, resource=PLURAL)

    def delete_cr(self, namespace: str, name: str, uid: str) -> None:
        """Delete this AugmentationJob (the `uid` precondition spares a newer CR of the same
        name); its Jobs and their pods go with it through their ownerReferences. Gone already
        (404) or replaced (409) is done."""
        try:
            self.request("DELETE", self._cr_path(namespace, name),
                         {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background",
                          "preconditions": {"uid": uid}},
                         resource=PLURAL)
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    # -- AugmentationProjects ----------------------------------------------------------------
    def get_project(self, namespace: str, name: str) -> Optional[dict]:
        """The AugmentationProject `name` (the project UUID, lowercase), or None when there is none
        (nor its CRD); any other error is raised, so a policy that cannot be read lets nothing by."""
        try:
            return self.request("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PROJECT_PLURAL}/{name}",
                                resource=PROJECT_PLURAL)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    # -- Kueue ----------------------------------------------------------------------------------
    def job_workloads(self, namespace: str, job_uid: str) -> list[dict]:
        """The Kueue Workloads of the Job with uid `job_uid` (by Kueue's job-uid label)."""
        out = self.request("GET", kueue.workloads_path(namespace),
                           query={"labelSelector": kueue.job_uid_selector(job_uid)}, resource="workloads")
        return list((out or {}).get("items") or []) if isinstance(out, dict) else []

    # -- the workers' ServiceAccount, Role, RoleBinding (access.py) --------------------------
    _PATHS = {"v1": "/api/v1", "rbac.authorization.k8s.io/v1": "/apis/rbac.authorization.k8s.io/v1"}
    _PLURALS = {"ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings"}

    def ensure_same(self, namespace: str, body: dict) -> Optional[str]:
        """Create `body` (an object nothing owns: the workers' identity, access.py), or accept
        the one of that name when it grants what `body` grants (made before, by us or by whoever
        prepared the namespace). Returns a reason when it grants something else: binding our
        workers' name to other rules or other subjects is what a clash must never do."""
        kind, name = body["kind"], body["metadata"]["name"]
        plural = self._PLURALS[kind]
        path = f"{self._PATHS[body['apiVersion']]}/namespaces/{namespace}/{plural}"
        try:
            self.request("POST", path, body, query={"fieldManager": USER_AGENT}, resource=plural)
            return None
        except ApiError as e:
            if e.status != 409:
                raise
        found = self.request("GET", f"{path}/{name}", resource=plural)
        if any(k in body and found.get(k) != body[k] for k in ("rules", "roleRef", "subjects")):
            return (f"a {kind} named {name} already exists in namespace {namespace} with other "
                    "contents; the workers' identity cannot be made there")
        return None

    # -- Jobs -------------------------------------------------------------------------------
    def create_job(self, namespace: str, body: dict) -> dict:
        return self.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body,
                            query={"fieldManager": USER_AGENT}, resource="jobs")

    def get_job(self, namespace: str, name: str) -> dict:
        return self.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}", resource="jobs")

    def delete_job(self, namespace: str, name: str) -> None:
        """Foreground: the Job stays (with a deletionTimestamp) until its pods are gone."""
        try:
            self.request("DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
                         {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"},
                         resource="jobs")
        except ApiError as e:
            if e.status != 404:
                raise

    # -- Pod logs (operator/log_archive.py) --------------------------------------------------
    def pod_log_chunks(self, namespace: str, name: str, container: str,
                       chunk: int = 64 * 1024) -> Iterator[bytes]:
        """The container's whole log as it is now (no follow), streamed: the caller keeps only
        what it needs. The API errors (404: pod gone; 400: its container never ran) are raised
        before the first chunk."""
        with self._lock:
            self.counts["GET pods/log"] += 1
        API_REQUESTS.labels(verb="GET", resource="pods/log").inc()
        path = f"/api/v1/namespaces/{namespace}/pods/{name}/log?{urlencode({'container': container})}"
        m, url, hdrs, data, _post = self.api.param_serialize(
            # the apiserver negotiates pods/log like any resource: text/plain alone is refused (406)
            method="GET", resource_path=path, header_params={"Accept": "*/*"}, auth_settings=["BearerToken"])
        # (connect, read) timeouts: a read may wait on a slow kubelet, never forever
        resp = self.api.call_api(m, url, header_params=hdrs, _request_timeout=(self.timeout, 6 * self.timeout))
        if not 200 <= resp.status < 300:
            raw = resp.read()
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = raw
            raise ApiError(resp.status, resp.reason or "", payload)

        def chunks() -> Iterator[bytes]:
            try:
                yield from resp.response.stream(chunk)
            finally:
                resp.response.release_conn()

        return chunks()

    # -- Nodes ------------------------------------------------------------------------------
    def node_labels(self, name: str, ttl: float = 300.0) -> dict:
        """Labels of node `name`, cached (many jobs share few nodes); {} if the node is gone."""
        now = time.monotonic()
        hit = self._nodes.get(name)
        if hit and now - hit[0] < ttl:
            return hit[1]
        try:
            labels = (self.request("GET", f"/api/v1/nodes/{name}", resource="nodes")
                      .get("metadata", {}).get("labels") or {})
        except ApiError as e:
            if e.status not in (403, 404):
                raise
            labels = {}
        self._nodes[name] = (now, labels)
        return labels

    # -- Events -----------------------------------------------------------------------------
    def post_event(self, cr: dict, type_: str, reason: str, message: str,
                   component: str = USER_AGENT) -> None:
        meta = cr["metadata"]
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name'][:200]}.{uuid.uuid4().hex[:16]}",
                         "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
                               "name": meta["name"], "namespace": meta["namespace"],
                               "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
            "type": type_, "reason": reason, "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component, "reportingInstance": component,
            "firstTimestamp": now, "lastTimestamp": now, "eventTime": None, "count": 1,
            "action": reason,
        }
        self.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body, resource="events")
