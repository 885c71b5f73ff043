"""The `roboaug` command: argument parsing and one function per subcommand, on the client."""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import sys
import time
from enum import IntEnum
from pathlib import Path
from typing import Any, Optional, Sequence, TextIO

import httpx
from pydantic import BaseModel, ValidationError

from roboaug.api.client import config as _config
from roboaug.api.client.client import Client, WaitTimeout
from roboaug.api.client.errors import ApiError, items_line
from roboaug.api.client.logs import render
from roboaug.api.client.progress import duration
from roboaug.api.models import JobStatus
from roboaug.api.models.preview import AugmentationPreviewRequest

from . import flags
from .render import jobs_table, status_text
from .watch import Watcher


class Exit(IntEnum):
    """Exit codes (README, CLI section)."""

    ok = 0           # done; a watched/waited job completed
    failed = 1       # the job failed
    usage = 2        # bad arguments or request (checked before sending)
    cancelled = 3    # the job was cancelled
    timeout = 4      # wait/--watch gave up (--timeout) while the job went on
    refused = 5      # the gateway refused the request (4xx: validation, auth, not found)
    unavailable = 6  # the gateway could not be reached or failed (5xx)
    interrupted = 130  # Ctrl-C while watching: the job goes on


FINAL_EXIT = {JobStatus.completed.value: Exit.ok, JobStatus.failed.value: Exit.failed,
              JobStatus.cancelled.value: Exit.cancelled}


class Context:
    def __init__(self, args: argparse.Namespace, stdout: TextIO, stderr: TextIO, env, transport, stdin):
        self.args, self.stdout, self.stderr, self.env, self.transport, self.stdin = (
            args, stdout, stderr, env, transport, stdin)
        self.json = args.output == "json"

    def client(self) -> Client:
        cfg = _config.load(self.env)
        url = self.args.url or cfg.url
        if not url:
            raise _config.ConfigError(f"no gateway URL: set {_config.ENV_URL}, pass --url, or run `roboaug login` "
                                      f"(writes {_config.config_path(self.env)})")
        if not cfg.api_key:
            raise _config.ConfigError(f"no API key: set {_config.ENV_API_KEY} or run `roboaug login`")
        return Client(url, cfg.api_key, timeout=self.args.http_timeout, transport=self.transport)

    def emit(self, data: Any) -> None:
        if isinstance(data, BaseModel):
            text = data.model_dump_json(indent=2)
        else:
            text = json.dumps(data, indent=2, default=str)
        print(text, file=self.stdout, flush=True)

    def say(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.stderr, flush=True)

    def tty(self) -> bool:
        isatty = getattr(self.stderr, "isatty", None)
        return bool(isatty and isatty()) and self.env.get("TERM") != "dumb"


# -- commands ---------------------------------------------------------------------------------------
def cmd_login(ctx: Context) -> int:
    args = ctx.args
    cfg = _config.load({k: v for k, v in ctx.env.items() if k not in (_config.ENV_URL, _config.ENV_API_KEY)})
    url = args.url or cfg.url
    if not url:
        raise _config.ConfigError("login: --url: the gateway URL is required the first time")
    if args.api_key_stdin:
        key = ctx.stdin.readline().strip()
    else:
        key = getpass.getpass("API key (input hidden): ", stream=ctx.stderr).strip()
    if not key:
        raise _config.ConfigError("login: no API key given")
    if not args.no_verify:
        with Client(url, key, timeout=args.http_timeout, transport=ctx.transport) as client:
            next(client.iter_jobs(), None)  # 401 for a wrong key, before anything is saved
    path = _config.save(url, key, ctx.env)
    if ctx.json:
        ctx.emit({"url": url.rstrip("/"), "config": str(path), "api_key": _config.masked(key)})
    else:
        ctx.say(f"saved {url.rstrip('/')} and API key {_config.masked(key)} to {path} (mode 0600)")
    return Exit.ok


