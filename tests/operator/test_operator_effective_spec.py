"""The effective spec of a job the operator accepts (issue 13): each request field from the CR if it
holds it, else the project's default, else the built-in one; settled once into status, and what the
operator's own decisions and the worker Job run. The steps as decide() runs them, no cluster."""
import json

from roboaug.api.contract import SPEC_ANNOTATION
from roboaug.api.models import GENERATIVE_DISABLED_MESSAGE
from roboaug.operator import steps
from roboaug.operator.config import parse_config
from roboaug.operator.decision import Decision, Observed
from roboaug.operator.reconcile import decide

from tests.operator._operator_factories import at, cr, job

CFG = parse_config({"backoff_limit": 2, "pending_timeout_seconds": 60})


def project(**defaults):
    return {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"], "defaults": defaults}}


def accepted(c, **obs):
    """A Decision through accept and validate, as decide() runs them."""
    d = Decision.begin(Observed(cr=c, now=at(1), **obs), CFG)
    steps.accept(d)
    assert steps.validate(d) is False, d.h.status.get("error")
    return d


def worker_spec(plan):
    """The spec the worker receives: the file its pods mount from their annotation."""
    return json.loads(plan.create_job["spec"]["template"]["metadata"]["annotations"][SPEC_ANNOTATION])


def test_a_kubectl_cr_takes_the_projects_default_for_a_field_it_leaves_out():
    d = accepted(cr(), project=project(augment_copies=2))
    assert d.h.status["effective_spec"]["augment_copies"] == 2 and d.spec.augment_copies == 2
    assert d.h.status["spec_sources"]["augment_copies"] == "project"
    assert d.h.status["spec_sources"]["dataset_id"] == "request"
    assert d.h.status["spec_sources"]["augment_seed"] == "default"
    # the worker Job runs it
    plan = decide(Observed(cr=cr(), now=at(1), project=project(augment_copies=2)), CFG)
    assert worker_spec(plan)["augment_copies"] == 2
    assert plan.new_status["effective_spec"]["augment_copies"] == 2


def test_a_value_the_cr_holds_wins_over_the_project_and_no_project_means_the_built_in():
    d = accepted(cr(spec={"augment_copies": 5}), project=project(augment_copies=2))
    assert d.h.status["effective_spec"]["augment_copies"] == 5
    assert d.h.status["spec_sources"]["augment_copies"] == "request"
    plan = decide(Observed(cr=cr(spec={"augment_copies": 5}), now=at(1), project=project(augment_copies=2)), CFG)
    assert worker_spec(plan)["augment_copies"] == 5
    d = accepted(cr())
    assert d.h.status["effective_spec"]["augment_copies"] == 3
    assert d.h.status["spec_sources"]["augment_copies"] == "default"
    assert worker_spec(decide(Observed(cr=cr(), now=at(1)), CFG))["augment_copies"] == 3


def test_the_effective_spec_is_frozen_on_acceptance():
    first = decide(Observed(cr=cr(), now=at(1), project=project(augment_copies=2, augment_seed=7)), CFG)
    # the project changes after acceptance (and before the Job exists: e.g. the create failed)
    later = Observed(cr=cr(status=first.new_status), now=at(5), project=project(augment_copies=9))
    plan = decide(later, CFG)
    assert plan.new_status["effective_spec"] == first.new_status["effective_spec"]
    assert plan.new_status["spec_sources"] == first.new_status["spec_sources"]
    spec = worker_spec(plan)
    assert spec["augment_copies"] == 2 and spec["augment_seed"] == 7
    # once the Job exists the controller no longer reads the project: the status still decides
    d = accepted(cr(status=first.new_status), job=job())
    assert d.spec.augment_copies == 2 and d.spec.augment_seed == 7


def test_the_cluster_only_fields_are_read_from_the_cr_as_it_is_now():
    first = decide(Observed(cr=cr(), now=at(1), project=project(augment_copies=2)), CFG)
    d = accepted(cr(spec={"cancel_requested": True, "hub_token_secret": {"name": "mine", "key": "k"}},
                    status=first.new_status), job=job())
    assert d.spec.cancel_requested and d.spec.hub_token_secret.name == "mine" and d.spec.augment_copies == 2
    assert steps.cancel(d) is True and d.h.phase == "cancelled"


def test_the_operators_own_decisions_use_the_effective_spec():
    # routing: the project's default augmentation type is refused like a requested one
    plan = decide(Observed(cr=cr(), now=at(1), project=project(augmentation_type="generative")), CFG)
    assert plan.finished == "failed" and plan.new_status["error"] == GENERATIVE_DISABLED_MESSAGE
    # the pending timeout: the project's 30 s, not the operator's 60 s
    d = accepted(cr(), project=project(pending_timeout_seconds=30))
    assert d.spec.pending_timeout_seconds == 30
    # the policy check sees the project's defaults too
    limited = project(augment_copies=4)
    limited["spec"]["limits"] = {"max_copies": 3}
    plan = decide(Observed(cr=cr(), now=at(1), project=limited), CFG)
    assert plan.finished == "failed" and "limits.max_copies" in plan.new_status["error"]
    assert plan.create_job is None


def test_an_effective_spec_the_project_makes_invalid_fails_the_job_naming_the_field():
    plan = decide(Observed(cr=cr(spec={"augment_brightness_min": 10}), now=at(1),
                           project=project(augment_brightness_max=5)), CFG)
    assert plan.finished == "failed" and plan.create_job is None
    error = plan.new_status["error"]
    assert error.startswith("augment_brightness_max: ") and "augment_brightness_min (10" in error
    assert "project's defaults" in error
    assert "effective_spec" not in plan.new_status


def test_nothing_is_settled_while_the_project_cannot_be_read():
    d = Decision.begin(Observed(cr=cr(), now=at(1), project_error="HTTP 403 Forbidden"), CFG)
    steps.accept(d)
    assert steps.validate(d) is True and d.plan.requeue_after == steps.PROJECT_RETRY_SECONDS
    assert "effective_spec" not in d.h.status and "spec_sources" not in d.h.status
    assert d.h.phase == "queued" and d.plan.create_job is None


def test_a_gateway_cr_keeps_its_spec_and_sources_whatever_the_project_says_now():
    sources = {"augment_copies": "project", "dataset_id": "request", "pending_timeout_seconds": "default"}
    c = cr(spec={"augment_copies": 4})
    c["metadata"]["annotations"] = {"roboaug.dev/spec-sources": json.dumps(sources)}
    d = accepted(c, project=project(augment_copies=2, pending_timeout_seconds=300))
    assert d.h.status["spec_sources"] == sources
    assert d.spec.augment_copies == 4 and d.spec.pending_timeout_seconds is None
