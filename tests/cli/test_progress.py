"""Pure parts: the progress line, the rate, the watcher's redraw rules, config and log lines."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest

from roboaug.api.cli.watch import CLEAR_LINE, Watcher
from roboaug.api.client import config
from roboaug.api.client.logs import LogLine, parse_line, render
from roboaug.api.client.progress import ProgressView, RateMeter, eta_of, render_line
from roboaug.api.models import AugmentationStatusResponse
from tests.cli._live import final_status, progress_status

JOB = "0b5c1e8e-1f56-4c53-9a6a-0a4b3c2d1e0f"


def view(done=90, total=270, ep=1, ept=3, **kw):
    return ProgressView("augmenting", done, total, ep, ept, **kw)


def test_progress_line_names_everything():
    line = render_line(view(), rate=30.0, elapsed=9.0, width=120)
    assert line.startswith("augmenting  [")
    for part in (" 33%", "90/270 frames", "1/3 episodes", "30.0 fr/s", "ETA 0:06", "(0:09)"):
        assert part in line, line


def test_progress_line_fits_its_width():
    for width in (120, 80, 60, 40, 25):
        assert len(render_line(view(), 30.0, 9.0, width)) <= width
    assert "fr/s" not in render_line(view(), 30.0, 9.0, 40)  # the less useful fields go first
    assert render_line(ProgressView("queued"), None, 3.0, 80) == "queued      (0:03)"


def test_gateway_eta_wins_and_rate_follows_the_recent_pace():
    assert eta_of(view(eta_seconds=12.0), 1000.0) == 12.0
    meter = RateMeter(window=10)
    for t, frames in [(0, 0), (5, 10), (20, 40), (25, 140)]:
        meter.add(t, frames)
    assert meter.rate() == pytest.approx((140 - 40) / 5)  # the old slow samples fell out
    meter.add(26, 3)  # a retry started over
    assert meter.rate() is None


def _status(data) -> AugmentationStatusResponse:
    return AugmentationStatusResponse.model_validate(data)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_watcher_redraws_one_line_on_a_terminal():
    out, clock = io.StringIO(), Clock()
    w = Watcher(out, tty=True, clock=clock, width=lambda: 100)
    for done in (0, 90, 180):
        clock.t += 2
        w.update(_status(progress_status(JOB, "augmenting", done, 270, done // 90, 3)))
    w.update(_status(final_status(JOB, "completed", output="o/x")))
    w.close()
    text = out.getvalue()
    assert text.count("\r") == 4 and text.count(CLEAR_LINE) == 4 and text.count("\n") == 1
    frames = [f[: -len(CLEAR_LINE)] for f in text.strip("\n").split("\r") if f]
    assert "180/270 frames" in frames[2] and "45.0 fr/s" in frames[2]
    assert frames[-1].startswith("completed")
    assert all(len(f) <= 99 for f in frames)


def test_watcher_prints_plain_lines_on_phase_change_or_interval():
    out, clock = io.StringIO(), Clock()
    w = Watcher(out, tty=False, every=10, clock=clock)
    steps = [(0, "queued", None), (1, "augmenting", 27), (3, "augmenting", 54), (12, "augmenting", 243),
             (13, "completed", None)]
    for t, phase, done in steps:
        clock.t = t
        w.update(_status(progress_status(JOB, phase, done, 270, 1, 3) if done is not None
                         else final_status(JOB, phase) if phase == "completed"
                         else {"job_id": JOB, "status": "queued", "current_phase": "queued"}))
    w.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [l.split()[0] for l in lines] == ["queued", "augmenting", "augmenting", "completed"]
    assert "27/270 frames" in lines[1] and "243/270 frames" in lines[2]  # t=3 skipped: same phase, < 10 s


def test_log_lines_render_and_survive_non_json():
    line = parse_line(json.dumps({"ts": "T", "level": "ERROR", "msg": "upload failed", "repo": "a b",
                                  "attempt": 2, "extra": {"k": 1}}))
    assert render(line) == 'T ERROR upload failed repo="a b" attempt=2 extra={"k":1}'
    progress = parse_line(json.dumps({"ts": "T", "level": "INFO", "msg": "downloading (resolving a/b)",
                                      "message": "resolving a/b", "phase": "downloading", "warnings": [],
                                      "error": None, "phases": [{"name": "downloading", "started_at": "T" * 60}]}))
    assert render(progress) == "T INFO  downloading (resolving a/b) phase=downloading"
    assert parse_line("   ") is None
    assert parse_line("plain text") == LogLine(ts=None, level="info", msg="plain text", raw=True)


def test_config_env_wins_per_field_and_the_file_fills_the_rest(tmp_path):
    env = {"HOME": str(tmp_path)}
    path = config.save("http://gw:8080/", "rk_secret_abcdef1234", env)
    assert path == tmp_path / ".config" / "roboaug" / "config"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = config.load(env)
    assert (loaded.url, loaded.api_key, loaded.path) == ("http://gw:8080", "rk_secret_abcdef1234", path)
    assert "rk_secret" not in repr(loaded) and loaded.masked_key == "****1234"
    assert config.load({**env, "ROBOAUG_URL": "http://other"}).api_key == "rk_secret_abcdef1234"
    assert config.load({**env, "ROBOAUG_API_KEY": "k2"}).url == "http://gw:8080"
    path.write_text("not json")
    with pytest.raises(config.ConfigError, match="not a roboaug config"):
        config.load(env)
