"""Jobs whose project_id names no AugmentationProject (`jobs_without_project`), and a CR naming a
Hub-token Secret other than its project's: the steps alone, then the controller's project lookup."""
import asyncio

from roboaug.api.models import AugmentationJobSpec
from roboaug.api.models.unbound import LABEL_DEFAULT_PROJECT
from roboaug.operator import steps
from roboaug.operator.config import parse_config
from roboaug.operator.decision import Decision, Observed
from roboaug.operator.pools import select_pool
from roboaug.operator.reconcile import decide

from tests.operator._operator_factories import PROJECT, at, cr

DEFAULT = "5d1e6c1a-3f7b-4c2e-9a0d-2b8e4f6a7c90"
DEFAULT_PROJECT = {"metadata": {"name": DEFAULT, "namespace": "ns1"},
                   "spec": {"allowed_sources": ["lerobot"], "allowed_outputs": ["sandbox"],
                            "hub_token_secret": {"name": "sandbox-hf", "key": "token"},
                            "limits": {"max_copies": 3, "max_running_jobs": 2}}}


def config(action, default=None):
    unbound = {"action": action} | ({"default_project": default} if default else {})
    return parse_config({"jobs_without_project": unbound})


REFUSE, ALLOW, DEFAULTS = config("refuse"), config("allow"), config("default", DEFAULT)


def run_until_slot(c=None, cfg=REFUSE, **obs):
    """accept, validate, route as decide() runs them; returns (Decision, the step that ended it)."""
    d = Decision.begin(Observed(cr=c or cr(), now=at(1), **obs), cfg)
    for step in (steps.accept, steps.validate, steps.route):
        if step(d):
            return d, step.__name__
    return d, None


def test_refuse_fails_the_job_naming_project_id_namespace_and_setting():
    d, ended = run_until_slot(cfg=REFUSE)
    assert ended == "validate" and d.h.phase == "failed"
    error = d.h.status["error"]
    assert f"no AugmentationProject {PROJECT} exists in namespace ns1" in error
    assert "jobs_without_project.action: refuse" in error and "projects.jobsWithoutProject" in error
    assert d.plan.create_job is None


def test_allow_runs_without_a_policy_and_a_project_passes_under_refuse():
    d, ended = run_until_slot(cr(spec={"output_dataset_id": "anyone/out"}), cfg=ALLOW)
    assert ended is None and d.project is None and d.h.phase == "queued"
    own = {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"]}}
    d, ended = run_until_slot(cfg=REFUSE, project=own)
    assert ended is None and d.project is not None and d.h.phase == "queued"


def test_default_runs_under_the_default_project_and_says_so_once():
    c = cr(spec={"output_dataset_id": "sandbox/out"})
    d, ended = run_until_slot(c, cfg=DEFAULTS, project=DEFAULT_PROJECT, project_default=DEFAULT)
    assert ended is None and d.project.limits.max_running_jobs == 2
    assert d.plan.labels[LABEL_DEFAULT_PROJECT] == DEFAULT
    [ev] = [e for e in d.h.current["events"] if e["status"] == "default_project"]
    assert f"running under the default project {DEFAULT}" in ev["message"] and PROJECT in ev["message"]
    assert ev["data"] == {"project_id": PROJECT, "default_project": DEFAULT}
    assert ("Normal", "DefaultProject", ev["message"]) in d.plan.events
    # the Job mounts the default project's token
    assert steps.project_slot(d) is False and steps.ensure_job(d) is True
    env = {e["name"]: e for e in d.plan.create_job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "sandbox-hf", "key": "token"}
    # a later decision (label written, event recorded) adds neither again
    c2 = cr(spec={"output_dataset_id": "sandbox/out"}, status=d.h.status,
            labels={**c["metadata"]["labels"], LABEL_DEFAULT_PROJECT: DEFAULT})
    d2, _ = run_until_slot(c2, cfg=DEFAULTS, project=DEFAULT_PROJECT, project_default=DEFAULT)
    assert LABEL_DEFAULT_PROJECT not in d2.plan.labels and d2.plan.events == []


def test_default_applies_the_default_projects_policy():
    d, ended = run_until_slot(cr(spec={"output_dataset_id": "acme/leak"}), cfg=DEFAULTS,
                              project=DEFAULT_PROJECT, project_default=DEFAULT)
    assert ended == "validate" and "allowed_outputs" in d.h.status["error"]


def test_default_holds_the_job_queued_while_the_default_project_is_missing():
    d, ended = run_until_slot(cfg=DEFAULTS, project=None, project_default=DEFAULT)
    assert ended == "validate" and d.h.phase == "queued" and d.h.status.get("error") is None
    assert d.plan.requeue_after == steps.PROJECT_RETRY_SECONDS and d.plan.create_job is None
    [ev] = [e for e in d.h.current["events"] if e["status"] == "waiting_for_project"]
    assert f"default project {DEFAULT}" in ev["message"] and "does not exist" in ev["message"]
    assert d.plan.events[0][:2] == ("Warning", "DefaultProjectMissing")
    again, _ = run_until_slot(cr(status=d.h.status), cfg=DEFAULTS, project=None, project_default=DEFAULT)
    assert again.plan.events == [] and again.plan.requeue_after == steps.PROJECT_RETRY_SECONDS


def test_a_job_whose_own_project_appeared_loses_the_default_label():
    c = cr(labels={"roboaug.dev/job-id": "x", LABEL_DEFAULT_PROJECT: DEFAULT})
    d, ended = run_until_slot(c, cfg=DEFAULTS, project={"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"]}})
    assert ended is None and d.plan.labels[LABEL_DEFAULT_PROJECT] is None


