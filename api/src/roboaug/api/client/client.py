"""A typed client of the REST gateway: every answer is parsed into the API's own models."""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Iterator, Literal, Mapping, Optional, Union, overload

import httpx

from roboaug.api.models import (
    TERMINAL_STATUSES,
    AugmentationJobCreateRequest,
    AugmentationJobCreateResponse,
    AugmentationStatusResponse,
    JobStatus,
)
from roboaug.api.models.preview import AugmentationPreviewRequest, AugmentationPreviewResponse

from . import config as _config
from .errors import ApiError, from_response
from .logs import LogLine, parse_line

API_KEY_HEADER = "x-api-key"
PAGE_SIZE = 100
"""Jobs asked for per list page (the gateway's default maximum); a gateway that allows fewer
gets asked without a size."""

JobId = Union[uuid.UUID, str]
Request = Union[AugmentationJobCreateRequest, Mapping[str, Any]]


class WaitTimeout(TimeoutError):
    """`wait` ran out of time; `status` is the last answer seen."""

    def __init__(self, job_id: JobId, timeout: float, status: AugmentationStatusResponse):
        super().__init__(f"job {job_id} still {status.status} ({status.current_phase}) after {timeout:g}s")
        self.status = status


def _body(request: Request, model: type = AugmentationJobCreateRequest) -> dict:
    """Only the fields the caller set go over the wire, so the project's defaults fill the rest
    (as on a plain POST); the model checks them first, with its own messages."""
    if not isinstance(request, model):
        request = model.model_validate(dict(request))
    return request.model_dump(mode="json", exclude_unset=True)


class Client:
    """`Client()` reads ROBOAUG_URL / ROBOAUG_API_KEY or the config file (see `config`).

    Every gateway error is raised as `ApiError` (status code and a one-line detail naming the
    field); a gateway that cannot be reached as `ApiError` with status_code None.
    """

    def __init__(self, url: Optional[str] = None, api_key: Optional[str] = None, *, timeout: float = 30.0,
                 transport: Optional[httpx.BaseTransport] = None):
        if url is None or api_key is None:
            cfg = _config.load()
            url, api_key = url or cfg.url, api_key or cfg.api_key
        if not url:
            raise _config.ConfigError(
                f"no gateway URL: set {_config.ENV_URL} or run `roboaug login` (writes {_config.config_path()})")
        self.url = url.rstrip("/")
        headers = {API_KEY_HEADER: api_key} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------
    def _send(self, method: str, path: str, **kw) -> httpx.Response:
        try:
            answer = self._http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise ApiError(None, f"cannot reach the gateway at {self.url}: {e or type(e).__name__}") from None
        if answer.status_code >= 400:
            raise from_response(answer.status_code, answer.content, answer.reason_phrase)
        return answer

    # -- jobs -----------------------------------------------------------------------------------
    def submit(self, request: Request, *, idempotency_key: Optional[str] = None) -> AugmentationJobCreateResponse:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        answer = self._send("POST", "/v1/augmentation", json=_body(request), headers=headers)
        return AugmentationJobCreateResponse.model_validate(answer.json())

    def get(self, job_id: JobId) -> AugmentationStatusResponse:
        return AugmentationStatusResponse.model_validate(self._send("GET", f"/v1/augmentation/{job_id}").json())

    def cancel(self, job_id: JobId) -> AugmentationStatusResponse:
        """Ask for cancellation (idempotent); answers the status at that moment."""
        return AugmentationStatusResponse.model_validate(self._send("POST", f"/v1/augmentation/{job_id}/cancel").json())

    def iter_jobs(self, *, project_id: Optional[JobId] = None,
                  status: Optional[Union[JobStatus, str]] = None) -> Iterator[AugmentationStatusResponse]:
        """Every job the key may see, page by page, in the gateway's order (by name)."""
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        if project_id is not None:
            params["project_id"] = str(project_id)
        if status is not None:
            params["status"] = JobStatus(status).value
        while True:
            try:
                page = self._send("GET", "/v1/augmentation", params=params).json()
            except ApiError as e:
                if e.status_code == 422 and "limit" in e.fields and "limit" in params and "cursor" not in params:
                    del params["limit"]
                    continue
                raise
            for item in page.get("items") or []:
                yield AugmentationStatusResponse.model_validate(item)
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def list(self, *, project_id: Optional[JobId] = None, status: Optional[Union[JobStatus, str]] = None,
             limit: Optional[int] = None) -> list[AugmentationStatusResponse]:
        """Jobs newest first (at most `limit`). The apiserver lists by name only, so this reads
        every page and sorts by `created_at`."""
        jobs = list(self.iter_jobs(project_id=project_id, status=status))
        jobs.sort(key=lambda j: (j.created_at.timestamp() if j.created_at else float("-inf"), str(j.job_id)),
                  reverse=True)
        return jobs if limit is None else jobs[:limit]

    def wait(self, job_id: JobId, timeout: Optional[float] = None, *, poll: float = 2.0,
             on_update: Optional[Callable[[AugmentationStatusResponse], None]] = None) -> AugmentationStatusResponse:
        """Poll until the job is completed, failed or cancelled and return that answer (it does not
        raise for a failed job: look at `.status`). Raises WaitTimeout after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        terminal = {s.value for s in TERMINAL_STATUSES}
        while True:
            status = self.get(job_id)
            if on_update is not None:
                on_update(status)
            if status.status in terminal:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(job_id, timeout, status)
            pause = poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
            time.sleep(pause)

    # -- logs and preview ----------------------------------------------------------------------
    def logs(self, job_id: JobId, *, follow: bool = False, attempt: Optional[int] = None) -> Iterator[LogLine]:
        """The worker's log lines, parsed; with follow=True the iterator goes on while the pod
        runs and ends when it does (close it to stop early)."""
        params: dict[str, Any] = {"follow": "true" if follow else "false"}
        if attempt is not None:
            params["attempt"] = attempt
        timeout = httpx.Timeout(self._http.timeout.connect, read=None) if follow else self._http.timeout
        try:
            with self._http.stream("GET", f"/v1/augmentation/{job_id}/logs", params=params, timeout=timeout) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    raise from_response(answer.status_code, answer.content, answer.reason_phrase)
                for text in answer.iter_lines():
                    line = parse_line(text)
                    if line is not None:
                        yield line
        except httpx.TransportError as e:
            raise ApiError(None, f"log stream from {self.url} broke: {e or type(e).__name__}") from None

    @overload
    def preview(self, request: Request, *, episodes: Optional[list[int]] = ..., frames: Optional[list[int]] = ...,
                format: Literal["png"] = ...) -> bytes: ...

    @overload
    def preview(self, request: Request, *, episodes: Optional[list[int]] = ..., frames: Optional[list[int]] = ...,
                format: Literal["json"]) -> AugmentationPreviewResponse: ...

    def preview(self, request, *, episodes=None, frames=None, format="png"):
        """What the job would make of a few frames, without a job: the PNG grid (bytes), or with
        format="json" every frame as a PNG (AugmentationPreviewResponse)."""
        data = (request.model_dump(mode="json", exclude_unset=True)
                if isinstance(request, AugmentationJobCreateRequest) else dict(request))
        picks = {"episodes": episodes, "frames": frames, "format": format}
        data.update({k: v for k, v in picks.items() if v is not None})
        body = _body(data, AugmentationPreviewRequest)
        answer = self._send("POST", "/v1/augmentation/preview", json=body, timeout=max(120.0, self._http.timeout.read or 0))
        if format == "json":
            return AugmentationPreviewResponse.model_validate(answer.json())
        return answer.content
