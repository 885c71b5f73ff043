"""The steps of `reconcile.decide`, in the order `reconcile.STEPS` runs them.

Each step is a plain function of one `Decision` (see `decision.py`): it reads the observation and
what earlier steps settled, writes the phase history and the plan, and returns True when the
decision is complete, so that no later step runs (the job failed or was cancelled, or it waits
for its Job to be created or to go away). None does I/O; tests/operator/test_operator_steps.py
tests each one alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from pydantic import ValidationError

from roboaug.api import policy
from roboaug.api.contract import SPEC_ANNOTATION, SPEC_ANNOTATION_MAX_BYTES
from roboaug.api.models import (
    GENERATIVE_DISABLED_MESSAGE,
    LABEL_JOB_ID,
    LABEL_PROJECT_ID,
    WORKER_PHASES,
    AugmentationJobCreateRequest,
    AugmentationJobSpec,
)
from roboaug.api.models.project import ANNOTATION_SPEC_SOURCES, AugmentationProjectSpec, SpecSource
from roboaug.api.models.unbound import LABEL_DEFAULT_PROJECT, UnboundAction

from .decision import Decision, failure_of
from .errors import job_failure_text, kubelet_waiting_text, pending_timeout_text, start_timeout_text
from . import kueue
from . import shard_steps
from .jobs import output_dataset_id
from .observe import JobView, PodView
from .phases import QUEUED_PHASES, camel, parse_ts
from .pools import NoPoolError, select_pool

LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
LABEL_REGION = "topology.kubernetes.io/region"
NO_POD_REASON = ("the Job controller created no pod (see the Job's events: a missing ServiceAccount "
                 "or an exhausted ResourceQuota are the usual causes)")
# Kubelet `state.waiting` reasons of a container that will not start without someone fixing
# something (a missing Secret or key, a wrong image); ContainerCreating / PodInitializing are
# the normal way to start and are left alone. The operator cannot check Secrets itself (no RBAC
# on them, by design), so the kubelet's words are what the user gets.
CANNOT_START_REASONS = frozenset({
    "CreateContainerConfigError", "CreateContainerError", "ErrImagePull", "ImagePullBackOff",
    "InvalidImageName", "ErrImageNeverPull",
})
# Per pod. ErrImagePull and ImagePullBackOff alternate, and a pull error can name a different
# address each time: a bound keeps the CR small (status.error carries the last word anyway).
MAX_WAITING_EVENTS = 10
# Kueue's reason for holding a job can change often (quota taken and freed by other jobs): a
# bound keeps the CR small; the Workload itself has the latest words.
MAX_ADMISSION_EVENTS = 20
# A Job still being deleted (ours deleted behind our back, or an earlier CR's of the same name):
# look again shortly, once it is gone.
DELETING_REQUEUE_SECONDS = 2.0
# The job's AugmentationProject could not be read (apiserver trouble, RBAC): look again shortly.
PROJECT_RETRY_SECONDS = 10.0
# A job held by its project's max_running_jobs looks again this often; the controller also wakes
# it as soon as another job of the project finishes.
SLOT_REQUEUE_SECONDS = 5.0
# Spec fields only the cluster side sets: read from the CR as it is now, never part of the
# effective spec that acceptance settles.
CLUSTER_FIELDS = frozenset(AugmentationJobSpec.model_fields) - frozenset(AugmentationJobCreateRequest.model_fields)


def spec_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "spec"
        parts.append(f"spec.{where}: {err['msg']}")
    return "invalid spec: " + "; ".join(parts)


# -- before any Job ---------------------------------------------------------------------------------
def label(d: Decision) -> bool:
    """The CR labels the gateway sets, added to a CR made with kubectl."""
    labels = d.meta.get("labels") or {}
    if LABEL_JOB_ID not in labels:
        d.plan.labels[LABEL_JOB_ID] = d.job_id
    if LABEL_PROJECT_ID not in labels and d.spec_raw.get("project_id"):
        d.plan.labels[LABEL_PROJECT_ID] = str(d.spec_raw["project_id"])
    return False


def expire(d: Decision) -> bool:
    """A finished job (completed, failed, cancelled) whose project sets
    `ttl_seconds_after_finished` is deleted once that long has passed since it ended (its Jobs go
    with it); before that, a look again when it runs out. A project that cannot be read or
    parsed keeps the job: deleting is the one thing never done on a guess."""
    if not d.h.terminal:
        return False
    if d.obs.project_error:
        d.plan.requeue_after = PROJECT_RETRY_SECONDS
        return False
    try:
        ttl = AugmentationProjectSpec.model_validate((d.obs.project or {}).get("spec") or {}) \
            .ttl_seconds_after_finished if d.obs.project is not None else None
    except ValidationError:
        return False
    ended = parse_ts(d.h.current.get("completed_at") or d.h.current.get("started_at"))
    if ttl is None or ended is None:
        return False
    left = ttl - (d.now - ended).total_seconds()
    if left > 0:
        d.plan.requeue_after = max(0.5, left)
        return False
    d.plan.delete_cr = True
    return True


def settle(d: Decision) -> bool:
    """A finished job stays as it is (a Job of it still running is deleted by
    `reconcile.stop_worker`, whichever end it reached)."""
    return d.h.terminal


def accept(d: Decision) -> bool:
    """First sight of the CR: its history starts with `queued`."""
    if not d.h.started:
        d.h.start(d.job_id, d.meta.get("creationTimestamp"), d.now, message="accepted")
    return False


def validate(d: Decision) -> bool:
    """The CR's spec parses, else the job fails naming the field. On acceptance the effective
    spec (each request field from the CR if it holds it, else the project's default, else the
    built-in one) and its sources go into status, once: a project changed later does not change
    an accepted job. Every later step and the worker run that spec (`d.spec`). Before the Job
    exists, the project's current policy may still refuse the job (`failed`, the violation as
    reason)."""
    try:
        stored = AugmentationJobSpec.model_validate(d.spec_raw)
        request = AugmentationJobCreateRequest.model_validate(
            {k: v for k, v in d.spec_raw.items() if k in AugmentationJobCreateRequest.model_fields})
    except ValidationError as e:
        return d.fail(spec_error(e), "the spec is invalid", reason="InvalidSpec")
    frozen = d.h.status.get("effective_spec")
    if frozen is None:
        if d.obs.project_error:
            # Fail closed but do not fail the job: nothing is settled on an unreadable policy.
            d.plan.requeue_after = PROJECT_RETRY_SECONDS
            return True
        if load_project(d):
            return True
        try:
            effective, sources = effective_request(d, request)
        except policy.EffectiveSpecInvalid as e:
            return d.fail(e.message, "the spec is invalid with the project's defaults",
                          {"policy": ["defaults"], "field": [e.field]}, reason="InvalidSpec")
        d.h.status["effective_spec"] = effective.model_dump(mode="json")
        d.h.status["spec_sources"] = sources
    else:
        try:
            effective = AugmentationJobCreateRequest.model_validate(frozen)
        except ValidationError as e:
            return d.fail(spec_error(e).replace("spec.", "status.effective_spec.", 1),
                          "the effective spec in status is invalid", reason="InvalidSpec")
    # The request fields as settled; the cluster-only ones (cancel_requested above all) as the
    # CR holds them now.
    d.spec = AugmentationJobSpec.model_validate(
        {**effective.model_dump(), **stored.model_dump(include=CLUSTER_FIELDS)})
    if d.job is not None:
        return False
    return project_policy(d, effective)


def effective_request(d: Decision, request: AugmentationJobCreateRequest
                      ) -> tuple[AugmentationJobCreateRequest, dict[str, str]]:
    """The spec a job runs and where each field came from. A CR the gateway made already holds
    its effective spec, and its annotation the sources; any other CR (kubectl, GitOps) gets
    `policy.effective_spec` over the project as read now (`d.project`), the same rules the
    gateway applies. Raises `policy.EffectiveSpecInvalid`."""
    gateway = spec_sources(d)
    if gateway is not None:
        return request, gateway
    spec, sources = policy.effective_spec(request, d.project)
    return spec, {k: v.value for k, v in sources.items()}


def spec_sources(d: Decision) -> Optional[dict[str, str]]:
    """The gateway's per-field sources (its annotation), None for a CR without a readable one."""
    raw = (d.meta.get("annotations") or {}).get(ANNOTATION_SPEC_SOURCES)
    if not raw:
        return None
    try:
        return {str(k): SpecSource(v).value for k, v in json.loads(raw).items()}
    except (ValueError, AttributeError):
        return None  # a hand-edited annotation: treated as a CR without one


