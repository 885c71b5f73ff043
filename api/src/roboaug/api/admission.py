"""The apiserver's door of the project policy: a ValidatingAdmissionPolicy with the
AugmentationProject as its parameter, generated from `roboaug.api.policy`'s rules.

kubectl and GitOps users never meet the gateway, so the apiserver refuses what `policy.check`
refuses, with the same message, field by field (tests/api/test_admission.py runs one
table of cases through both). Two rules stay with the operator and the worker because CEL cannot
see what they need: `limits.max_spec_bytes` (the spec's size as JSON) and
`limits.max_frames_per_job` (the source's size).

Why one binding selects every project of the namespace: a binding's `paramRef` is fixed, not
chosen per object, so the policy is evaluated once per AugmentationProject of the job's
namespace and each evaluation only judges the jobs whose `project_id` is that project's name.
A job naming no project passes here; the operator decides (`jobs_without_project`).

    python -m roboaug.api.admission [--check]
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from .contract import JOB_SUFFIXES, WORKER_SERVICE_ACCOUNT
from .crd import generate
from .models import GROUP, PLURAL, VERSION, AugmentationJobCreateRequest, default_output_dataset_id
from .models.project import PROJECT_KIND

REPO_ROOT = Path(__file__).resolve().parents[4]
CHART_TEMPLATE_PATH = REPO_ROOT / "charts" / "roboaug" / "templates" / "admission-policy.yaml"
POLICY_NAME = "roboaug-project-policy"
WORKER_CHART_TEMPLATE_PATH = REPO_ROOT / "charts" / "roboaug" / "templates" / "admission-worker.yaml"
WORKER_MANIFEST_PATH = REPO_ROOT / "manifests" / "admission" / "worker-policy.yaml"
WORKER_POLICY_NAME = "roboaug-worker-own-job"
POD_NAME_CLAIM = "authentication.kubernetes.io/pod-name"
"""What the apiserver puts in `userInfo.extra` for a ServiceAccount token bound to a pod (every
token a kubelet projects): the pod's name."""

# Request fields the copy count depends on: a project may default each of them.
_COPY_FIELDS = ("augment_dataset_mode", "augment_mode", "augment_copies",
                "augment_copies_per_transform", "augment_transforms")


def _builtin(field: str) -> str:
    """The built-in default of a request field as a CEL literal."""
    value = AugmentationJobCreateRequest.model_fields[field].default
    value = getattr(value, "value", value)
    if value is None:
        return "{}"
    if isinstance(value, str):
        return "'" + value + "'"
    return str(value)


def _name_room() -> int:
    """How much of the source's name the default output keeps (`models.default_output_dataset_id`)."""
    probe = default_output_dataset_id("o/" + "n" * 96, uuid.UUID(int=0))
    return len(probe.split("/")[1].split("-augmented-")[0])


def _glob_match(subject: str, pattern: str) -> str:
    # policy.glob_regex, in CEL: the same three replacements, then a full match.
    return (f"{subject}.matches('^' + {pattern}.lowerAscii().replace('.', '\\\\.')"
            f".replace('*', '.*').replace('?', '.') + '$')")


def _repo_allowed(repo: str, patterns: str) -> str:
    # policy.repo_allowed: a pattern with `/` judges `org/name`, one without the org.
    subject = f"(p.contains('/') ? {repo} : {repo}.split('/')[0])"
    return f"{patterns}.exists(p, {_glob_match(subject, 'p')})"


def _path_allowed(path: str) -> str:
    # policy.path_allowed: no `.`/`..` segment, then a plain prefix test against canonical roots.
    return (f"!{path}.split('/').exists(s, s == '.' || s == '..') && "
            f"variables.roots.exists(r, r == '/' || {path} == r || {path}.startsWith(r + '/'))")


