"""The worker's log (worker/log.py): every line it writes is a job-log line (roboaug.api.joblogs),
the Hub token masked in its own lines and in library records."""

from __future__ import annotations

import json
import logging
import warnings

from roboaug.api import joblogs
from roboaug.worker import log

TOKEN = "s3cr3t-token-0123456789abcdef"  # not hf_-shaped: only the exact value masks it


def test_library_records_and_warnings_become_contract_lines_with_the_token_masked(capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    log.setup()
    log.setup()  # twice: still one handler of ours
    try:
        logging.getLogger("huggingface_hub.test").warning("GET https://hub/api?token=%s failed", TOKEN)
        logging.getLogger("urllib3.connectionpool").debug("debug noise with %s", TOKEN)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn(f"deprecated, token {TOKEN}")
        log.emit("info", f"own line {TOKEN}", event="x", detail={"k": TOKEN})
    finally:
        root = logging.getLogger()
        for h in [h for h in root.handlers if isinstance(h, log._StderrHandler)]:
            root.removeHandler(h)
        logging.captureWarnings(False)
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    records = [joblogs.parse(x) for x in err.splitlines()]
    assert all(records) and len(records) == 2, err  # the urllib3 DEBUG record is kept out
    assert records[0]["level"] == "warning" and records[0]["logger"] == "huggingface_hub.test"
    assert records[0]["msg"] == "GET https://hub/api?token=*** failed"
    assert records[1]["logger"] == "py.warnings"
    own = json.loads(out)
    assert own["msg"] == "own line ***" and own["detail"] == {"k": "***"} and own["event"] == "x"


def test_setup_again_reinstalls_the_warnings_hook_a_catch_warnings_block_replaced(capsys):
    """Seen in a full CI run: a worker run in-process left capture on; inside pytest's per-test
    catch_warnings() a second setup() was a no-op and warnings bypassed the JSON lines."""
    log.setup()
    try:
        with warnings.catch_warnings(record=True) as recorded:
            log.setup()
            warnings.simplefilter("always")
            warnings.warn("late warning")
    finally:
        root = logging.getLogger()
        for h in [h for h in root.handlers if isinstance(h, log._StderrHandler)]:
            root.removeHandler(h)
        logging.captureWarnings(False)
    assert recorded == []
    lines = [joblogs.parse(x) for x in capsys.readouterr().err.splitlines()]
    assert [x["logger"] for x in lines] == ["py.warnings"] and "late warning" in lines[0]["msg"]
