"""What the e2e modules share: a stack of their own (one namespace per module) and polling."""
from __future__ import annotations

import time
import uuid
from contextlib import contextmanager


@contextmanager
def e2e_stack(cluster, **options):
    """The dev stack (operator, gateway, preview, test Hub) in a fresh namespace on the session's
    cluster; `options` go to DevStack (e.g. operator_overrides)."""
    cluster.require_node_agent()
    from roboaug.devstack.stack import DevStack

    ns = f"e2e-{uuid.uuid4().hex[:6]}"
    with DevStack(cluster=cluster.local, namespace=ns, **options) as s:
        yield s
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def wait_for(fn, timeout: float, what: str, interval: float = 0.2):
    """fn's first truthy value, or an AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := fn()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return value