def _variables() -> list[dict[str, str]]:
    room = _name_room()
    v = [
        ("mine", "object.spec.project_id.lowerAscii() == params.metadata.name"),
        ("defaults", "has(params.spec.defaults) ? params.spec.defaults : {}"),
    ]
    # The effective value (policy.effective_spec): the job's, else the project's, else built-in.
    for f in _COPY_FIELDS:
        v.append((f, f"has(object.spec.{f}) ? object.spec.{f} : "
                     f"has(variables.defaults.{f}) ? variables.defaults.{f} : {_builtin(f)}"))
    v += [
        ("transforms", "variables.augment_transforms.lowerAscii().split(',').map(t, t.trim())"),
        # AugmentationJobCreateRequest.copies_plan, counted; inplace makes one version per episode.
        ("copies", "variables.augment_dataset_mode == 'inplace' ? 1 : "
                   "variables.augment_mode == 'stacked' ? variables.augment_copies : "
                   "variables.transforms.map(t, t in variables.augment_copies_per_transform ? "
                   "variables.augment_copies_per_transform[t] : variables.augment_copies).sum()"),
        # policy's shards rule judges a count the job or the project's defaults fix; 0: automatic.
        ("shards", "has(object.spec.shards) ? object.spec.shards : "
                   "has(variables.defaults.shards) ? variables.defaults.shards : 0"),
        ("file_allowed", "has(params.spec.file_access) && has(params.spec.file_access.allowed) "
                         "&& params.spec.file_access.allowed"),
        ("roots", "has(params.spec.file_access) && has(params.spec.file_access.roots) "
                  "? params.spec.file_access.roots : []"),
        ("roots_text", "variables.roots.size() > 0 ? variables.roots.join(', ') : 'none'"),
        ("src", "object.spec.dataset_id"),
        ("src_is_file", "variables.src.startsWith('file://')"),
        ("src_path", "variables.src_is_file ? variables.src.substring(7) : ''"),
        ("src_repo", "(variables.src.startsWith('hf://') ? variables.src.substring(5) : variables.src)"
                     ".split('@')[0]"),
        # models.default_output_dataset_id: job_id (the operator's: spec.job_id, else the uid).
        ("job_hex", "(has(object.spec.job_id) ? object.spec.job_id : object.metadata.uid)"
                    ".replace('-', '').lowerAscii()"),
        ("suffix", "'-augmented-' + (variables.job_hex.size() >= 8 ? variables.job_hex.substring(0, 8) "
                   ": '00000000')"),
        ("out_explicit", "has(object.spec.output_dataset_id)"),
        ("out", "variables.out_explicit ? object.spec.output_dataset_id : variables.src_is_file ? "
                "(variables.src.endsWith('/') ? variables.src.substring(0, variables.src.size() - 1) "
                ": variables.src) + variables.suffix : "
                "variables.src_repo.split('/')[0] + '/' + "
                f"(variables.src_repo.split('/')[1].size() > {room} ? "
                f"variables.src_repo.split('/')[1].substring(0, {room}) : variables.src_repo.split('/')[1]) "
                "+ variables.suffix"),
        ("out_is_file", "variables.out.startsWith('file://')"),
        ("out_path", "variables.out_is_file ? variables.out.substring(7) : ''"),
    ]
    return [{"name": n, "expression": e} for n, e in v]


def _rule(expression: str, message: str, reason: str) -> dict[str, str]:
    """One of policy.check's rules; judged only for the project the job names. `message` is the
    CEL of policy.Violation.message for the same case."""
    return {"expression": f"!variables.mine || ({expression})", "messageExpression": message,
            "reason": reason}