def load_project(d: Decision) -> bool:
    """The job's AugmentationProject as read now into `d.project` (None: it has none); one that
    does not parse fails the job (True)."""
    if d.project is not None or d.obs.project is None:
        return False
    try:
        d.project = AugmentationProjectSpec.model_validate(d.obs.project.get("spec") or {})
    except ValidationError as e:
        return d.fail(f"AugmentationProject {d.spec_raw.get('project_id')} is invalid: {spec_error(e)}",
                      "the project's policy cannot be read", reason="InvalidProject")
    return False


def project_policy(d: Decision, request: AugmentationJobCreateRequest) -> bool:
    """The project's policy as it is now (it may have changed since the gateway or the apiserver
    admitted the job): a violation fails the job naming the field and the policy."""
    if d.obs.project_error:
        # Fail closed but do not fail the job: an unreadable policy lets nothing start yet.
        d.plan.requeue_after = PROJECT_RETRY_SECONDS
        return True
    if d.obs.project is None:
        return without_project(d)
    if load_project(d):
        return True
    project = d.project
    under_default(d)
    if hub_token_mismatch(d):
        return True
    found = policy.check(request, project, d.job_id)
    if not found:
        return False
    return d.fail("; ".join(v.message for v in found), "refused by the project's policy",
                  {"policy": [v.policy for v in found], "field": [v.field for v in found]},
                  reason="PolicyViolation")