def test_a_cr_naming_another_secret_than_its_projects_is_refused():
    project = {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"],
                        "hub_token_secret": {"name": "team-b-hf", "key": "token"}}}
    d, ended = run_until_slot(cr(spec={"hub_token_secret": {"name": "team-a-hf", "key": "token"}}),
                              cfg=ALLOW, project=project)
    assert ended == "validate" and d.h.phase == "failed"
    assert "spec.hub_token_secret: names Secret team-a-hf" in d.h.status["error"]
    assert "team-b-hf" in d.h.status["error"]
    # the project's own Secret, or none: the job goes on
    for spec in ({"hub_token_secret": {"name": "team-b-hf", "key": "token"}}, {}):
        d, ended = run_until_slot(cr(spec=spec), cfg=ALLOW, project=project)
        assert ended is None, d.h.status.get("error")
    # a project without a token says nothing about the CR's
    d, ended = run_until_slot(cr(spec={"hub_token_secret": {"name": "team-a-hf", "key": "token"}}), cfg=ALLOW,
                              project={"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"]}})
    assert ended is None


# -- the controller reads the default project in place of the missing one -------------------------
class ProjectsKube:
    def __init__(self, projects):
        self.projects, self.reads = projects, []

    def get_project(self, namespace, name):
        self.reads.append((namespace, name))
        return self.projects.get(name)


def lookup(cfg, projects, c=None):
    from roboaug.operator.controller import Controller
    from roboaug.operator.observe import summarize_cr

    kube = ProjectsKube(projects)
    ctl = Controller(cfg, kube)
    obs = Observed(cr=c or cr(), now=at(1))
    asyncio.run(ctl._project(obs))
    return obs, kube.reads


def test_controller_reads_the_default_project_only_when_the_job_has_none_and_the_action_is_default():
    obs, reads = lookup(DEFAULTS, {DEFAULT: DEFAULT_PROJECT})
    assert reads == [("ns1", PROJECT), ("ns1", DEFAULT)]
    assert obs.project is DEFAULT_PROJECT and obs.project_default == DEFAULT
    own = {"spec": {"allowed_sources": ["*"], "allowed_outputs": ["*"]}}
    obs, reads = lookup(DEFAULTS, {DEFAULT: DEFAULT_PROJECT, PROJECT: own})
    assert reads == [("ns1", PROJECT)] and obs.project is own and obs.project_default is None
    for cfg in (REFUSE, ALLOW):
        obs, reads = lookup(cfg, {DEFAULT: DEFAULT_PROJECT})
        assert reads == [("ns1", PROJECT)] and obs.project is None and obs.project_default is None
    obs, reads = lookup(DEFAULTS, {})  # the default project is missing too
    assert obs.project is None and obs.project_default == DEFAULT


def test_decide_under_default_counts_against_the_default_projects_limit():
    # Two jobs already run under the default project (limit 2): the third waits, whatever its project_id.
    obs = Observed(cr=cr(spec={"output_dataset_id": "sandbox/out"}), now=at(1), project=DEFAULT_PROJECT,
                   project_default=DEFAULT, project_running=2)
    plan = decide(obs, DEFAULTS)
    assert plan.create_job is None and plan.waits_for_slot


def test_jobs_labelled_with_the_default_project_share_its_running_limit():
    # Jobs of two different unbound project ids run under DEFAULT: a third, of yet another
    # project id, counts both (a fresh project id does not buy a fresh limit); its own id does not.
    from roboaug.operator.controller import Controller
    from roboaug.operator.observe import summarize_cr

    from tests.operator._operator_factories import iso, job

    ctl = Controller(DEFAULTS, ProjectsKube({}))
    ctl.crs, ctl.jobs = {}, {}
    for i, pid in enumerate(("11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222")):
        name = f"aug-{i}"
        c = cr(name=name, spec={"project_id": pid},
               labels={"roboaug.dev/project-id": pid, LABEL_DEFAULT_PROJECT: DEFAULT})
        c["metadata"].update(uid=f"u-{name}", creationTimestamp=iso(i))
        ctl.crs[("ns1", name)] = [summarize_cr(c)]
        ctl.jobs[("ns1", name)] = [job(name=f"{name}-worker", owner=f"u-{name}")]
    me = cr(name="aug-new", spec={"project_id": "33333333-3333-4333-8333-333333333333"})
    me["metadata"]["creationTimestamp"] = iso(10)
    ctl.crs[("ns1", "aug-new")] = [summarize_cr(me)]
    assert ctl._project_load(me, DEFAULT) == (2, 0)
    assert ctl._project_load(me) == (0, 0)