def _validations() -> list[dict[str, str]]:
    patterns = "params.spec.allowed_{}.join(', ')"
    rules = []
    # In policy.check's order (source, output, limits): the apiserver reports the first that fails.
    for field, is_file, path, shown in (("dataset_id", "variables.src_is_file", "variables.src_path", None),
                                        ("output_dataset_id", "variables.out_is_file", "variables.out_path", None)):
        rules.append(_rule(
            f"!{is_file} || variables.file_allowed",
            f"'{field}: file:// datasets are not allowed in this project (file_access.allowed is false)'",
            "Forbidden"))
        rules.append(_rule(
            f"!{is_file} || !variables.file_allowed || ({_path_allowed(path)})",
            f"'{field}: file://' + {path} + \" is outside the project's file_access.roots (\" "
            "+ variables.roots_text + ')'",
            "Forbidden"))
        if field == "dataset_id":
            rules.append(_rule(
                f"{is_file} || {_repo_allowed('variables.src_repo.lowerAscii()', 'params.spec.allowed_sources')}",
                "'dataset_id: ' + variables.src_repo + \" does not match the project's allowed_sources (\" + "
                + patterns.format("sources") + " + ')'",
                "Forbidden"))
        else:
            rules.append(_rule(
                f"{is_file} || {_repo_allowed('variables.out.lowerAscii()', 'params.spec.allowed_outputs')}",
                "'output_dataset_id: ' + variables.out + (variables.out_explicit ? '' : "
                "' (the default output name; set output_dataset_id to one the project allows)') + "
                "\" does not match the project's allowed_outputs (\" + " + patterns.format("outputs") + " + ')'",
                "Forbidden"))
    rules.append(_rule(
        "!has(params.spec.limits) || !has(params.spec.limits.max_copies) "
        "|| variables.copies <= params.spec.limits.max_copies",
        "(variables.augment_mode == 'independent' && variables.augment_copies_per_transform.size() > 0 "
        "? 'augment_copies_per_transform' : 'augment_copies') + ': the job would make ' + "
        "string(variables.copies) + \" augmented copies per episode, more than the project's "
        "limits.max_copies (\" + string(params.spec.limits.max_copies) + ')'",
        "Invalid"))
    rules.append(_rule(
        "!has(params.spec.limits) || !has(params.spec.limits.max_shards) "
        "|| variables.shards <= params.spec.limits.max_shards",
        "'shards: the job asks for ' + string(variables.shards) + \" shards, more than the project's "
        "limits.max_shards (\" + string(params.spec.limits.max_shards) + ')'",
        "Invalid"))
    return rules


def _admission(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def build_policy(name: str = POLICY_NAME) -> dict[str, Any]:
    return _admission("ValidatingAdmissionPolicy", name, {
        "failurePolicy": "Fail",
        "paramKind": {"apiVersion": f"{GROUP}/{VERSION}", "kind": PROJECT_KIND},
        "matchConstraints": {"resourceRules": [{
            # CREATE only: the CRD makes the spec immutable but for cancel_requested (crd.py), so
            # no UPDATE can change what is judged here, and a policy tightened after admission
            # never blocks a cancel or the operator's own writes.
            "apiGroups": [GROUP], "apiVersions": ["*"], "operations": ["CREATE"],
            "resources": [PLURAL]}]},
        "variables": _variables(),
        "validations": _validations(),
    })


def build_binding(name: str = POLICY_NAME, policy_name: str = POLICY_NAME) -> dict[str, Any]:
    return _admission("ValidatingAdmissionPolicyBinding", name, {
        "policyName": policy_name,
        "validationActions": ["Deny"],
        # Every project of the job's namespace (no namespace given: the object's own); none at
        # all is no policy to apply, not an error.
        "paramRef": {"selector": {}, "parameterNotFoundAction": "Allow"},
    })


def build_worker_policy(name: str = WORKER_POLICY_NAME) -> dict[str, Any]:
    """The status write of a worker goes only to its own AugmentationJob.

    Every worker pod of a namespace runs as `contract.WORKER_SERVICE_ACCOUNT`, whose Role may
    patch any AugmentationJob status there (operator/access.py). This policy admits such a write
    only when the token's pod is named like a pod of that CR's Jobs: `<cr-name><suffix>-<index>-
    <5 random>` (`contract.JOB_SUFFIXES`; `MAX_CR_NAME_LENGTH` keeps the name whole). The
    pattern is anchored and the suffix is followed by the index, so the pods of a CR named
    `a-worker-1` are not taken for pods of `a`. Anyone else's writes (the operator's) are not
    judged here."""
    suffixes = "|".join(suffix.lstrip("-") for suffix in JOB_SUFFIXES)
    pattern = (f"'^' + object.metadata.name.replace('.', '\\\\.') + '-({suffixes})-[0-9]+-[a-z0-9]{{5}}$'")
    return _admission("ValidatingAdmissionPolicy", name, {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": [{
            "apiGroups": [GROUP], "apiVersions": ["*"], "operations": ["UPDATE"],
            "resources": [f"{PLURAL}/status"]}]},
        "matchConditions": [{
            "name": "worker",
            "expression": (f"request.userInfo.username.startsWith('system:serviceaccount:') && "
                           f"request.userInfo.username.endsWith(':{WORKER_SERVICE_ACCOUNT}')")}],
        "validations": [{
            "expression": (f"'{POD_NAME_CLAIM}' in request.userInfo.extra && "
                           f"request.userInfo.extra['{POD_NAME_CLAIM}'].exists(p, p.matches({pattern}))"),
            "messageExpression": ("'a worker may write the status of its own AugmentationJob only: ' + "
                                  f"('{POD_NAME_CLAIM}' in request.userInfo.extra ? 'pod ' + "
                                  f"request.userInfo.extra['{POD_NAME_CLAIM}'][0] : 'a token bound to no pod') "
                                  "+ ' does not run ' + object.metadata.name"),
            "reason": "Forbidden"}],
    })