def without_project(d: Decision) -> bool:
    """No AugmentationProject for the job's project_id (and, with action `default`, none for the
    default project either): `jobs_without_project` says refuse (failed, naming project_id and
    the setting), allow (no policy), or, for a missing default project, wait `queued` (fail
    closed: nothing starts without the policy it is meant to run under, and a GitOps sync that
    creates the project a moment after its jobs loses nothing)."""
    unbound = d.config.jobs_without_project
    project_id, ns = str(d.spec.project_id).lower(), d.meta.get("namespace")
    data = {"project_id": project_id, "jobs_without_project": unbound.action.value}
    if unbound.action is UnboundAction.refuse:
        return d.fail(unbound.refusal(project_id, ns), "no AugmentationProject for this project_id", data,
                      reason="ProjectNotFound")
    if unbound.action is UnboundAction.allow:
        return False
    d.plan.requeue_after = PROJECT_RETRY_SECONDS
    message = unbound.missing_default(project_id, ns)
    events = d.h.current["events"]
    if not events or events[-1]["status"] != "waiting_for_project":  # once per wait
        d.h.event("waiting_for_project", d.now, message + "; waiting for it",
                  data={**data, "default_project": unbound.default_name})
        d.plan.events.append(("Warning", "DefaultProjectMissing", message))
    return True


def under_default(d: Decision) -> None:
    """A job running under the default project carries its UUID as a label (its running jobs
    count against that project's max_running_jobs) and says so once in its history and as an
    Event; a job whose own project appeared since loses the label."""
    labels = d.meta.get("labels") or {}
    if not d.obs.project_default:
        if LABEL_DEFAULT_PROJECT in labels:
            d.plan.labels[LABEL_DEFAULT_PROJECT] = None  # merge patch: removes it
        return
    if labels.get(LABEL_DEFAULT_PROJECT) != d.obs.project_default:
        d.plan.labels[LABEL_DEFAULT_PROJECT] = d.obs.project_default
    if any(e["status"] == "default_project" for ph in d.h.status["phases"] for e in ph["events"]):
        return
    message = d.config.jobs_without_project.running_under(d.spec.project_id, d.meta.get("namespace"))
    d.h.event("default_project", d.now, message,
              data={"project_id": str(d.spec.project_id).lower(), "default_project": d.obs.project_default})
    d.plan.events.append(("Normal", "DefaultProject", message))