def cmd_submit(ctx: Context) -> int:
    request = flags.request_from(ctx.args, stdin=ctx.stdin)
    with ctx.client() as client:
        created = client.submit(request, idempotency_key=ctx.args.idempotency_key)
        if not ctx.args.watch:
            if ctx.json:
                ctx.emit(created)
            else:
                ctx.say(f"submitted job {created.job_id} ({JobStatus(created.status).value}): {created.message}")
            return Exit.ok
        if not ctx.json:
            ctx.say(f"submitted job {created.job_id} ({JobStatus(created.status).value}): {created.message}")
        return follow(ctx, client, str(created.job_id))


def follow(ctx: Context, client: Client, job_id: str) -> int:
    """Watch until the job ends; the exit code says how it ended."""
    args = ctx.args
    show = not ctx.json and not getattr(args, "quiet", False)
    watcher = Watcher(ctx.stderr, ctx.tty(), every=args.every) if show else None
    started = time.monotonic()
    try:
        final = client.wait(job_id, timeout=args.timeout, poll=args.poll,
                            on_update=watcher.update if watcher else None)
    except WaitTimeout as e:
        if watcher:
            watcher.close()
        if ctx.json:
            ctx.emit(e.status)
        ctx.note(f"roboaug: timed out after {args.timeout:g}s: job {job_id} is still {e.status.status} "
                 f"({e.status.current_phase}); it goes on (roboaug cancel {job_id} stops it)")
        return Exit.timeout
    except KeyboardInterrupt:
        if watcher:
            watcher.close()
        ctx.note(f"stopped watching; job {job_id} goes on (roboaug wait {job_id} to watch again, "
                 f"roboaug cancel {job_id} to stop it)")
        return Exit.interrupted
    if watcher:
        watcher.close()
    if ctx.json:
        ctx.emit(final)
    else:
        took = time.monotonic() - started
        if final.status == JobStatus.completed.value:
            ctx.say(f"completed in {duration(took)}: {final.augmented_dataset_id}")
        elif final.status == JobStatus.failed.value:
            ctx.say(f"failed: {final.error or 'no reason recorded'} (roboaug logs {job_id})")
        else:
            ctx.say(f"cancelled: job {job_id}")
    return FINAL_EXIT[final.status]


def cmd_wait(ctx: Context) -> int:
    with ctx.client() as client:
        return follow(ctx, client, ctx.args.job_id)


def cmd_status(ctx: Context) -> int:
    with ctx.client() as client:
        job = client.get(ctx.args.job_id)
    ctx.emit(job) if ctx.json else ctx.say(status_text(job))
    return Exit.ok


def cmd_list(ctx: Context) -> int:
    args = ctx.args
    with ctx.client() as client:
        jobs = client.list(project_id=args.project, status=args.status, limit=None if args.all else args.limit)
    if ctx.json:
        ctx.emit([j.model_dump(mode="json") for j in jobs])
    elif not jobs:
        ctx.say("no jobs")
    else:
        ctx.say(jobs_table(jobs))
    return Exit.ok


def cmd_cancel(ctx: Context) -> int:
    with ctx.client() as client:
        job = client.cancel(ctx.args.job_id)
    if ctx.json:
        ctx.emit(job)
    elif job.status in (JobStatus.completed.value, JobStatus.failed.value, JobStatus.cancelled.value):
        ctx.say(f"job {job.job_id} already {job.status}")
    else:
        ctx.say(f"cancel requested for job {job.job_id} (now {job.status}, phase {job.current_phase})")
    return Exit.ok


def cmd_logs(ctx: Context) -> int:
    args = ctx.args
    with ctx.client() as client:
        try:
            for line in client.logs(args.job_id, follow=args.follow, attempt=args.attempt):
                text = json.dumps(line.to_dict(), separators=(",", ":")) if ctx.json else render(line)
                print(text, file=ctx.stdout, flush=True)
        except KeyboardInterrupt:
            return Exit.interrupted
    return Exit.ok


