"""decide(): observed state -> plan, for every path of the issue, without a cluster."""
import random
from dataclasses import replace

from roboaug.api.models import GENERATIVE_DISABLED_MESSAGE
from roboaug.operator.config import parse_config
from roboaug.operator.phases import parse_ts
from roboaug.operator.steps import MAX_WAITING_EVENTS

from tests.operator._operator_factories import applied, decide_checked, CPU_NODE, CR_UID, JOB_ID, at, cr, iso, job, pod

CFG = parse_config({"backoff_limit": 2, "pending_timeout_seconds": 60})



def run(c, now=1.0, **obs):
    return decide_checked(c, CFG, now, **obs)


def names(c):
    return [p["name"] for p in c["status"]["phases"]]


def test_new_cr_creates_the_job_then_schedules():
    c = cr()
    p = run(c)
    assert p.create_job["metadata"]["name"] == "aug-demo-worker"
    assert p.status["status"] == "queued" and p.status["job_id"] == JOB_ID
    assert p.status["created_at"] == c["metadata"]["creationTimestamp"]
    assert p.labels == {}  # the gateway already labelled it
    c = applied(c, p)
    p = run(c, job=job())
    assert p.create_job is None and p.status["current_phase"] == "scheduling"
    assert p.status["job_name"] == "aug-demo-worker"
    assert ("Normal", "Scheduling") in [e[:2] for e in p.events]
    assert p.transitions[0][:2] == ("queued", "scheduling")