def hub_token_mismatch(d: Decision) -> bool:
    """A CR naming a Hub-token Secret other than its project's fails (True). render_job would
    mount the project's anyway; a CR naming another one (another team's, say) is a mistake or a
    probe, and its user hears why instead of meeting a silent swap."""
    own, named = d.project.hub_token_secret, d.spec.hub_token_secret
    if own is None or named is None or named == own:
        return False
    name = d.obs.project_default or str(d.spec.project_id).lower()
    return d.fail(f"spec.hub_token_secret: names Secret {named.name} (key {named.key}), but the jobs of "
                  f"project {name} use its Secret {own.name} (key {own.key}) (AugmentationProject "
                  "hub_token_secret); leave spec.hub_token_secret out or name that Secret",
                  "refused by the project's policy",
                  {"policy": ["hub_token_secret"], "field": ["hub_token_secret"]}, reason="PolicyViolation")


def cancel(d: Decision) -> bool:
    """`spec.cancel_requested`: the job ends `cancelled` (and `reconcile.stop_worker` deletes
    our Job)."""
    if not d.spec.cancel_requested:
        return False
    d.h.cancel(d.now, "cancelled on request" + (f"; Job {d.job.name} deleted" if d.ours else ""))
    return True


def route(d: Decision) -> bool:
    """The pool for the augmentation type (sets `d.choice`); generative jobs are refused."""
    if d.spec.augmentation_type == "generative":
        return d.fail(GENERATIVE_DISABLED_MESSAGE, "generative augmentation is disabled",
                      {"augmentation_type": "generative"}, reason="GenerativeDisabled")
    try:
        d.choice = select_pool(d.config, d.spec.augmentation_type)
    except NoPoolError as e:
        return d.fail(str(e), "no pool for this augmentation type", reason="NoPool")
    return False


def project_slot(d: Decision) -> bool:
    """The project's `limits.max_running_jobs`: while the project's running jobs and its older
    waiting ones fill the limit, the job stays `queued` (a `waiting` event once per wait, never
    a failure) and no Job is created; it looks again after SLOT_REQUEUE_SECONDS."""
    limit = d.project.limits.max_running_jobs if d.project is not None else None
    if d.job is not None or limit is None:
        return False
    running, ahead = d.obs.project_running, d.obs.project_ahead
    if running + ahead < limit:
        return False
    d.plan.requeue_after = SLOT_REQUEUE_SECONDS
    d.plan.waits_for_slot = True
    events = d.h.current["events"]
    if not events or events[-1]["status"] != "waiting":
        message = f"project {d.spec.project_id} has {running} of {limit} running jobs"
        if ahead:
            message += f" and {ahead} older jobs waiting"
        d.h.event("waiting", d.now, message + "; waiting for a slot",
                  data={"running": running, "ahead": ahead, "max_running_jobs": limit})
        d.plan.events.append(("Normal", "Waiting", message))
    return True


