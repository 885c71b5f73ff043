"""The job-log contract (roboaug.api.joblogs): the line format and its formatter, secrets kept
out, wrapping foreign lines, the 1 MiB tail on a line boundary, archive names; and the error
line found inside a JSON line (contract.find_error_line)."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import random

import pytest

from roboaug.api import joblogs
from roboaug.api.contract import ExitCode, error_line, find_error_line

TOKEN = "hf_abcdefghijklmnopqrstuvwxyz012345"


def test_render_writes_ts_level_msg_then_fields():
    text = joblogs.render("info", "augmenting: 1/2 episodes", ts="2025-03-01T10:00:00.000Z", phase="augmenting",
                          episode=3)
    obj = json.loads(text)
    assert list(obj)[:3] == ["ts", "level", "msg"] and "\n" not in text
    assert obj["phase"] == "augmenting" and obj["episode"] == 3
    with pytest.raises(ValueError, match="level must be one of"):
        joblogs.render("fatal", "x")


def test_now_ts_is_rfc3339_utc_with_milliseconds():
    t = dt.datetime(2025, 3, 1, 10, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert joblogs.now_ts(t) == "2025-03-01T08:00:00.123Z"


def test_secrets_are_masked_in_msg_and_fields():
    redact = joblogs.Redactor(["s3cret-value", None, ""])
    text = joblogs.render("error", f"upload with {TOKEN} failed", redact=redact,
                          detail={"header": "Bearer s3cret-value", "list": ["s3cret-value"]})
    assert TOKEN not in text and "s3cret-value" not in text
    assert json.loads(text)["detail"] == {"header": "Bearer ***", "list": ["***"]}


def test_the_logging_formatter_writes_contract_lines_with_the_traceback_in_one_field():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(joblogs.JsonLineFormatter(joblogs.Redactor([TOKEN])))
    logger = logging.getLogger("tests.joblogs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("token %s refused", TOKEN, extra={"fields": {"phase": "uploading"}})
        try:
            raise KeyError(TOKEN)
        except KeyError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    first, second = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert (first["level"], first["msg"], first["phase"], first["logger"]) == \
        ("warning", "token *** refused", "uploading", "tests.joblogs")
    assert second["level"] == "error" and "Traceback" in second["exc"] and "KeyError" in second["exc"]
    assert TOKEN not in stream.getvalue()


def test_normalize_passes_contract_lines_and_wraps_the_rest_with_the_last_time():
    own = joblogs.render("info", "hi", ts="2025-03-01T10:00:00.000Z")
    assert joblogs.normalize(own + "\n", "T0") == (own, "2025-03-01T10:00:00.000Z")
    served, ts = joblogs.normalize("Svt[info]: -------------", "2025-03-01T10:00:00.000Z")
    assert json.loads(served) == {"ts": "2025-03-01T10:00:00.000Z", "level": "info",
                                  "msg": "Svt[info]: -------------", "raw": True}
    assert ts == "2025-03-01T10:00:00.000Z"
    for not_ours in ('{"event": "progress"}', "[1, 2]", "{broken", '{"ts": 1, "msg": "x"}'):
        assert json.loads(joblogs.normalize(not_ours, "T")[0])["raw"] is True
    assert joblogs.normalize("   \n", "T") == ("", "T")


# -- the tail ------------------------------------------------------------------------------------
def _chunks(data: bytes, size: int):
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_tail_keeps_the_last_whole_lines_that_fit(chunk):
    rnd = random.Random(chunk)
    lines = [b"x" * rnd.randint(0, 300) + b"\n" for _ in range(2000)]
    data = b"".join(lines)
    limit = 50_000
    got, dropped = joblogs.tail(_chunks(data, chunk), limit)
    # the longest suffix of whole lines within the limit
    want, size = [], 0
    for line in reversed(lines):
        if size + len(line) > limit:
            break
        want.insert(0, line)
        size += len(line)
    assert got == b"".join(want) and dropped


def test_tail_edges():
    assert joblogs.tail([b"a\nb\n"], 10) == (b"a\nb\n", False)
    assert joblogs.tail([], 10) == (b"", False)
    assert joblogs.tail([b"aaaa\nbbbb\ncc"], 7) == (b"bbbb\ncc", True)  # an unterminated last line is kept
    assert joblogs.tail([b"aaaa\nbbbb\ncc"], 6) == (b"cc", True)
    assert joblogs.tail([b"short\n", b"x" * 30 + b"\n"], 10) == (b"x" * 9 + b"\n", True)  # one overlong line
    assert joblogs.tail([b"abc\ndef\n"], 4) == (b"def\n", True)         # exactly the limit


def test_tail_of_the_default_limit_is_one_mib():
    line = joblogs.render("info", "y" * 200).encode() + b"\n"
    got, dropped = joblogs.tail(iter([line] * 20_000))
    assert dropped and len(got) <= joblogs.ARCHIVE_BYTES == 1 << 20
    assert len(got) > joblogs.ARCHIVE_BYTES - len(line) and got.startswith(b"{")


# -- archive names -------------------------------------------------------------------------------
def test_archive_names_are_per_cr_uid_attempt_and_part_and_fit_a_configmap_name():
    uid = "0b5a3c0e-1111-4222-8333-444455556666"
    assert joblogs.archive_name("aug-x", uid, 0) == "aug-x-logs-0b5a3c0e-0"
    assert joblogs.archive_name("aug-x", uid, 2, 1) == "aug-x-logs-0b5a3c0e-2.1"
    assert joblogs.archive_name("aug-x", "ffff" + uid[4:], 0) != joblogs.archive_name("aug-x", uid, 0)
    long_a, long_b = "a" * 253, "a" * 252 + "b"
    for name in (joblogs.archive_name(long_a, uid, 12, 7), joblogs.archive_name(long_b, uid, 12, 7)):
        assert len(name) <= 253 and name.endswith("-logs-0b5a3c0e-12.7")
    assert joblogs.archive_name(long_a, uid, 0) != joblogs.archive_name(long_b, uid, 0)
    with pytest.raises(ValueError):
        joblogs.archive_name("x", uid, -1)


# -- the error line inside a JSON line -----------------------------------------------------------
def test_the_error_line_is_found_in_a_json_line_and_in_a_plain_one():
    text = error_line(ExitCode.DATASET_NOT_FOUND, 'dataset "lerobot/nope" not found')
    logged = joblogs.render("error", text, exit_code=10)
    found = find_error_line(logged)
    assert (found.code, found.name, found.cause) == (10, "dataset_not_found", 'dataset "lerobot/nope" not found')
    assert find_error_line(text) == found
    # a line cut at its front (the kubelet keeps the last 2 KiB) is read as plain text
    assert find_error_line(logged[5:]).code == 10
