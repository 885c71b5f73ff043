"""Prometheus metrics of the operator (served on `metrics_port`, path /metrics)."""

from __future__ import annotations

from typing import Optional

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)
_PHASE_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)

JOBS_FINISHED = Counter("roboaug_jobs_finished_total", "AugmentationJobs that reached a final status.",
                        ["status"], registry=REGISTRY)
PHASE_DURATION = Histogram("roboaug_phase_duration_seconds", "Time spent in each phase.",
                           ["phase"], buckets=_PHASE_BUCKETS, registry=REGISTRY)
RETRIES = Counter("roboaug_job_retries_total", "Worker pods that failed and were retried.", registry=REGISTRY)
QUEUE_WAIT = Histogram("roboaug_queue_wait_seconds", "AugmentationJob created -> worker pod running.",
                       buckets=_PHASE_BUCKETS, registry=REGISTRY)
JOB_CREATE_LATENCY = Histogram("roboaug_job_create_latency_seconds",
                               "AugmentationJob created -> its batch/v1 Job created by the operator.",
                               buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=REGISTRY)
RECONCILE_ERRORS = Counter("roboaug_reconcile_errors_total", "Reconciliations that raised and were retried.",
                           ["kind"], registry=REGISTRY)
API_LATENCY = Histogram("roboaug_api_request_seconds", "Latency of the operator's Kubernetes API requests.",
                        ["verb", "resource"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
                        registry=REGISTRY)
API_REQUESTS = Counter("roboaug_api_requests_total", "Kubernetes API requests made by the operator (excluding watches).",
                       ["verb", "resource"], registry=REGISTRY)


def observe_plan(plan) -> None:
    """Record what one applied `reconcile.Plan` did."""
    for src, _dst, seconds in plan.transitions:
        if seconds is not None:
            PHASE_DURATION.labels(phase=src).observe(max(0.0, seconds))
    if plan.retries:
        RETRIES.inc(plan.retries)
    if plan.queue_wait is not None:
        QUEUE_WAIT.observe(plan.queue_wait)
    if plan.finished:
        JOBS_FINISHED.labels(status=plan.finished).inc()


def serve(port: Optional[int]) -> None:
    if port is not None:
        start_http_server(port, registry=REGISTRY)
