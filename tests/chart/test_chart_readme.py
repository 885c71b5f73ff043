"""charts/roboaug/README.md's values table is generated from values.yaml's `# --` comments
(hack/chart_readme.py) and must not drift from them."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import yaml

from tests.chart.helpers import REPO

SCRIPT = REPO / "hack" / "chart_readme.py"


def _gen():
    spec = importlib.util.spec_from_file_location("chart_readme", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_chart_readme_matches_values_comments():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_changed_comment_or_default_is_drift():
    gen = _gen()
    text = gen.VALUES.read_text()
    readme = gen.README.read_text()
    assert gen.render(text) == readme
    assert gen.render(text.replace("Send webhooks at all", "Send webhooks")) != readme
    assert gen.render(text.replace("maxAttempts: 8", "maxAttempts: 9")) != readme


def test_every_documented_key_is_a_row_with_its_default():
    gen = _gen()
    text = gen.VALUES.read_text()
    values = yaml.safe_load(text)
    found = {path: doc for path, doc, _ in gen.rows(text)}
    assert {"webhooks.secretNames", "jobRbac.aggregateToEdit", "projects.rbac.aggregateToAdmin",
            "crds.install", "image.tag"} <= set(found)
    assert not [p for p, d in found.items() if not d or d.startswith("-")]  # section rules are not docs
    table = gen.table(text)
    for path in found:
        gen._lookup(values, path)  # every row names a real key
        assert f"| `{path}` |" in table
    assert '| `webhooks.maxAttempts` | `8` |' in table
