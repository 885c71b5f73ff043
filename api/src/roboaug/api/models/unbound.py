"""Jobs whose `project_id` names no AugmentationProject ("unbound" jobs): one setting, every door.

The operator reads it from its config (`jobs_without_project`), the gateway from its environment
(`ROBOAUG_GATEWAY_JOBS_WITHOUT_PROJECT`, `ROBOAUG_GATEWAY_DEFAULT_PROJECT`); the chart sets both
from the one value `projects.jobsWithoutProject`. The actions:

* `refuse`: the job is refused (gateway 403, operator `failed`), naming project_id and the setting;
* `default`: the job runs under `default_project` (an AugmentationProject in the job's namespace,
  named by that UUID): its policy, defaults, Hub token, limits and TTL, as if it were the job's own;
* `allow`: the job runs with the built-in defaults and no policy (the behaviour before projects).

The model's default is `allow`, so a config or environment that does not mention the setting
keeps that behaviour; the chart's default is `refuse`.
"""

from __future__ import annotations

import uuid
from enum import Enum
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from . import GROUP

LABEL_DEFAULT_PROJECT = f"{GROUP}/default-project"
"""On an AugmentationJob whose project has no AugmentationProject and that runs under the default
project: that project's UUID. Set by the gateway at creation and by the operator; the operator
counts `limits.max_running_jobs` per label (else per project_id), so jobs cannot escape the
default project's limit by naming fresh project ids."""

SETTING = "jobs_without_project"
CHART_VALUE = "projects.jobsWithoutProject"


class UnboundAction(str, Enum):
    refuse = "refuse"
    default = "default"
    allow = "allow"


class JobsWithoutProject(BaseModel):
    """What happens to a job whose project_id names no AugmentationProject in its namespace."""

    model_config = ConfigDict(extra="forbid")
    action: UnboundAction = Field(
        UnboundAction.allow,
        description="refuse | default (run under default_project) | allow (built-in defaults, no policy).")
    default_project: Optional[uuid.UUID] = Field(
        None, description="With action `default`: the UUID of the AugmentationProject such jobs run under.")

    @model_validator(mode="after")
    def _default_needs_a_project(self) -> "JobsWithoutProject":
        if self.action is UnboundAction.default and self.default_project is None:
            raise ValueError("default_project: action `default` needs the UUID of the project to run under")
        if self.action is not UnboundAction.default and self.default_project is not None:
            raise ValueError("default_project: only used with action `default` "
                             f"(action is `{self.action.value}`); remove it or set action: default")
        return self

    @property
    def default_name(self) -> Optional[str]:
        """The default project's object name (its lowercase UUID), with action `default`."""
        return str(self.default_project).lower() if self.default_project else None

    def refusal(self, project_id: object, namespace: str) -> str:
        return (f"project_id: no AugmentationProject {str(project_id).lower()} exists in namespace {namespace}, "
                f"and jobs without one are refused ({SETTING}.action: refuse; chart value {CHART_VALUE})")

    def missing_default(self, project_id: object, namespace: str) -> str:
        return (f"project_id: no AugmentationProject {str(project_id).lower()} exists in namespace {namespace}, "
                f"and the default project {self.default_name} that such jobs run under ({SETTING}.default_project; "
                f"chart value {CHART_VALUE}.defaultProject) does not exist there either")

    def running_under(self, project_id: object, namespace: str) -> str:
        return (f"project {str(project_id).lower()} has no AugmentationProject in namespace {namespace}; "
                f"running under the default project {self.default_name} ({SETTING}.action: default)")
