"""Drive a command in a real terminal: a private tmux server, `send-keys`, `capture-pane`."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

MARK = "ROBOAUG-EXIT="


def roboaug_script() -> str:
    """The installed console script (api/pyproject.toml [project.scripts]) beside this Python."""
    script = Path(sys.executable).parent / "roboaug"
    assert script.is_file(), f"{script} missing: reinstall the api component (`./dev setup`, or pip install -e 'api[client]')"
    return str(script)


class Terminal:
    def __init__(self, width: int = 110, height: int = 30):
        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed (apt-get install tmux)")
        self.socket = f"roboaug-test-{uuid.uuid4().hex[:8]}"
        self.width, self.height = width, height
        self.screens: list[str] = []

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], check=True,
                              capture_output=True, text=True, timeout=30).stdout

    def __enter__(self) -> "Terminal":
        self._tmux("new-session", "-d", "-s", "t", "-x", str(self.width), "-y", str(self.height), "bash --norc --noprofile")
        self._tmux("set-option", "-t", "t", "history-limit", "5000")
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t")

    def run(self, env: dict[str, str], argv: list[str], timeout: float) -> tuple[int, str]:
        """Type the command (with its environment exported first) and wait for its exit code;
        every screen seen meanwhile is kept in `screens`. Returns (exit code, final screen)."""
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        self._tmux("send-keys", "-t", "t", f"export {exports}; clear", "Enter")
        self._tmux("send-keys", "-t", "t", f"{shlex.join(argv)}; echo {MARK}$?", "Enter")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            self.screens.append(screen)
            for line in screen.splitlines():
                if line.startswith(MARK):
                    return int(line[len(MARK):]), screen
            time.sleep(0.1)
        raise AssertionError("command did not end in time; screen:\n" + self.screen())
