"""`roboaug submit --watch` typed into a real terminal (tmux): the progress bar is redrawn on one
line, and the session ends with the output id and the exit code. First against the gateway app
in this process (a fake operator moves the job), then against the whole local stack."""

from __future__ import annotations

import re
import uuid

import pytest

from roboaug.api.client import config
from tests.cli._live import FakeOperator
from tests.cli._tmux import Terminal, roboaug_script
from tests.gateway.gateway_helpers import ADMIN_KEY, PROJECT

BAR = re.compile(r"^augmenting\s+\[#*\.*\]\s+\d+%\s+\d+/270 frames\s+\d/3 episodes")


def _watch(terminal: Terminal, env: dict, timeout: float, *extra: str) -> tuple[int, str]:
    return terminal.run(env, [roboaug_script(), "submit", "--project-id", PROJECT, "--dataset-id", "lerobot/pusht",
                              *extra, "--watch", "--poll", "0.2"], timeout)


def test_watch_in_a_terminal_redraws_one_line_and_ends_with_the_output_id(gateway, store, tmp_path):
    cfg = tmp_path / "config"
    config.save(gateway, ADMIN_KEY, {"ROBOAUG_CONFIG": str(cfg)})
    with FakeOperator(store, "completed", steps=6, pause=0.6), Terminal() as term:
        code, screen = _watch(term, {"ROBOAUG_CONFIG": str(cfg), "TERM": "xterm"}, timeout=60)
    lines = [l for l in screen.splitlines() if l.strip()]
    assert code == 0, screen
    assert ADMIN_KEY not in "".join(term.screens)
    # While it ran: a bar with counts, rate and ETA, on the line under "submitted job".
    bars = [l for s in term.screens for l in s.splitlines() if BAR.match(l)]
    assert bars, "no progress bar seen:\n" + "\n---\n".join(term.screens[-5:])
    assert any("fr/s" in b and "ETA" in b for b in bars), bars
    # At the end: one redrawn line (no stack of bars), then the output id, then the exit code.
    submitted = next(i for i, l in enumerate(lines) if l.startswith("submitted job "))
    assert lines[submitted + 1].startswith("completed"), screen
    assert re.fullmatch(r"completed in \d+:\d\d: lerobot/pusht-augmented-0123abcd", lines[submitted + 2]), screen
    assert lines[submitted + 3] == "ROBOAUG-EXIT=0"
    assert sum(1 for l in lines if BAR.match(l)) == 0


def test_watch_in_a_terminal_exits_non_zero_when_the_job_fails(gateway, store, tmp_path):
    cfg = tmp_path / "config"
    config.save(gateway, ADMIN_KEY, {"ROBOAUG_CONFIG": str(cfg)})
    with FakeOperator(store, "failed", steps=2, pause=0.3), Terminal() as term:
        code, screen = _watch(term, {"ROBOAUG_CONFIG": str(cfg), "TERM": "xterm"}, timeout=60)
    assert code == 1 and "failed: source: repository not found" in screen, screen


@pytest.mark.e2e
@pytest.mark.slow
def test_watch_against_the_local_stack(cluster, crd, tmp_path):
    """The real thing: gateway, operator, worker (dev node agent) and the local Hub."""
    cluster.require_node_agent()
    from roboaug.devstack.stack import DevStack

    ns = f"e2e-cli-{uuid.uuid4().hex[:6]}"
    with DevStack(cluster=cluster.local, namespace=ns) as stack, Terminal() as term:
        cfg = tmp_path / "config"
        config.save(stack.gateway_url, stack.api_key, {"ROBOAUG_CONFIG": str(cfg)})
        code, screen = _watch(term, {"ROBOAUG_CONFIG": str(cfg), "TERM": "xterm"}, 600, "--augment-copies", "1")
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    assert code == 0, screen
    lines = [l for l in screen.splitlines() if l.strip()]
    assert any(re.fullmatch(r"completed in \d+:\d\d: lerobot/pusht-augmented-[0-9a-f]{8}", l) for l in lines), screen
    phases = {l.split()[0] for s in term.screens for l in s.splitlines() if l.split()}
    assert phases & {"queued", "scheduling", "downloading", "augmenting", "uploading"}, term.screens[-3:]
    assert stack.api_key not in "".join(term.screens)