def ensure_job(d: Decision) -> bool:
    """The worker Job: create it, adopt ours (-> `scheduling`), or wait for one being deleted;
    a Job of the same name that another object owns fails the job."""
    job = d.job
    if job is None:
        if d.obs.create_error:
            return d.fail(f"cannot create the worker Job: {d.obs.create_error}", "Job creation refused",
                          reason="JobCreateRefused")
        # one pod, or a sharded job's Indexed Job (shard_steps: the spec's shards, or the plan)
        job_body = shard_steps.worker_job(d)
        size = len(job_body["spec"]["template"]["metadata"]["annotations"][SPEC_ANNOTATION].encode())
        if size > SPEC_ANNOTATION_MAX_BYTES:  # the spec rides in the pods' annotation
            return d.fail(f"spec: {size} bytes as UTF-8 JSON, more than the {SPEC_ANNOTATION_MAX_BYTES} a worker "
                          "pod's annotation may carry (shorter prompts, or fewer)", "the spec is too large",
                          reason="InvalidSpec")
        d.plan.create_job = job_body
        return True
    if not d.ours:
        if job.deleting:  # the Job of an earlier CR with the same name, on its way out
            d.plan.requeue_after = DELETING_REQUEUE_SECONDS
            return True
        return d.fail(f"a Job named {job.name} already exists and is not owned by this AugmentationJob; "
                      "not adopting it", "name clash with an existing Job", reason="JobNameClash")
    d.h.status["job_name"] = job.name
    if job.deleting:  # deleted behind our back; recreated once it is gone
        d.plan.requeue_after = DELETING_REQUEUE_SECONDS
        return True
    if job.suspended and job.queue and not job.finished:
        return held_by_queue(d)
    if d.h.phase == "queued":
        # stamped when the Job started, not when we noticed: an operator that was stopped or
        # slow sees the Job late, and a `scheduling` begun at its own clock would push the
        # worker's earlier `downloading` start forward (phases never overlap). startTime is when
        # the job controller took it up (after Kueue's admission for a held one); a Job without
        # it yet counts from its creation unless Kueue held it (then the wait was not ours).
        began = parse_ts(job.started) or (parse_ts(job.created) if not job.queue else None)
        d.h.advance("scheduling", d.now, f"Job {job.name} created on pool {d.choice.name}",
                    data={"job": job.name, "pool": d.choice.name,
                          "instance_type": d.choice.pool.instance_type}, at=began)
    return False


def held_by_queue(d: Decision) -> bool:
    """Our Job waits, suspended, for Kueue to admit it (its project or pool names a LocalQueue:
    `jobs.job_queue`, read back from the Job's label, kueue.py):
    the job stays where it is (`queued`, before it ever ran), with Kueue's reason from its
    Workload as a `waiting_for_admission` event and a Normal Event each time the reason changes
    (at most MAX_ADMISSION_EVENTS per phase). The decision ends here, so the pending timeout
    never runs: waiting for quota is the queue's business, not a pod that cannot start. It
    looks again after kueue.REQUEUE_SECONDS; Kueue's admission unsuspends the Job, and the
    steps after this one take over (`scheduling`)."""
    job, wl = d.job, d.obs.workload
    d.plan.requeue_after = kueue.REQUEUE_SECONDS
    message = kueue.held_text(job.queue, wl, d.obs.workload_error)
    said = [e.get("message") for e in d.h.current["events"] if e["status"] == "waiting_for_admission"]
    if (not said or said[-1] != message) and len(said) < MAX_ADMISSION_EVENTS:
        d.h.event("waiting_for_admission", d.now, message,
                  data={"queue": job.queue, "workload": wl.name if wl else None,
                        "kueue_reason": wl.reason if wl else None})
        d.plan.events.append(("Normal", "WaitingForAdmission", message))
    return True


# -- the Job's pods -----------------------------------------------------------------------------------
def placement(d: Decision) -> bool:
    """Node facts (instance type, region) of the pod that runs or ran the work, recorded once the
    work has started, so they land with the move to `downloading` (one status write, not two)."""
    c = d.current
    placed = c if c and c.node else next((p for p in reversed(d.pods) if p.node), None)
    if placed is None or not (d.ran or d.job.finished or d.h.phase not in QUEUED_PHASES):
        return False
    node = d.obs.node_labels.get(placed.node) or {}
    if node.get(LABEL_INSTANCE_TYPE):
        d.h.status["instance_type"] = node[LABEL_INSTANCE_TYPE]
    if node.get(LABEL_REGION):
        d.h.status["region"] = node[LABEL_REGION]
    if not d.h.status.get("instance_type") and d.choice.pool.instance_type:
        # a node without the well-known label: report what the pool is configured to be
        d.h.status["instance_type"] = d.choice.pool.instance_type
    return False