def cmd_preview(ctx: Context) -> int:
    args = ctx.args
    request = flags.request_from(args, AugmentationPreviewRequest, stdin=ctx.stdin)
    episodes = flags.parse_indices(args.episodes, "--episodes")
    frames = flags.parse_indices(args.frames, "--frames")
    with ctx.client() as client:
        if args.frames_dir:
            answer = client.preview(request, episodes=episodes, frames=frames, format="json")
            written = write_pairs(answer, Path(args.frames_dir))
            if ctx.json:
                ctx.emit({"source": answer.source, "files": [str(p) for p in written]})
            else:
                ctx.say(f"wrote {len(written)} PNG files of {answer.source} to {args.frames_dir}")
            return Exit.ok
        png = client.preview(request, episodes=episodes, frames=frames)
    out = Path(args.out)
    out.write_bytes(png)
    if ctx.json:
        ctx.emit({"file": str(out), "bytes": len(png)})
    else:
        ctx.say(f"wrote {out} ({len(png)} bytes)")
    return Exit.ok


def write_pairs(answer, folder: Path) -> list[Path]:
    """`e<episode>-f<frame>-<camera>-original.png` and `...-copy<i>.png` for each pair."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for pair in answer.pairs:
        stem = f"e{pair.episode}-f{pair.frame}-{pair.camera.replace('/', '_')}"
        items = [("original", pair.original_png)] + [(f"copy{img.copy_index}", img.png) for img in pair.augmented]
        for label, data in items:
            path = folder / f"{stem}-{label}.png"
            path.write_bytes(base64.b64decode(data))
            written.append(path)
    return written


# -- parser -----------------------------------------------------------------------------------------
EPILOG = ("configuration: ROBOAUG_URL and ROBOAUG_API_KEY, else the file `roboaug login` writes "
          "(~/.config/roboaug/config). exit codes: " + ", ".join(f"{e.value} {e.name}" for e in Exit))


def _watch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds (exit 4)")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between status polls [default: 2]")
    p.add_argument("--every", type=float, default=10.0,
                   help="when not on a terminal: seconds between progress lines [default: 10]")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-o", "--output", choices=("text", "json"), default=argparse.SUPPRESS,
                        help="text for people, json for scripts")
    common.add_argument("--url", default=argparse.SUPPRESS, help="gateway URL (overrides ROBOAUG_URL and the config)")
    common.add_argument("--http-timeout", type=float, default=argparse.SUPPRESS,
                        help="seconds per HTTP request [default: 30]")
    parser = argparse.ArgumentParser(prog="roboaug", description="Submit and follow roboaug augmentation jobs.",
                                     epilog=EPILOG, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("login", parents=[common], help="save the gateway URL and API key to the config file")
    p.add_argument("--api-key-stdin", action="store_true", help="read the key from standard input (else a hidden prompt)")
    p.add_argument("--no-verify", action="store_true", help="save without checking the key against the gateway")
    p.set_defaults(run=cmd_login)

    p = sub.add_parser("submit", parents=[common], help="create a job (flags, or -f job.yaml)", epilog=EPILOG)
    p.add_argument("-f", "--file", help="an AugmentationJob manifest (the YAML kubectl takes; its spec) or a "
                                        "request body; '-' for standard input")
    p.add_argument("--idempotency-key", help="retry-safe submission (same key and body = same job)")
    p.add_argument("-w", "--watch", action="store_true", help="follow the job with a live progress bar until it ends")
    _watch_options(p)
    flags.add_request_flags(p)
    p.set_defaults(run=cmd_submit)

    p = sub.add_parser("status", parents=[common], help="a job's status and phase history")
    p.add_argument("job_id")
    p.set_defaults(run=cmd_status)

    p = sub.add_parser("list", parents=[common], help="jobs, newest first")
    p.add_argument("--project", help="only jobs of this project_id")
    p.add_argument("--status", choices=[s.value for s in JobStatus], help="only jobs in this status")
    p.add_argument("--limit", type=int, default=20, help="show at most this many [default: 20]")
    p.add_argument("--all", action="store_true", help="show every job")
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("cancel", parents=[common], help="cancel a job (idempotent)")
    p.add_argument("job_id")
    p.set_defaults(run=cmd_cancel)

    p = sub.add_parser("logs", parents=[common], help="the worker's log lines, readable")
    p.add_argument("job_id")
    p.add_argument("-f", "--follow", action="store_true", help="keep streaming while the worker runs")
    p.add_argument("--attempt", type=int, help="this retry attempt's logs (default: the latest)")
    p.set_defaults(run=cmd_logs)

    p = sub.add_parser("wait", parents=[common], help="wait for a job to end; the exit code says how", epilog=EPILOG)
    p.add_argument("job_id")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    _watch_options(p)
    p.set_defaults(run=cmd_wait)

    p = sub.add_parser("preview", parents=[common], help="original/augmented frames of a request, without a job")
    p.add_argument("-f", "--file", help="an AugmentationJob manifest or request body, as for submit")
    p.add_argument("--out", "-O", default="preview.png", help="where to write the PNG grid [default: preview.png]")
    p.add_argument("--frames-dir", help="instead of the grid, write every frame as its own PNG into this folder")
    p.add_argument("--episodes", help="comma-separated source episode indices [default: 0]")
    p.add_argument("--frames", help="comma-separated frame indices within each episode [default: the middle one]")
    request_fields = set(AugmentationPreviewRequest.model_fields) - {"episodes", "frames", "format"}
    flags.add_request_flags(p, _only(AugmentationPreviewRequest, request_fields))
    p.set_defaults(run=cmd_preview)
    return parser


def _only(model: type[BaseModel], names: set[str]):
    """A stand-in exposing just `names` of a model's fields, for flag generation."""
    class Fields:
        model_fields = {k: v for k, v in model.model_fields.items() if k in names}
    return Fields


