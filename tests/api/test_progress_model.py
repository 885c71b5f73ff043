"""Progress.phases: the worker's record of its phases is bounded and ordered."""
import pytest
from pydantic import ValidationError

from roboaug.api.models import Progress

NOW = "2025-03-01T12:00:00Z"


def progress(*names):
    return {"phase": "uploading", "updated_at": NOW, "phases": [{"name": n, "started_at": NOW} for n in names]}


def test_phases_are_worker_phases_in_order_each_once():
    assert [p.name for p in Progress.model_validate(progress("downloading", "augmenting", "uploading")).phases] == [
        "downloading", "augmenting", "uploading"]
    assert Progress.model_validate(progress("augmenting")).phases[0].completed_at is None
    for bad, words in [(("augmenting", "downloading"), "in the order"),
                       (("downloading", "downloading"), "each once"),
                       (("queued",), "phases.0.name"),
                       (("downloading", "augmenting", "uploading", "uploading"), "at most 3")]:
        with pytest.raises(ValidationError, match=words):
            Progress.model_validate(progress(*bad))