def disruptions(d: Decision) -> bool:
    """Pods lost to evictions (node pressure: status.reason Evicted) and other node disruptions
    (the DisruptionTarget condition: a drain, a preemption) are noted once each. The Job's
    podFailurePolicy ignores disruptions, so they cost no retry; they have their own cap instead:
    the eviction after `max_evictions` fails the job, else a node under pressure would restart
    it forever. Counted from the history, because an evicted pod may be gone by the next look."""
    limit = d.config.max_evictions
    seen = [e for ph in d.h.status["phases"] for e in ph["events"] if e["status"] == "disrupted"]
    noted = {(e.get("data") or {}).get("pod") for e in seen}
    last = None
    for p in d.pods:
        if p.lost and p.name not in noted:
            noted.add(p.name)
            last = f"pod {p.name} was evicted or disrupted on node {p.node}" + (
                f" ({p.disruption})" if p.disruption else "")
            seen.append(d.h.event("disrupted", d.now, f"{last}; eviction {len(seen) + 1}, at most {limit} "
                                  "restarted; not counted as a retry",
                                  data={"pod": p.name, "node": p.node, "evictions": len(seen) + 1}))
            d.plan.events.append(("Warning", "Disrupted", f"pod {p.name} disrupted on node {p.node}"))
    if len(seen) <= limit:
        return False
    data = seen[-1].get("data") or {}
    last = last or f"pod {data.get('pod')} on node {data.get('node')}"
    return d.fail(f"the worker pod was evicted {len(seen)} times, more than max_evictions ({limit}) allows; "
                  f"last: {last}", "too many evictions",
                  {**data, "evictions": len(seen), "max_evictions": limit}, reason="TooManyEvictions")


def failed(d: Decision) -> bool:
    """The Job failed (its Failed or FailureTarget condition), or a pod exited with a permanent
    code (the podFailurePolicy fails the Job on it; no retry will happen)."""
    job, last = d.job, d.last_failure
    if job.failed_condition is not None:
        attempts = max(job.failed, len(d.failed_pods), 1)
        cond = job.failed_condition
        text = job_failure_text(cond.get("reason"), cond.get("message"), last, attempts)
        data = {**(last.data() if last else {}), "job_reason": cond.get("reason"), "attempts": attempts}
        # why the pods failed, when the Job gave up on them; else why the Job itself failed
        exit_name = (last.data() if last else {}).get("exit_name")
        why = exit_name if exit_name and cond.get("reason") in WORKER_GAVE_UP else cond.get("reason")
        return d.fail(text, f"Job {job.name} failed ({cond.get('reason') or 'Failed'})", data,
                      reason=camel(why or "JobFailed"))
    if last is not None and last.permanent:
        return d.fail(last.describe(), f"Job {job.name} failed (permanent worker error)",
                      {**last.data(), "attempts": max(job.failed, len(d.failed_pods))},
                      reason=camel(last.data().get("exit_name") or "WorkerFailed"))
    oom = out_of_memory_pods(d)
    if len(oom) >= OOM_ATTEMPTS:
        return d.fail(f"out of memory in {len(oom)} attempts (pods {', '.join(oom)}), permanent after {OOM_ATTEMPTS}: "
                      f"the job needs a pool with more memory; last: {last.describe() if last else 'OOMKilled'}",
                      f"Job {job.name} failed (out of memory {len(oom)} times)",
                      {**(last.data() if last else {}), "oom_attempts": len(oom), "attempts": max(job.failed, len(d.failed_pods))},
                      reason="OutOfMemory")
    return False


# Job condition reasons that mean the Job gave up on failing pods: their exit says more.
WORKER_GAVE_UP = frozenset({"BackoffLimitExceeded", "PodFailurePolicy"})
OOM_ATTEMPTS = 2
"""Attempts that run out of memory before the job fails for good: the same input on the same
pool runs out again, so retrying up to backoff_limit only wastes the nodes."""


def out_of_memory_pods(d: Decision) -> list[str]:
    """Failed attempts that ran out of memory: the retries noted so (their pod may be gone by
    now) and the failed pods seen now."""
    noted = [(e.get("data") or {}) for ph in d.h.status["phases"] for e in ph["events"] if e["status"] == "retry"]
    pods = {x.get("pod") for x in noted if x.get("exit_name") in ("OOMKilled", "out_of_memory")}
    pods |= {p.name for p in d.failed_pods if failure_of(p).out_of_memory}
    return sorted(p for p in pods if p)