def test_kubectl_cr_gets_uid_as_job_id_and_labels():
    c = cr(spec={"job_id": None}, labels={})
    p = run(c)
    assert p.status["job_id"] == CR_UID
    assert p.labels == {"roboaug.dev/job-id": CR_UID, "roboaug.dev/project-id": c["spec"]["project_id"]}
    env = {e["name"]: e.get("value") for e in p.create_job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ROBOAUG_JOB_ID"] == CR_UID


def test_unschedulable_reason_then_pending_timeout():
    c = applied(cr(), run(cr()))
    why = "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node affinity/selector."
    p = run(c, now=10, job=job(), pods=[pod(unschedulable=why)])
    assert p.delete_job is None and 40 < p.requeue_after <= 51
    sched = p.new_status["phases"][-1]
    assert sched["name"] == "scheduling" and sched["events"][-1]["message"] == why
    assert ("Warning", "Unschedulable", why) in p.events
    c = applied(c, p)
    again = run(c, now=20, job=job(), pods=[pod(unschedulable=why)])
    assert again.status == {}  # same reason is not repeated
    p = run(c, now=61.5, job=job(), pods=[pod(unschedulable=why)])
    assert p.delete_job == "aug-demo-worker"
    assert p.new_status["status"] == "failed" and p.finished == "failed"
    assert p.new_status["error"] == f"no node could run the worker within 60s: {why}"
    assert names(applied(c, p)) == ["queued", "scheduling", "failed"]


SECRET_MISSING = 'secret "roboaug-hf-token" not found'


def waiting(reason="CreateContainerConfigError", message=SECRET_MISSING, **kw):
    """A pod bound to a node whose container the kubelet cannot start."""
    return pod(node="cpu-0", waiting_reason=reason, waiting_message=message, **kw)


def test_container_that_cannot_start_is_reported_once_per_message():
    c = applied(cr(), run(cr()))
    c = applied(c, run(c, now=2, job=job(), pods=[pod(node="cpu-0", waiting_reason="ContainerCreating")]))
    assert names(c) == ["queued", "scheduling"]
    p = run(c, now=10, job=job(), pods=[waiting()])
    said = f"CreateContainerConfigError: {SECRET_MISSING}"
    ev = p.new_status["phases"][-1]["events"][-1]
    assert (ev["status"], ev["message"]) == ("container_waiting", said)
    assert ev["data"] == {"pod": "aug-demo-worker-abcde", "node": "cpu-0", "reason": "CreateContainerConfigError"}
    assert p.events == [("Warning", "ContainerWaiting", said)]
    assert p.delete_job is None and 50 < p.requeue_after <= 51  # the timeout, from pod creation at 1 s
    c = applied(c, p)
    assert run(c, now=20, job=job(), pods=[waiting()]).empty  # same words: nothing new
    other = "couldn't find key token in Secret ns1/roboaug-hf-token"
    p = run(c, now=30, job=job(), pods=[waiting(message=other)])
    assert p.events == [("Warning", "ContainerWaiting", f"CreateContainerConfigError: {other}")]
    c = applied(c, p)
    # going back to a message already reported (ErrImagePull <-> ImagePullBackOff do) adds nothing
    assert run(c, now=31, job=job(), pods=[waiting()]).empty
    evs = [e for e in c["status"]["phases"][-1]["events"] if e["status"] == "container_waiting"]
    assert len(evs) == 2 and c["status"]["status"] == "queued"


def test_container_waiting_events_are_bounded_per_pod():
    c = applied(cr(), run(cr()))
    for i in range(MAX_WAITING_EVENTS + 5):
        c = applied(c, run(c, now=2 + i, job=job(), pods=[waiting(reason="ErrImagePull", message=f"dial 10.0.0.{i}")]))
    evs = [e for e in c["status"]["phases"][-1]["events"] if e["status"] == "container_waiting"]
    assert len(evs) == MAX_WAITING_EVENTS


def test_normal_container_start_is_not_an_event_nor_a_timeout():
    c = applied(cr(), run(cr()))
    c = applied(c, run(c, job=job()))
    for reason in ("ContainerCreating", "PodInitializing", None):
        p = run(c, now=500, job=job(), pods=[pod(node="cpu-0", waiting_reason=reason)])
        assert p.events == [] and p.delete_job is None and p.finished is None
        assert p.requeue_after is None
        assert not any(e["status"] == "container_waiting" for e in p.new_status["phases"][-1]["events"])


def test_container_that_cannot_start_fails_after_the_pending_timeout():
    c = applied(cr(), run(cr()))
    c = applied(c, run(c, now=10, job=job(), pods=[waiting()]))
    p = run(c, now=61.5, job=job(), pods=[waiting()])
    assert p.delete_job == "aug-demo-worker" and p.finished == "failed" and p.retries == 0
    err = p.new_status["error"]
    assert err == f"the worker container did not start within 60s: CreateContainerConfigError: {SECRET_MISSING}"
    assert p.new_status["attempt"] == 0
    c = applied(c, p)
    assert names(c) == ["queued", "scheduling", "failed"]
    assert c["status"]["phases"][-1]["events"][0]["data"]["kubelet_reason"] == "CreateContainerConfigError"
    assert ("Warning", "Failed", err) in p.events


def test_spec_pending_timeout_applies_to_a_container_that_cannot_start():
    c = applied(cr(spec={"pending_timeout_seconds": 300}), run(cr(spec={"pending_timeout_seconds": 300})))
    bad_image = waiting(reason="ImagePullBackOff", message='Back-off pulling image "example.invalid/w:1"')
    assert run(c, now=200, job=job(), pods=[bad_image]).finished is None
    p = run(c, now=302, job=job(), pods=[bad_image])
    assert p.finished == "failed"
    assert p.new_status["error"].startswith("the worker container did not start within 300s: ImagePullBackOff: ")


def test_kubelet_message_is_masked():
    c = applied(cr(), run(cr()))
    leak = ('failed to pull image "registry.example/w:1": authorization failed: '
            'Authorization: Bearer abcdefghijklmnop1234, token=hf_AbCdEfGhIjKlMnOp')
    c = applied(c, run(c, now=10, job=job(), pods=[waiting(reason="ErrImagePull", message=leak)]))
    p = run(c, now=70, job=job(), pods=[waiting(reason="ErrImagePull", message=leak)])
    texts = [p.new_status["error"]] + [e["message"] for ph in p.new_status["phases"] for e in ph["events"]
                                       if e["message"]] + [m for _t, _r, m in p.events]
    assert any("ErrImagePull" in t for t in texts)
    for t in texts:
        assert "abcdefghijklmnop1234" not in t and "hf_AbCdEfGhIjKlMnOp" not in t, t
    assert "Bearer ***" in p.new_status["error"]


def test_summarize_pod_keeps_the_worker_containers_waiting_state():
    from roboaug.operator.observe import summarize_pod
    body = {"metadata": {"name": "p", "uid": "u", "creationTimestamp": "2025-03-01T12:00:01Z"},
            "spec": {"nodeName": "cpu-0"},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "sidecar", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "x"}}},
                {"name": "worker", "state": {"waiting": {"reason": "CreateContainerConfigError",
                                                         "message": SECRET_MISSING}}}]}}
    v = summarize_pod(body)
    assert (v.waiting_reason, v.waiting_message) == ("CreateContainerConfigError", SECRET_MISSING)
    assert v.node == "cpu-0" and v.exit_code is None
    # a lone container is the worker whatever its name (same rule as for terminated state)
    body["status"]["containerStatuses"] = [{"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}]
    assert (summarize_pod(body).waiting_reason, summarize_pod(body).waiting_message) == ("ContainerCreating", None)
    body["status"]["containerStatuses"] = [{"name": "worker", "state": {"running": {"startedAt": "t"}}}]
    assert summarize_pod(body).waiting_reason is None and summarize_pod(body).started == "t"
    # a new waiting message is a new view: the controller's unchanged-inputs shortcut sees it
    body["status"]["containerStatuses"] = [{"name": "worker", "state": {"waiting": {
        "reason": "CreateContainerConfigError", "message": "m1"}}}]
    first = summarize_pod(body)
    body["status"]["containerStatuses"][0]["state"]["waiting"]["message"] = "m2"
    assert summarize_pod(body) != first


def test_spec_pending_timeout_overrides_config():
    c = applied(cr(spec={"pending_timeout_seconds": 300}), run(cr(spec={"pending_timeout_seconds": 300})))
    assert run(c, now=200, job=job(), pods=[pod()]).delete_job is None


def test_running_pod_sets_node_facts_then_progress_then_completion():
    c = applied(cr(), run(cr()))
    c = applied(c, run(c, job=job()))
    p = run(c, now=5, job=job(), pods=[pod(phase="Running", node="cpu-0")], node_labels=CPU_NODE)
    assert p.status["current_phase"] == "downloading" and p.status["status"] == "running"
    assert (p.status["instance_type"], p.status["region"]) == ("c7i.4xlarge", "us-east-1")
    assert p.queue_wait == 5.0
    c = applied(c, p)
    c["status"]["progress"] = {"phase": "augmenting", "episodes_done": 3, "episodes_total": 10, "pod": pod().name,
                               "frames_done": 300, "frames_total": 1000, "updated_at": "2025-03-01T12:00:06Z"}
    p = run(c, now=6, job=job(), pods=[pod(phase="Running", node="cpu-0")], node_labels=CPU_NODE)
    c = applied(c, p)
    assert names(c)[-1] == "augmenting"
    assert c["status"]["phases"][-1]["events"][-1]["data"]["episodes_done"] == 3
    # nothing new observed -> nothing to write (no churn on the CR)
    assert run(c, now=7, job=job(), pods=[pod(phase="Running", node="cpu-0")], node_labels=CPU_NODE).empty
    c["status"]["progress"] = dict(c["status"]["progress"], phase="uploading",
                                   output_dataset_id="elsewhere/not-the-spec")  # a worker's word: ignored
    c = applied(c, run(c, now=8, job=job(), pods=[pod(phase="Running", node="cpu-0")], node_labels=CPU_NODE))
    p = run(c, now=9, job=job(complete=True, active=0), pods=[pod(phase="Succeeded", node="cpu-0")],
            node_labels=CPU_NODE)
    assert p.finished == "completed"
    c = applied(c, p)
    assert names(c) == ["queued", "scheduling", "downloading", "augmenting", "uploading", "completed"]
    assert c["status"]["augmented_dataset_id"] == "lerobot/pusht-augmented-7d0f5a52"  # the naming rule
    assert run(c, now=10, job=job(complete=True, active=0)).empty  # terminal: stays put


def test_completion_without_progress_uses_the_naming_rule():
    c = applied(cr(), run(cr()))
    p = run(c, job=job(complete=True, active=0), pods=[pod(phase="Succeeded", node="cpu-0")])
    c = applied(c, p)
    assert names(c) == ["queued", "scheduling", "downloading", "completed"]
    assert c["status"]["augmented_dataset_id"] == "lerobot/pusht-augmented-7d0f5a52"


def test_a_job_first_seen_after_it_finished_keeps_the_workers_times():
    # the operator created the Job at 1 and was stopped before writing `scheduling`; it wakes at
    # 40 to a finished job: `scheduling` began with the Job, so the worker's times stand as they are
    c = applied(cr(), run(cr()))
    c["status"]["progress"] = {"phase": "uploading", "pod": pod().name, "updated_at": iso(20),
                               "phases": [{"name": "downloading", "started_at": iso(3), "completed_at": iso(5)},
                                          {"name": "augmenting", "started_at": iso(5), "completed_at": iso(15)},
                                          {"name": "uploading", "started_at": iso(15), "completed_at": iso(20)}]}
    done = replace(job(complete=True, active=0), started=iso(2))
    c = applied(c, run(c, now=40, job=done, pods=[pod(phase="Succeeded", node="cpu-0")]))
    got = {p["name"]: (parse_ts(p["started_at"]), parse_ts(p["completed_at"])) for p in c["status"]["phases"]}
    assert got["scheduling"] == (at(2), at(3))
    assert [got[n] for n in ("downloading", "augmenting", "uploading")] == [(at(3), at(5)), (at(5), at(15)),
                                                                            (at(15), at(20))]
    # without startTime yet, the Job's creation (1) is the best known start
    c = applied(cr(), run(cr()))
    c = applied(c, run(c, now=40, job=job(created=1)))
    assert parse_ts(c["status"]["phases"][-1]["started_at"]) == at(1)


def test_one_failed_pod_is_a_retry_then_completes():
    c = applied(cr(), run(cr()))
    c = applied(c, run(c, job=job(), pods=[pod(phase="Running", node="cpu-0")]))
    bad = pod(name="p1", phase="Failed", node="cpu-0", exit_code=75,
              exit_message="roboaug-worker: error[75 network]: Hub answered 503")
    p = run(c, now=4, job=job(failed=1), pods=[bad, pod(name="p2", created=4)])
    assert p.retries == 1 and p.new_status["attempt"] == 1
    ev = p.new_status["phases"][-1]["events"][-1]
    assert ev["status"] == "retry" and ev["retry_attempt"] == 1
    assert "code 75 (network, retryable)" in ev["error"]
    assert any(e[1] == "Retry" for e in p.events)
    c = applied(c, p)
    assert run(c, now=5, job=job(failed=1), pods=[bad, pod(name="p2", created=4)]).retries == 0
    p = run(c, now=6, job=job(failed=1, complete=True, active=0),
            pods=[bad, pod(name="p2", created=4, phase="Succeeded", node="cpu-1")])
    c = applied(c, p)
    assert c["status"]["status"] == "completed" and c["status"]["attempt"] == 1
    assert c["status"]["phases"][-1]["events"][0]["retry_attempt"] == 1


def test_progress_of_an_earlier_attempts_pod_is_ignored():
    c = applied(cr(), run(cr()))
    c = applied(c, run(c, job=job(), pods=[pod(name="p1", phase="Running", node="cpu-0")]))
    # p1 reported "uploading", then failed; p2 (the retry) has not reported anything yet
    c["status"]["progress"] = {"phase": "uploading", "episodes_done": 9, "episodes_total": 10,
                               "pod": "p1", "updated_at": "2025-03-01T12:00:03Z"}
    bad = pod(name="p1", phase="Failed", node="cpu-0", exit_code=75, exit_message="Hub answered 503")
    p = run(c, now=4, job=job(failed=1), pods=[bad, pod(name="p2", created=4, phase="Running", node="cpu-1")])
    c = applied(c, p)
    assert c["status"]["current_phase"] == "downloading", names(c)
    assert "uploading" not in names(c) and "augmenting" not in names(c)
    # once p2 reports, its progress counts
    c["status"]["progress"] = {"phase": "augmenting", "episodes_done": 1, "episodes_total": 10,
                               "pod": "p2", "updated_at": "2025-03-01T12:00:05Z"}
    c = applied(c, run(c, now=5, job=job(failed=1), pods=[bad, pod(name="p2", created=4, phase="Running",
                                                                     node="cpu-1")]))
    assert c["status"]["current_phase"] == "augmenting"


def test_permanent_exit_code_fails_at_once_with_code_and_message():
    c = applied(cr(), run(cr()))
    bad = pod(phase="Failed", node="cpu-0", exit_code=10,
              exit_message="roboaug-worker: error[10 dataset_not_found]: lerobot/nope does not exist")
    p = run(c, job=job(failed=1, active=0, failed_condition={"reason": "PodFailurePolicy", "message": "..."}),
            pods=[bad])
    assert p.finished == "failed" and p.retries == 0
    err = p.new_status["error"]
    assert err.startswith("worker exited with code 10 (dataset_not_found, permanent): ")
    assert "lerobot/nope does not exist" in err
    assert p.new_status["attempt"] == 0
    assert p.new_status["phases"][-1]["events"][0]["data"]["exit_code"] == 10


def test_backoff_exhausted():
    c = applied(cr(), run(cr()))
    pods = [pod(name=f"p{i}", created=i, phase="Failed", node="cpu-0", exit_code=70) for i in range(3)]
    p = run(c, job=job(failed=3, active=0, failed_condition={"reason": "BackoffLimitExceeded", "message": "x"}),
            pods=pods)
    assert p.new_status["error"].endswith("(gave up after 3 attempts)")


def test_disrupted_pod_is_not_a_retry():
    c = applied(cr(), run(cr()))
    p = run(c, job=job(failed=0), pods=[pod(name="p1", phase="Failed", node="cpu-0", disrupted=True),
                                        pod(name="p2", created=3)])
    assert p.retries == 0 and p.new_status["attempt"] == 0
    assert any(e["status"] == "disrupted" for e in p.new_status["phases"][-1]["events"])


def test_cancel_deletes_the_job():
    c = applied(cr(), run(cr()))
    c = applied(c, run(c, job=job(), pods=[pod(phase="Running", node="cpu-0")]))
    c["spec"]["cancel_requested"] = True
    p = run(c, job=job(), pods=[pod(phase="Running", node="cpu-0")])
    assert p.delete_job == "aug-demo-worker" and p.finished == "cancelled"
    assert p.new_status["status"] == "cancelled" and p.new_status["error"] is None
    c = applied(c, p)
    # the delete failed last time and the Job is still there: delete again, history unchanged
    again = run(c, job=job())
    assert again.delete_job == "aug-demo-worker" and again.status == {}
    assert run(c, job=job(deleting=True)).delete_job is None


def test_cancel_before_any_job():
    p = run(cr(spec={"cancel_requested": True}))
    assert p.create_job is None and p.delete_job is None and p.new_status["status"] == "cancelled"


def test_generative_fails_with_the_gateway_message_and_no_job():
    p = run(cr(spec={"augmentation_type": "generative"}))
    assert p.create_job is None and p.finished == "failed"
    assert p.new_status["error"] == GENERATIVE_DISABLED_MESSAGE


def test_invalid_spec_names_the_field():
    p = run(cr(spec={"augment_transforms": "lighting,sparkles"}))
    assert p.create_job is None
    assert p.new_status["error"].startswith("invalid spec: spec.augment_transforms")
    assert "sparkles" in p.new_status["error"]


def test_foreign_job_is_not_adopted():
    c = applied(cr(), run(cr()))
    p = run(c, job=job(owner="someone-else"))
    assert p.finished == "failed" and "not owned by this AugmentationJob" in p.new_status["error"]
    p = run(c, job=job(owner="old-cr-uid", deleting=True))
    assert p.finished is None and p.requeue_after and p.create_job is None


def test_refused_job_creation_fails_clearly():
    p = run(cr(), create_error='Job.batch "x" is invalid: spec.template.spec.containers[0].image: Required value')
    assert p.finished == "failed" and p.new_status["error"].startswith("cannot create the worker Job: ")


def test_restart_with_existing_job_and_empty_status_adopts():
    p = run(cr(), job=job(), pods=[pod(phase="Running", node="cpu-0")], node_labels=CPU_NODE)
    assert p.create_job is None
    assert [ph["name"] for ph in p.new_status["phases"]] == ["queued", "scheduling", "downloading"]


def test_random_observation_sequences_keep_invariants():
    """Whatever order the cluster reports things in, every written status is consistent."""
    rng = random.Random(1234)
    for _trial in range(150):
        c = cr(spec={"cancel_requested": False})
        failed = 0
        for step in range(12):
            now = step + 1.0
            choice = rng.random()
            kw = {}
            if choice < 0.1:
                c["spec"]["cancel_requested"] = True
            j = job(failed=failed)
            pods = []
            r = rng.random()
            if r < 0.2:
                pods = [pod(unschedulable="0/3 nodes are available")]
            elif r < 0.5:
                pods = [pod(phase="Running", node="cpu-0")]
            elif r < 0.6:
                failed += 1
                j = job(failed=failed)
                pods = [pod(name="f", phase="Failed", node="cpu-0", exit_code=75), pod(name="n", created=2)]
            elif r < 0.7:
                j = job(failed=failed, complete=True, active=0)
            elif r < 0.75:
                j = job(failed=failed + 1, active=0, failed_condition={"reason": "PodFailurePolicy"})
                pods = [pod(phase="Failed", node="cpu-0", exit_code=12)]
            elif r < 0.85:
                pods = [pod(node="cpu-0", waiting_reason=rng.choice(["ErrImagePull", "ImagePullBackOff",
                                                                     "ContainerCreating"]),
                            waiting_message=f"pull failed {step % 3}")]
            if rng.random() < 0.3:
                c["status"]["progress"] = {"phase": rng.choice(["downloading", "augmenting", "uploading"]),
                                           "episodes_done": step, "episodes_total": 12, "frames_done": step,
                                           "frames_total": 12, "updated_at": "2025-03-01T12:00:00Z"}
            kw = dict(job=j if step else None, pods=pods if step else [], node_labels=CPU_NODE)
            plan = run(c, now=now * 7, **kw)
            c = applied(c, plan)


def test_pending_timeout_without_any_pod_says_so():
    c = applied(cr(), run(cr()))
    p = run(c, now=70, job=job(), pods=[])
    assert p.finished == "failed" and "the Job controller created no pod" in p.new_status["error"]


def test_permanent_failure_seen_before_the_job_condition_is_not_a_retry():
    c = applied(cr(), run(cr()))
    bad = pod(phase="Failed", node="cpu-0", exit_code=13, exit_message="no camera")
    p = run(c, job=job(failed=1, active=0), pods=[bad])
    assert p.finished == "failed" and p.retries == 0 and p.new_status["attempt"] == 0
    assert "code 13 (no_camera_feature, permanent)" in p.new_status["error"]


def test_failures_beyond_the_backoff_limit_are_not_retries():
    c = applied(cr(), run(cr()))
    pods = [pod(name=f"p{i}", created=i, phase="Failed", node="cpu-0", exit_code=70) for i in range(3)]
    p = run(c, job=job(failed=3, active=0), pods=pods)  # Failed condition not seen yet
    assert p.new_status["attempt"] == CFG.backoff_limit == 2


def test_failure_target_condition_counts_as_failed():
    from roboaug.operator.observe import summarize_job
    v = summarize_job({"metadata": {"name": "j", "uid": "u"}, "status": {"failed": 1, "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "m"}]}})
    assert v.failed_condition == {"reason": "BackoffLimitExceeded", "message": "m"} and v.finished


def test_instance_type_falls_back_to_the_pool_when_the_node_has_no_label():
    c = applied(cr(), run(cr()))
    p = run(c, job=job(), pods=[pod(phase="Running", node="bare-0")], node_labels={"bare-0": {}})
    assert p.new_status["instance_type"] == "c7i.4xlarge" and p.new_status.get("region") is None


def test_a_job_over_its_projects_frame_limit_fails_at_once():
    """The worker refuses it (contract.ExitCode.INVALID_SPEC, a permanent code: the Job's
    podFailurePolicy fails it) and its line, naming the policy, becomes status.error."""
    from roboaug.api.contract import ExitCode, error_line
    from roboaug.operator.jobs import pod_failure_policy

    line = error_line(ExitCode.INVALID_SPEC, "dataset_id: the job would write 1200 frames, more than the "
                                             "project's limits.max_frames_per_job (1000): 400 source frames kept "
                                             "plus 2 augmented copies")
    fail_job = pod_failure_policy()["rules"][0]
    assert fail_job["action"] == "FailJob" and int(ExitCode.INVALID_SPEC) in fail_job["onExitCodes"]["values"]
    c = applied(cr(), run(cr()))
    bad = pod(phase="Failed", node="cpu-0", exit_code=int(ExitCode.INVALID_SPEC), exit_message=line)
    p = run(c, job=job(failed=1, active=0, failed_condition={"reason": "PodFailurePolicy", "message": "..."}),
            pods=[bad])
    assert p.finished == "failed" and p.retries == 0 and p.new_status["attempt"] == 0
    err = p.new_status["error"]
    assert err.startswith("worker exited with code 15 (invalid_spec, permanent): ")
    assert "limits.max_frames_per_job (1000)" in err