def build_worker_binding(name: str = WORKER_POLICY_NAME, policy_name: str = WORKER_POLICY_NAME) -> dict[str, Any]:
    return _admission("ValidatingAdmissionPolicyBinding", name,
                      {"policyName": policy_name, "validationActions": ["Deny"]})


_HEADER = "# Generated by `python -m roboaug.api.admission` from api/policy.py's rules. Do not edit by hand.\n"
_WORKER_HEADER = ("# Generated by `python -m roboaug.api.admission` (build_worker_policy). Do not edit by hand.\n"
                  "# Each worker pod writes the status of its own AugmentationJob only (operator/access.py).\n")


def render_manifest() -> str:
    """The policy and its binding as plain YAML, named `roboaug-project-policy`."""
    return _HEADER + yaml.safe_dump_all([build_policy(), build_binding()], sort_keys=False, width=100)


def _chart_template(header: str, docs: list[dict[str, Any]], suffix: str) -> str:
    # Cluster-scoped objects: named after the release so two releases do not fight over one name.
    name = '{{ include "roboaug.fullname" . }}-' + suffix
    body = yaml.safe_dump_all(docs, sort_keys=False, width=100)
    labels = "  labels:\n    {{- include \"roboaug.labels\" . | nindent 4 }}\n"
    body = body.replace("metadata:\n  name: NAME\n", f"metadata:\n  name: {name}\n{labels}")
    body = body.replace("policyName: NAME", f"policyName: {name}")
    assert "NAME" not in body
    return header + body


def render_chart_template() -> str:
    return _chart_template(_HEADER, [build_policy("NAME"), build_binding("NAME", "NAME")], "project-policy")


def render_worker_manifest() -> str:
    """The worker policy and its binding as plain YAML (`kubectl apply -f`), fixed names."""
    return _WORKER_HEADER + yaml.safe_dump_all([build_worker_policy(), build_worker_binding()],
                                               sort_keys=False, width=100)


def render_worker_chart_template() -> str:
    return _chart_template(_WORKER_HEADER, [build_worker_policy("NAME"), build_worker_binding("NAME", "NAME")],
                           "worker-own-job")


def outputs() -> dict[Path, str]:
    # The chart is the one installed form (manifests/roboaug.yaml is rendered from it);
    # render_manifest() is the same pair under fixed names, for tests and `kubectl apply -f -`.
    return {CHART_TEMPLATE_PATH: render_chart_template(),
            WORKER_CHART_TEMPLATE_PATH: render_worker_chart_template(),
            # installed beside the CRDs by the dev stack and the cluster tests' `crd` fixture
            WORKER_MANIFEST_PATH: render_worker_manifest()}


def main(argv: list[str] | None = None) -> int:
    return generate(outputs(), argv, __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