def retries(d: Decision) -> bool:
    """Each failed attempt not yet in the history is a `retry` event (at most `backoff_limit`);
    the last one carries the failed pod's exit code and message."""
    h, last, limit = d.h, d.last_failure, d.config.backoff_limit
    n_failed = min(max(d.job.failed, len(d.failed_pods)), limit)
    if n_failed <= h.attempt:
        return False
    for attempt in range(h.attempt + 1, n_failed + 1):
        is_last = attempt == n_failed
        h.retry(attempt, d.now, f"attempt {attempt - 1} failed; retry {attempt} of at most {limit}",
                error=last.describe() if (is_last and last) else None,
                data=last.data() if (is_last and last) else None)
        d.plan.retries += 1
    d.plan.events.append(("Warning", "Retry",
                          f"attempt {n_failed} started" + (f" after: {last.describe()}" if last else "")))
    return False


def started(d: Decision) -> bool:
    """The current pod runs on a node: `downloading`, and the queue wait is measured."""
    if not (d.ran and d.h.phase in QUEUED_PHASES):
        return False
    # the pod that ran: a sharded job's current pod may be a pending shard while others are done
    c = d.current if d.current is not None and d.current.node else \
        next((p for p in reversed(d.pods) if p.node), d.current)
    d.h.advance("downloading", d.now, f"worker started on node {c.node}" if c is not None and c.node
                else "worker started",
                data={"pod": c.name if c is not None else None, "node": c.node if c is not None else None,
                      "instance_type": d.h.status.get("instance_type"), "region": d.h.status.get("region")})
    created = parse_ts(d.h.status.get("created_at"))
    if created:
        d.plan.queue_wait = max(0.0, (d.now - created).total_seconds())
    return False


def progress(d: Decision) -> bool:
    """The worker's report (`status.progress`) moves the phase forward (never back) and, in the
    phase it names, becomes a `progress` event. Every phase the report lists is entered at the
    time the worker began it, so phases run between two observations are not lost. Only the
    current pod's report counts: one that names another pod (an earlier attempt's) or none is
    dropped (`d.progress = None`)."""
    report = d.progress
    if report and (d.current is None or report.get("pod") != d.current.name):
        d.progress = None
        return False
    if not (report and report.get("phase") in WORKER_PHASES):
        return False
    target = report["phase"]
    data = {"pod": d.current.name if d.current else None}
    d.h.worker_phases(report.get("phases") or [], d.now, data)
    # a report without phase times still moves the history up to its phase, stamped now
    for p in WORKER_PHASES[: WORKER_PHASES.index(target) + 1]:  # advance() never goes back
        d.h.advance(p, d.now, f"{p} started", data=data)
    if d.h.phase == target:
        d.h.progress(report, d.now)
    for message in d.h.warnings(report.get("warnings") or [], d.now, data):  # input problems, once each
        d.plan.events.append(("Warning", "InputWarning", message))
    return False


def completion(d: Decision) -> bool:
    """The Job completed: `completed`, with the output dataset id the operator gave the worker
    (the spec's, else the naming rule; never what a worker reports) and the source and output
    commits the current pod reported; the last phase ends when it reported it ended."""
    if not d.job.complete:
        return False
    out = output_dataset_id(d.spec, d.job_id)
    d.h.status["augmented_dataset_id"] = out
    for key in ("source_revision", "augmented_dataset_revision"):  # what the worker read and wrote
        if (d.progress or {}).get(key):
            d.h.status[key] = d.progress[key]
    ended = next((parse_ts(s.get("completed_at")) for s in (d.progress or {}).get("phases") or []
                  if s.get("name") == d.h.phase), None)
    d.h.complete(d.now, f"augmented dataset: {out}", data={"augmented_dataset_id": out}, at=ended)
    return True


# -- the one pending timeout ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Note:
    """Something new about a stalled pod: a history event and a Warning Event with the same words."""

    status: str      # the history event's status
    reason: str      # the Kubernetes Event's reason
    message: str
    data: dict


@dataclass(frozen=True)
class Stall:
    """A worker pod that has not started and may never: since when it waits, what is new about
    it, and what the job fails with when the wait reaches the pending timeout."""

    since: datetime
    note: Optional[Note]
    error: str       # status.error at the timeout
    message: str     # the `failed` event's message
    data: dict       # the `failed` event's data, after pending_seconds and timeout_seconds
    reason: str      # the Failed condition's reason at the timeout