def main(argv: Optional[Sequence[str]] = None, *, stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None,
         stdin: Optional[TextIO] = None, env=None, transport: Optional[httpx.BaseTransport] = None) -> int:
    stdout, stderr, stdin = stdout or sys.stdout, stderr or sys.stderr, stdin or sys.stdin
    env = dict(os.environ if env is None else env)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse printed its usage line
        return int(e.code or 0)
    for name, default in (("output", "text"), ("url", None), ("http_timeout", 30.0)):
        if not hasattr(args, name):
            setattr(args, name, default)
    ctx = Context(args, stdout, stderr, env, transport, stdin)
    try:
        return int(args.run(ctx))
    except ApiError as e:
        return fail(ctx, Exit.unavailable if e.status_code is None or e.status_code >= 500 else Exit.refused,
                    e.detail, e.status_code, e.errors)
    except ValidationError as e:
        items = e.errors(include_url=False, include_input=False)
        return fail(ctx, Exit.usage, items_line(items), None, [dict(i) for i in items])
    except (flags.ManifestError, _config.ConfigError) as e:
        return fail(ctx, Exit.usage, str(e), None, [])
    except OSError as e:
        return fail(ctx, Exit.usage, f"{e.filename}: {e.strerror}" if e.filename else str(e), None, [])
    except KeyboardInterrupt:
        return Exit.interrupted


def fail(ctx: Context, code: int, detail: str, status_code: Optional[int], errors: list) -> int:
    if ctx.json:
        print(json.dumps({"error": {"status_code": status_code, "detail": detail,
                                    "errors": [{"loc": list(map(str, i.get("loc", ()))), "msg": i.get("msg")} for i in errors]}}),
              file=ctx.stderr, flush=True)
    else:
        where = f" ({status_code})" if status_code else ""
        print(f"roboaug: error{where}: {detail}", file=ctx.stderr, flush=True)
    return code
