"""The README's request tables are generated from the request model and the transform registry;
the committed README must match the generator."""

from __future__ import annotations

import pytest

from roboaug.api.models import RANGE_PAIRS, AugmentationJobCreateRequest
from roboaug.worker.transforms import REGISTRY, docs


def test_committed_readme_table_matches_the_generator():
    current = docs.README.read_text()
    assert docs.render_readme(current) == current, (
        "README.md's request table is stale: regenerate with `python -m roboaug.worker.transforms.docs`")


def test_every_request_field_is_in_the_table():
    table = docs.request_table()
    paired = {f for p in RANGE_PAIRS for f in (p.min_field, p.max_field)}
    for name in AugmentationJobCreateRequest.model_fields:
        if name in paired:
            continue
        shown = f"`{name}`" in table or (name.startswith(docs.GROUPED_PREFIX)
                                         and name.removeprefix(docs.GROUPED_PREFIX) in table)
        assert shown, name
    for pair in RANGE_PAIRS:
        row = next(line for line in table.splitlines() if f"`{pair.min_field.removesuffix('_min')}_min/max`" in line)
        assert row.endswith(f", {pair.span} |"), row


def test_transforms_appear_in_registry_order_with_their_kinds():
    table = docs.request_table()
    positions = [table.index(f"**{t.name}**") for t in REGISTRY]
    assert positions == sorted(positions)
    assert "`read`: std sigma from the gaussian sigma range" in table


def test_defaults_come_from_the_model(monkeypatch):
    field = AugmentationJobCreateRequest.model_fields["augment_brightness_min"]
    monkeypatch.setattr(field, "default", -20)
    assert "| `augment_brightness_min/max` | -20 / 15 |" in docs.request_table()


def test_render_refuses_a_readme_without_markers():
    with pytest.raises(ValueError, match="markers"):
        docs.render_readme("# no table here\n")


def test_check_mode_reports_a_stale_readme(tmp_path, monkeypatch):
    stale = tmp_path / "README.md"
    stale.write_text(f"intro\n{docs.BEGIN}\n| old |\n{docs.END}\nrest\n")
    monkeypatch.setattr(docs, "README", stale)
    monkeypatch.setattr(docs, "REPO_ROOT", tmp_path)
    assert docs.main(["--check"]) == 1
    assert docs.main([]) == 0 and docs.main(["--check"]) == 0
    text = stale.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{docs.END}\nrest\n") and "| old |" not in text