def unplaced(pod: Optional[PodView], job: JobView, events: list[dict], now: datetime,
             timeout: int) -> Optional[Stall]:
    """No pod, or a pod no node took yet: the scheduler's words (each change of them is news)."""
    if pod is not None and pod.node:
        return None
    why = pod.unschedulable if pod is not None else NO_POD_REASON
    note = None
    if pod is not None and why:
        said = [e.get("message") for e in events if e["status"] == "unschedulable"]
        if not said or said[-1] != why:
            note = Note("unschedulable", "Unschedulable", why, {"pod": pod.name})
    # No pod yet: since the Job started. A Job Kueue held starts at its admission; until the job
    # controller has stamped that (startTime), it has only just been admitted: now.
    started = job.started or (None if job.queue else job.created)
    return Stall(since=parse_ts((pod.created if pod is not None else None) or started) or now,
                 note=note, error=pending_timeout_text(timeout, why),
                 message="no node could take the worker pod", data={"scheduler": why},
                 reason="PendingTimeout")


def not_starting(pod: Optional[PodView], events: list[dict], now: datetime, timeout: int) -> Optional[Stall]:
    """A pod on a node whose container the kubelet cannot start. It gets the same budget as an
    unplaced pod, so a missing Hub-token Secret fails the job instead of leaving it queued
    forever. Each distinct kubelet message of the pod is news, up to MAX_WAITING_EVENTS."""
    if (pod is None or not pod.node or pod.phase != "Pending"
            or pod.waiting_reason not in CANNOT_START_REASONS):
        return None
    words = kubelet_waiting_text(pod.waiting_reason, pod.waiting_message)
    said = [e.get("message") for e in events
            if e["status"] == "container_waiting" and (e.get("data") or {}).get("pod") == pod.name]
    note = None
    if words not in said and len(said) < MAX_WAITING_EVENTS:
        note = Note("container_waiting", "ContainerWaiting", words,
                    {"pod": pod.name, "node": pod.node, "reason": pod.waiting_reason})
    return Stall(since=parse_ts(pod.created) or now, note=note,
                 error=start_timeout_text(timeout, pod.waiting_reason, pod.waiting_message),
                 message="the worker container could not start",
                 data={"pod": pod.name, "node": pod.node, "kubelet_reason": pod.waiting_reason},
                 reason=camel(pod.waiting_reason))


def pending_timeout(d: Decision) -> bool:
    """A worker pod that does not start (`unplaced` or `not_starting`) within the pending timeout
    (the spec's, else the config's): its news is recorded as it comes; at the timeout the Job is
    deleted (`reconcile.stop_worker`) and the job fails (no retry is spent); before it, a look
    again when it runs out."""
    timeout = d.spec.pending_timeout_seconds or d.config.pending_timeout_seconds
    hit = stalled(d, d.current, d.job, timeout)
    if hit is None:
        return False
    stall, data = hit
    return d.fail(stall.error, stall.message, data, reason=stall.reason)


def stalled(d: Decision, pod: Optional[PodView], job: JobView, timeout: int) -> Optional[tuple[Stall, dict]]:
    """The pending timeout's rule for a pod of any of the job's Jobs (a sharded job's finalize
    and cleanup pods too, `shard_steps`): the stall's news recorded as it comes, a look again
    when the timeout runs out; once the pod has waited `timeout` seconds, the stall and the data
    of its `failed` event (the caller decides what a timeout means), else None."""
    events = d.h.current["events"]
    stall = unplaced(pod, job, events, d.now, timeout) or not_starting(pod, events, d.now, timeout)
    if stall is None:
        return None
    if stall.note is not None:
        d.h.event(stall.note.status, d.now, stall.note.message, data=stall.note.data)
        d.plan.events.append(("Warning", stall.note.reason, stall.note.message))
    waited = (d.now - stall.since).total_seconds()
    if waited < timeout:
        d.plan.requeue_after = min(d.plan.requeue_after or float("inf"), max(0.5, timeout - waited))
        return None
    return stall, {"pending_seconds": round(waited, 1), "timeout_seconds": timeout, **stall.data}
