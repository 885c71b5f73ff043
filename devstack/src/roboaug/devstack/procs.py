"""Child processes that cannot outlive the dev stack (dev/test only).

Why: a test run that crashes or is interrupted must not leave etcd or an apiserver running on the
machine. Every child gets its own process group (so we can kill it with everything it forked) and,
on Linux, PR_SET_PDEATHSIG so the kernel kills it if our process dies without cleaning up.
An atexit hook stops whatever is still registered.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_live: set["Proc"] = set()
_lock = threading.Lock()


def set_parent_death_signal() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def kill_group(pid: int, grace: float = 5.0, popen: subprocess.Popen | None = None) -> None:
    """SIGTERM the process group led by `pid`, wait up to `grace`, then SIGKILL the group.

    Pass the leader's `popen` when we are its parent: an exited but unreaped leader is a zombie
    that still counts as a group member, so we poll it instead.
    """
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if popen is not None:
            if popen.poll() is not None:
                break
        else:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    try:  # whatever is left in the group (or the leader itself after the grace period)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Proc:
    """One long-running component with its output in `<log_dir>/<name>.log`."""

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict | None = None,
                 cwd: Path | None = None, die_with_parent: bool = True):
        self.name = name
        self.args = [str(a) for a in args]
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self._log.write(("$ " + " ".join(self.args) + "\n").encode())
        self._log.flush()
        # PDEATHSIG fires when the *thread* that forked dies: only use it from the main thread.
        pdeath = die_with_parent and sys.platform.startswith("linux") \
            and threading.current_thread() is threading.main_thread()
        self.popen = subprocess.Popen(
            self.args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=True,
            preexec_fn=set_parent_death_signal if pdeath else None)
        with _lock:
            _live.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n_bytes: int = 3000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-n_bytes:].decode(errors="replace")

    def terminate(self) -> None:
        """SIGTERM the process group without waiting (see :meth:`stop`)."""
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def stop(self, grace: float = 5.0) -> None:
        kill_group(self.popen.pid, grace, self.popen)
        try:
            self.popen.wait(timeout=grace + 5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        with _lock:
            _live.discard(self)


def stop_all() -> None:
    with _lock:
        procs = list(_live)
    for p in reversed(procs):
        p.stop(grace=2.0)


atexit.register(stop_all)
