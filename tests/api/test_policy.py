"""roboaug.api.policy: the effective spec (request > project > built-in) and the project's rules."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from roboaug.api import policy
from roboaug.api.models import AugmentationJobCreateRequest
from roboaug.api.models.project import AugmentationProjectSpec, SpecSource

PROJECT_ID = "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0"
JOB = uuid.UUID("8bfd8abc-0000-4000-8000-000000000000")


def request(**fields) -> AugmentationJobCreateRequest:
    return AugmentationJobCreateRequest.model_validate({"project_id": PROJECT_ID, "dataset_id": "team-b/src", **fields})


def project(**fields) -> AugmentationProjectSpec:
    return AugmentationProjectSpec.model_validate(
        {"allowed_sources": ["team-b"], "allowed_outputs": ["team-b/*-augmented-*", "team-b/out"], **fields})


# -- effective_spec ---------------------------------------------------------------------------
def test_request_wins_over_project_which_wins_over_builtin():
    p = project(defaults={"augment_copies": 2, "output_visibility": "public", "augment_seed": 7})
    spec, sources = policy.effective_spec(request(augment_seed=9), p)
    assert (spec.augment_seed, sources["augment_seed"]) == (9, SpecSource.request)
    assert (spec.augment_copies, sources["augment_copies"]) == (2, SpecSource.project)
    assert (spec.output_visibility, sources["output_visibility"]) == ("public", SpecSource.project)
    assert (spec.augment_mode, sources["augment_mode"]) == ("stacked", SpecSource.default)
    assert sources["project_id"] == sources["dataset_id"] == SpecSource.request
    assert set(sources) == set(AugmentationJobCreateRequest.model_fields)


def test_request_spelling_out_the_builtin_default_still_counts_as_the_request():
    spec, sources = policy.effective_spec(request(augment_copies=3), project(defaults={"augment_copies": 1}))
    assert (spec.augment_copies, sources["augment_copies"]) == (3, SpecSource.request)


def test_without_a_project_every_unset_field_is_the_builtin_default():
    spec, sources = policy.effective_spec(request(), None)
    assert spec == request()
    assert {n for n, s in sources.items() if s != SpecSource.default} == {"project_id", "dataset_id"}


def test_project_default_that_clashes_with_the_request_names_the_field():
    p = project(defaults={"augment_brightness_min": 10})
    with pytest.raises(policy.EffectiveSpecInvalid) as e:
        policy.effective_spec(request(augment_brightness_max=5), p)
    assert e.value.field == "augment_brightness_max"
    assert "augment_brightness_min" in str(e.value) and "project's defaults" in str(e.value)


def test_project_transforms_default_is_normalised_like_a_request():
    spec, _ = policy.effective_spec(request(), project(defaults={"augment_transforms": " Noise , BLUR"}))
    assert spec.augment_transforms == "noise,blur"


def test_project_cannot_default_the_source_or_the_output():
    for field in ("dataset_id", "output_dataset_id", "project_id"):
        with pytest.raises(ValidationError, match=field):
            project(defaults={field: "team-b/x"})


def test_project_defaults_must_form_a_valid_request_on_their_own():
    with pytest.raises(ValidationError, match="defaults.augment_brightness_max"):
        project(defaults={"augment_brightness_min": 20})  # above the built-in max of 15


# -- check: repos and paths -------------------------------------------------------------------
def kinds(violations):
    return [(v.field, v.policy, v.kind, v.http_status) for v in violations]


def test_allowed_job_has_no_violations():
    assert policy.check(request(output_dataset_id="team-b/out"), project(), JOB) == []
    assert policy.check(request(), project(), JOB) == []  # default output team-b/src-augmented-8bfd8abc


def test_output_in_another_org_is_forbidden_naming_field_and_policy():
    found = policy.check(request(output_dataset_id="acme/leak"), project(), JOB)
    assert kinds(found) == [("output_dataset_id", "allowed_outputs", "forbidden", 403)]
    assert "acme/leak" in found[0].message and "allowed_outputs" in found[0].message


def test_default_output_name_is_checked_too():
    # A source the project may read but whose org it may not write: the default output lands there.
    p = project(allowed_sources=["*"])
    found = policy.check(request(dataset_id="lerobot/pusht"), p, JOB)
    assert kinds(found) == [("output_dataset_id", "allowed_outputs", "forbidden", 403)]
    assert "lerobot/pusht-augmented-8bfd8abc" in found[0].message and "default output name" in found[0].message


def test_source_outside_patterns_is_forbidden():
    found = policy.check(request(dataset_id="hf://acme/private@main", output_dataset_id="team-b/out"), project(), JOB)
    assert kinds(found) == [("dataset_id", "allowed_sources", "forbidden", 403)]


@pytest.mark.parametrize("repo,patterns,allowed", [
    ("team-b/x", ["team-b"], True),
    ("Team-B/x", ["team-b"], True),          # Hub ids are case-insensitive
    ("team-bad/x", ["team-b"], False),       # an org is not a prefix
    ("team-b/robot-1", ["team-b/robot-*"], True),
    ("team-b/other", ["team-b/robot-*"], False),
    ("anyone/x", ["*"], True),
    ("acme/x", ["team-*"], False),
])
def test_repo_patterns(repo, patterns, allowed):
    assert policy.repo_allowed(repo, patterns) is allowed


def test_file_urls_forbidden_unless_allowed_and_under_a_root():
    body = request(dataset_id="file:///data/team-b/src", output_dataset_id="file:///data/team-b/out")
    assert kinds(policy.check(body, project(), JOB)) == [
        ("dataset_id", "file_access.allowed", "forbidden", 403),
        ("output_dataset_id", "file_access.allowed", "forbidden", 403)]
    rooted = project(file_access={"allowed": True, "roots": ["/data/team-b"]})
    assert policy.check(body, rooted, JOB) == []
    escape = request(dataset_id="file:///data/team-b/../team-a/src", output_dataset_id="file:///data/team-b/o")
    assert kinds(policy.check(escape, rooted, JOB)) == [("dataset_id", "file_access.roots", "forbidden", 403)]
    sibling = request(dataset_id="file:///data/team-bx/src", output_dataset_id="file:///data/team-b/o")
    assert kinds(policy.check(sibling, rooted, JOB)) == [("dataset_id", "file_access.roots", "forbidden", 403)]


# -- check: limits ----------------------------------------------------------------------------
def test_max_copies_counts_the_copies_the_job_would_make():
    p = project(limits={"max_copies": 4})
    assert policy.check(request(augment_copies=4), p, JOB) == []
    assert kinds(policy.check(request(augment_copies=5), p, JOB)) == [
        ("augment_copies", "limits.max_copies", "limit", 422)]
    independent = request(augment_transforms="lighting,noise", augment_mode="independent",
                          augment_copies_per_transform={"lighting": 2, "noise": 3})  # 5 copies in all
    assert kinds(policy.check(independent, p, JOB)) == [
        ("augment_copies_per_transform", "limits.max_copies", "limit", 422)]


def test_max_shards_refuses_a_count_the_request_or_the_project_fixes_above_it():
    p = project(limits={"max_shards": 4})
    assert policy.check(request(shards=4), p, JOB) == []
    assert policy.check(request(), p, JOB) == []  # automatic: capped by the worker, not refused
    [v] = policy.check(request(shards=5), p, JOB)
    assert (v.field, v.policy, v.kind, v.http_status) == ("shards", "limits.max_shards", "limit", 422)
    assert v.message == "shards: the job asks for 5 shards, more than the project's limits.max_shards (4)"
    defaulted = project(limits={"max_shards": 4}, defaults={"shards": 8})
    effective, _ = policy.effective_spec(request(), defaulted)
    assert kinds(policy.check(effective, defaulted, JOB)) == [("shards", "limits.max_shards", "limit", 422)]


def test_max_spec_bytes():
    assert policy.check(request(), project(limits={"max_spec_bytes": 4096}), JOB) == []
    found = policy.check(request(cosmos_prompt="x" * 4000), project(limits={"max_spec_bytes": 4096}), JOB)
    assert kinds(found) == [("spec", "limits.max_spec_bytes", "limit", 422)]


def test_max_frames():
    limit = project(limits={"max_frames_per_job": 1000}).limits.max_frames_per_job
    assert policy.check_frames(1000, limit) is None
    v = policy.check_frames(1001, limit)
    assert (v.field, v.policy, v.kind, v.http_status) == ("dataset_id", "limits.max_frames_per_job", "limit", 422)
    assert "1001 frames" in v.message and "limits.max_frames_per_job (1000)" in v.message
    assert policy.check_frames(10**9, project().limits.max_frames_per_job) is None


@pytest.mark.parametrize("fields, written", [
    ({"augment_copies": 2}, 300),  # copy mode: the originals plus two augmented copies
    ({"augment_copies": 2, "augment_dataset_mode": "inplace"}, 100),  # each frame replaced
    ({"augment_transforms": "lighting,noise", "augment_mode": "independent",
      "augment_copies_per_transform": {"lighting": 3, "noise": 2}}, 600),
])
def test_frames_written_is_the_output_datasets_total(fields, written):
    assert policy.frames_written(100, request(**fields)) == written


# -- the pattern grammar the apiserver's CEL shares (roboaug.api.admission) --------------------
@pytest.mark.parametrize("repo,pattern,allowed", [
    ("team-a/robot-1.v2", "team-?/robot-*.v2", True),
    ("team-ab/robot-1.v2", "team-?/robot-*.v2", False),   # `?` is one character
    ("team-a/robot-1xv2", "team-?/robot-*.v2", False),    # `.` is itself, not any character
    ("acme/x", "ACME", True),
])
def test_glob_wildcards_are_star_and_question_mark_only(repo, pattern, allowed):
    assert policy.repo_allowed(repo, [pattern]) is allowed


@pytest.mark.parametrize("pattern", ["team-[ab]", "team-[!a]/x", "a/b/c", "a b"])
def test_patterns_beyond_the_shared_grammar_are_refused_naming_the_field(pattern):
    with pytest.raises(ValidationError, match="allowed_outputs"):
        project(allowed_outputs=[pattern])


@pytest.mark.parametrize("name", ["Team_A", "-team", "team-", "team.a", "a" * 64, ""])
def test_a_kueue_queue_that_is_no_dns_label_is_refused_naming_the_field(name):
    with pytest.raises(ValidationError, match="kueue_queue"):
        project(kueue_queue=name)
    assert project(kueue_queue="team-a").kueue_queue == "team-a" and project().kueue_queue is None


def test_the_project_crd_checks_the_kueue_queue_name_too():
    # the same rule in the schema, so the apiserver refuses what the operator would
    import re

    from roboaug.api import crd
    from roboaug.api.models.project import QUEUE_NAME_PATTERN
    field = crd.project_spec_schema()["properties"]["kueue_queue"]
    assert field["pattern"] == QUEUE_NAME_PATTERN and field["maxLength"] == 63 and field["type"] == "string"
    assert re.match(field["pattern"], "team-a") and not re.match(field["pattern"], "Team_A")


@pytest.mark.parametrize("root", ["/data/", "//data", "/data/./x", "/data/../x", "data"])
def test_file_roots_must_be_written_canonically(root):
    with pytest.raises(ValidationError, match="file_access.roots"):
        project(file_access={"allowed": True, "roots": [root]})


def test_paths_that_need_resolving_are_refused_not_resolved():
    roots = ["/data/team-b"]
    assert policy.path_allowed("/data/team-b/src", roots) and policy.path_allowed("/data/team-b", roots)
    assert not policy.path_allowed("/data/team-b/./src", roots)
    assert not policy.path_allowed("/data/team-b/x/../src", roots)   # would resolve inside: still refused
    assert policy.path_allowed("/anything", ["/"])
