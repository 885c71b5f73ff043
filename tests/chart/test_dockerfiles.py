"""Dockerfile structure, checked without a container engine; built for real where one runs.

What is checked: multi-stage with binary-only installs and no compiler in the final stage,
the supply chain (base images as `image:exact-tag@sha256:digest`; every pip install of
dependencies by hash from the image's lock file, our own wheels with --no-deps; apt packages as
`pkg=version`; the locks match the test environment, checked offline), a numeric non-root USER, no secrets in ENV /
ARG / LABEL, OCI labels, HEALTHCHECK (operator) or an explicit HEALTHCHECK NONE (batch worker),
the command's module exists in the source tree, each image installs exactly its components
(and their resolved dependency closure holds nothing another component needs: no OpenCV, PyAV or
pyarrow in the operator image, no kopf or FastAPI in the worker image), .dockerignore keeps
non-source files out.
"""
from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.chart.helpers import REPO

def _load_constraints_tool():
    spec = importlib.util.spec_from_file_location("image_constraints", REPO / "hack" / "image_constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONSTRAINTS = _load_constraints_tool()
# image -> (Dockerfile, default command module); what each installs is CONSTRAINTS.IMAGES
IMAGES = {
    "operator": ("Dockerfile.operator", "roboaug.operator"),
    "worker": ("Dockerfile.worker", "roboaug.worker"),
}
# Distributions an image must never carry: another component's heavy or unrelated dependencies.
FORBIDDEN = {
    "operator": {"opencv-python-headless", "av", "pyarrow", "numpy", "huggingface-hub", "datasets",
                 "roboaug-worker", "roboaug-devstack"},
    "worker": {"kopf", "fastapi", "uvicorn", "starlette", "pydantic-settings", "prometheus-client",
               "datasets", "roboaug-operator", "roboaug-devstack"},
}


def component_folder(module: str) -> str:
    """`roboaug.operator` -> operator/src/roboaug/operator: import path = file path."""
    return f"{module.split('.')[1]}/src/{module.replace('.', '/')}"
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cmake|cargo|rustc|"
                       r"python3?-dev|libpython3[\d.]*-dev|pkg-config|gfortran)\b")
SECRETISH = re.compile(r"(token|secret|password|passwd|api[_-]?key|credential|private[_-]?key|"
                       r"aws_access|hf_[A-Za-z0-9]{8,})", re.I)
OCI_LABELS = {"org.opencontainers.image.title", "org.opencontainers.image.version",
              "org.opencontainers.image.source", "org.opencontainers.image.licenses",
              "org.opencontainers.image.revision", "org.opencontainers.image.description"}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def resolve(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                      lambda m: self.global_args.get(m.group(1) or m.group(2), m.group(0)), text)

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def final_chain(self) -> list[Stage]:
        """The final stage and the stages it is built FROM (e.g. runtime-${VARIANT})."""
        chain, stage = [], self.stages[-1]
        while stage is not None:
            chain.append(stage)
            base = self.resolve(stage.base)
            stage = next((s for s in self.stages if s.name == base), None)
        return chain


def parse(path) -> Dockerfile:
    text = path.read_text()
    # Join continuation lines, drop comments and blanks.
    logical, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        op, _, arg = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            parts = arg.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif not stages:
            if op == "ARG" and "=" in arg:
                k, v = arg.split("=", 1)
                global_args[k.strip()] = v.strip().strip('"')
        else:
            stages[-1].instructions.append((op, arg.strip()))
    return Dockerfile(global_args, stages)


def exec_form(arg: str) -> list[str]:
    import json

    assert arg.startswith("["), f"use the exec form (JSON array), got {arg!r}"
    return json.loads(arg)


@pytest.fixture(params=sorted(IMAGES), ids=sorted(IMAGES))
def image(request):
    name = request.param
    path, module = IMAGES[name]
    return name, parse(REPO / path), CONSTRAINTS.IMAGES[path], module


def test_multi_stage_with_a_separate_build_stage(image):
    _, df, _, _ = image
    assert len(df.stages) >= 2
    assert any(s.name == "build" for s in df.stages)
    final = df.stages[-1]
    # The final image copies the built virtualenv and never runs pip itself.
    assert any("--from=build" in c and "/opt/venv" in c for c in final.all("COPY"))
    for stage in df.final_chain():
        for run in stage.all("RUN"):
            assert "pip install" not in run, f"final stage installs packages: {run}"


def test_no_compilers_anywhere_and_binary_wheels_only(image):
    _, df, _, _ = image
    for stage in df.stages:
        for run in stage.all("RUN"):
            assert not COMPILERS.search(run), f"{stage.name}: build tool in {run!r}"
    installs = [r for r in df.stage("build").all("RUN") if "pip install" in r]
    assert installs and all("--only-binary=:all:" in r for r in installs)


# image:tag@sha256:digest, the tag an exact version (major.minor.patch, never latest / 3.11 /
# slim alone) kept for people, the digest what the builder pulls.
PINNED_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/-]*:(?P<tag>\d+\.\d+\.\d+(-[\w.-]+)?)@sha256:[a-f0-9]{64}$")


def base_image_problems(df: Dockerfile) -> list[str]:
    """Every external base (a FROM, through the global ARGs) must be pinned by tag and digest."""
    stage_names = {s.name for s in df.stages}
    problems = []
    for stage in df.stages:
        ref = df.resolve(stage.base)
        if ref in stage_names or ref.startswith("runtime-"):
            continue
        if not PINNED_IMAGE.match(ref):
            problems.append(f"FROM {stage.base} = {ref!r}: not image:exact-tag@sha256:<64 hex>")
    return problems


def test_base_images_are_pinned_by_tag_and_digest(image):
    _, df, _, _ = image
    assert not base_image_problems(df)
    # Every image-valued global ARG is a base and so pinned (a CUDA base included).
    assert {k for k in df.global_args if k.endswith("_IMAGE")} <= {
        re.sub(r"^\$\{?(\w+)\}?$", r"\1", s.base) for s in df.stages}


@pytest.mark.parametrize("mutation", [
    lambda ref: ref.split("@")[0],                                  # the tag only
    lambda ref: ref.split(":")[0] + "@" + ref.split("@")[1],        # the digest only
    lambda ref: ref.replace("3.11.14-slim", "3.11-slim"),           # a moving tag
    lambda ref: ref[:-1],                                           # a digest one digit short
], ids=["tag-only", "digest-only", "moving-tag", "short-digest"])
def test_base_image_check_refuses_a_weaker_pin(mutation):
    df = parse(REPO / "Dockerfile.worker")
    df.global_args["PYTHON_IMAGE"] = mutation(df.global_args["PYTHON_IMAGE"])
    assert any("PYTHON_IMAGE" in p for p in base_image_problems(df))


def test_runs_as_numeric_non_root_user(image):
    _, df, _, _ = image
    users = [u for s in df.final_chain() for u in s.all("USER")]
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]} must be a numeric non-root uid"
    # Worker pods run as 1000 (operator/jobs.py) and the chart's pods too: keep the image in step.
    assert int(uid) == 1000


def test_no_secrets_in_env_args_or_labels(image):
    _, df, _, _ = image
    for stage in df.stages:
        for op, arg in stage.instructions:
            if op in ("ENV", "ARG", "LABEL"):
                assert not SECRETISH.search(arg), f"{op} {arg!r} looks like a secret"
    assert not any(SECRETISH.search(f"{k}={v}") for k, v in df.global_args.items())


def test_oci_labels(image):
    _, df, _, _ = image
    labels = " ".join(l for s in df.final_chain() for l in s.all("LABEL"))
    present = set(re.findall(r"(org\.opencontainers\.image\.[\w.]+)=", labels))
    assert OCI_LABELS <= present, OCI_LABELS - present


def test_healthcheck(image):
    name, df, _, _ = image
    checks = [h for s in df.final_chain() for h in s.all("HEALTHCHECK")]
    assert len(checks) == 1
    if name == "worker":
        assert checks[0] == "NONE"  # a batch container: judged by its exit code
    else:
        assert "/healthz" in checks[0] and "CMD" in checks[0]


def test_command_module_exists(image):
    _, df, _, module = image
    cmd = exec_form([c for s in df.final_chain() for c in s.all("CMD")][-1])
    assert cmd[:2] == ["python", "-m"] and cmd[2] == module
    assert (REPO / component_folder(module) / "__main__.py").is_file(), \
        f"{module} has no __main__.py ({component_folder(module)}/__main__.py)"


def test_gateway_module_exists_for_the_second_command():
    # The chart runs the gateway from the operator image with `python -m roboaug.api.gateway`.
    assert (REPO / component_folder("roboaug.api.gateway") / "__main__.py").is_file()


def test_installs_exactly_its_components(image):
    _, df, roots, _ = image
    runs = " ".join(df.stage("build").all("RUN"))
    wheels = re.findall(r"/wheels/(roboaug_\w+)-\*\.whl\)\"?(?:\[([\w,]+)\])?", runs)
    installed = {(dist.replace("_", "-"), tuple(sorted(x for x in extras.split(",") if x)))
                 for dist, extras in wheels}
    assert installed == {(dist, tuple(sorted(extras))) for dist, extras in roots}
    built = re.search(r"pip wheel (?:--[\w-]+ )*--wheel-dir /wheels ((?:\./\w+ ?)+)", runs).group(1).split()
    assert sorted(f.strip("./") for f in built) == sorted(d.removeprefix("roboaug-") for d, _ in roots)


def pip_installs(df: Dockerfile) -> list[tuple[str, list[str]]]:
    """(stage name, argv) of every `pip install` any RUN of any stage makes."""
    found = []
    for stage in df.stages:
        for run in stage.all("RUN"):
            for cmd in re.split(r"&&|;|\|\|", run):
                argv = shlex.split(cmd)
                if "pip" in [Path(a).name for a in argv[:1]] and argv[1:2] == ["install"]:
                    found.append((stage.name, argv))
    return found


def install_problems(df: Dockerfile, dep_lock: str) -> list[str]:
    """Every pip install is either the image's dependencies (or the build backend) by hash from
    a lock file, or our own freshly built wheels without resolving anything."""
    problems, locks_used = [], set()
    for stage, argv in pip_installs(df):
        cmd = " ".join(argv)
        reqs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-r", "--requirement")]
        positional = [a for i, a in enumerate(argv[2:], 2)
                      if not a.startswith("-") and argv[i - 1] not in ("-r", "--requirement")]
        if reqs:
            locks_used.update(reqs)
            if not {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(argv):
                problems.append(f"{stage}: {cmd}: a lock install needs --require-hashes --no-deps "
                                f"--only-binary=:all:")
            if positional or not all(r.startswith("hack/lock/") for r in reqs):
                problems.append(f"{stage}: {cmd}: installs something besides a hack/lock/ file")
        elif positional and all(re.fullmatch(r"\$\(ls /wheels/roboaug_\w+-\*\.whl\)(\[[\w,]+\])?", a)
                                for a in positional):
            if "--no-deps" not in argv:
                problems.append(f"{stage}: {cmd}: our wheels must not pull dependencies (--no-deps)")
        else:
            problems.append(f"{stage}: {cmd}: installs neither from a hashed lock nor our wheels")
    for lock in (dep_lock, CONSTRAINTS.BUILD_LOCK):
        if lock not in locks_used:
            problems.append(f"never installs {lock}")
    for stage in df.stages:
        for run in stage.all("RUN"):
            if "pip wheel" in run and "--no-build-isolation" not in run:
                problems.append(f"{stage.name}: {run}: pip wheel would fetch an unpinned build backend")
    return problems


def test_every_pip_install_is_hashed_or_our_own_wheels(image):
    _, df, _, _ = image
    path = IMAGES[image[0]][0]
    assert pip_installs(df), "no pip install found: has the parser drifted?"
    assert not install_problems(df, CONSTRAINTS.LOCKS[path])


@pytest.mark.parametrize("old,new", [
    ("--require-hashes ", ""),
    ("-r hack/lock/worker.txt", "-r hack/lock/worker.txt numpy"),
    ("-r hack/lock/build.txt", "setuptools wheel"),
    ("--no-deps --no-index", "--no-index"),
    ("--no-build-isolation ", ""),
    ("pip uninstall -y pip", "pip install requests"),
], ids=["no-require-hashes", "extra-package", "build-backend-unhashed", "our-wheels-resolve",
        "build-isolation", "stray-install"])
def test_install_check_refuses_an_unhashed_install(tmp_path, old, new):
    text = (REPO / "Dockerfile.worker").read_text()
    assert old in text
    (tmp_path / "Dockerfile").write_text(text.replace(old, new))
    assert install_problems(parse(tmp_path / "Dockerfile"), CONSTRAINTS.LOCKS["Dockerfile.worker"])


APT_PIN = re.compile(r"^[a-z0-9][a-z0-9.+-]+=[0-9][\w.+:~-]*$")


def apt_problems(df: Dockerfile) -> list[str]:
    """Every package an `apt-get install` names carries an exact version (pkg=version)."""
    problems = []
    for stage in df.stages:
        for run in stage.all("RUN"):
            for cmd in re.split(r"&&|;|\|\|", run):
                argv = shlex.split(cmd)
                if argv[:1] in (["apt-get"], ["apt"]) and "install" in argv:
                    pkgs = [a for a in argv[argv.index("install") + 1:] if not a.startswith("-")]
                    problems += [f"{stage.name}: apt package {p!r} has no =version"
                                 for p in pkgs if not APT_PIN.match(p)]
    return problems


def test_apt_packages_are_pinned(image):
    _, df, _, _ = image
    assert not apt_problems(df)


@pytest.mark.parametrize("old,new", [
    ("libffi8=3.4.6-1build1", "libffi8"),
    ("tzdata=2026c-0ubuntu0.24.04.1", "tzdata="),
], ids=["unpinned", "empty-version"])
def test_cuda_variant_apt_installs_are_pinned_and_checked(tmp_path, old, new):
    runs = " ".join(parse(REPO / "Dockerfile.worker").stage("runtime-cuda").all("RUN"))
    assert "apt-get install" in runs and "libssl3t64=" in runs
    text = (REPO / "Dockerfile.worker").read_text()
    assert old in text
    (tmp_path / "Dockerfile").write_text(text.replace(old, new))
    assert apt_problems(parse(tmp_path / "Dockerfile")), f"{new!r} passed the apt pin check"


def test_copied_sources_cover_the_wheels(image):
    _, df, roots, _ = image
    copies = " ".join(df.stage("build").all("COPY"))
    for dist, _ in roots:
        folder = dist.removeprefix("roboaug-")
        assert f"{folder}/" in copies, f"does not COPY {folder}/"
    assert "hack/lock/" in copies


def test_dockerignore_is_an_allow_list():
    lines = [l.strip() for l in (REPO / ".dockerignore").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert lines[0] == "*", "start from ignoring everything"
    allowed = {l[1:].rstrip("/") for l in lines if l.startswith("!")}
    assert allowed == {"hack/lock", "api/pyproject.toml", "api/src", "operator/pyproject.toml",
                       "operator/src", "worker/pyproject.toml", "worker/src"}
    # Everything a Dockerfile COPYs must be allowed in (a component folder through its parts).
    for path, _ in IMAGES.values():
        for copy in parse(REPO / path).stage("build").all("COPY"):
            if copy.startswith("--from"):
                continue
            for src in shlex.split(copy)[:-1]:
                src = src.rstrip("/")
                assert src in allowed or {f"{src}/pyproject.toml", f"{src}/src"} <= allowed, \
                    f"{path} copies {src}, which .dockerignore drops"


def test_worker_cuda_variant_is_selectable():
    df = parse(REPO / "Dockerfile.worker")
    assert df.global_args.get("VARIANT") == "cpu"
    assert {"runtime-cpu", "runtime-cuda"} <= {s.name for s in df.stages}
    assert df.stages[-1].base == "runtime-${VARIANT}"
    assert "nvidia/cuda" in df.global_args["CUDA_IMAGE"]


def test_locks_match_the_test_environment_offline(monkeypatch):
    """The committed locks (and hack/constraints.txt, which ./dev installs the venv with) pin
    what the tests run with, every line with a hash, checked without the network."""
    def no_network(*a, **k):
        raise AssertionError("--check must not fetch")
    monkeypatch.setattr(CONSTRAINTS.urllib.request, "urlopen", no_network)
    assert CONSTRAINTS.check() == []
    proc = subprocess.run([sys.executable, str(REPO / "hack" / "image_constraints.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_each_image_lock_is_its_closure():
    for dockerfile, lock in CONSTRAINTS.LOCKS.items():
        entries = CONSTRAINTS.parse_lock((REPO / lock).read_text())
        assert {n: v for n, (v, _) in entries.items()} == CONSTRAINTS.closure(CONSTRAINTS.IMAGES[dockerfile])
        assert all(hashes for _, hashes in entries.values())


LOCK = """# a comment
numpy==2.4.6 \\
    --hash=sha256:{a} \\
    --hash=sha256:{b}
pyyaml==6.0.3 --hash=sha256:{a}
""".format(a="a" * 64, b="b" * 64)


def test_lock_parser_reads_continued_lines():
    assert CONSTRAINTS.parse_lock(LOCK) == {"numpy": ("2.4.6", ["a" * 64, "b" * 64]),
                                            "pyyaml": ("6.0.3", ["a" * 64])}


@pytest.mark.parametrize("text,want,needle", [
    (LOCK, {"numpy": "2.4.6", "pyyaml": "6.0.3"}, None),
    (LOCK.replace(" --hash=sha256:" + "a" * 64 + "\n", "\n"), {"numpy": "2.4.6", "pyyaml": "6.0.3"},
     "pyyaml==6.0.3 has no --hash"),
    (LOCK, {"numpy": "2.4.7", "pyyaml": "6.0.3"}, "numpy locked 2.4.6, environment has 2.4.7"),
    (LOCK, {"numpy": "2.4.6", "pyyaml": "6.0.3", "av": "18.1.0"}, "av locked not at all"),
    (LOCK, {"numpy": "2.4.6"}, "pyyaml locked 6.0.3, environment has none"),
    (LOCK.replace("pyyaml==6.0.3", "pyyaml>=6"), {"pyyaml": "6.0.3"}, "one exact version"),
    (LOCK.replace("sha256:" + "b" * 64, "md5:" + "b" * 32), {"numpy": "2.4.6"}, "not --hash=sha256"),
    (None, {"numpy": "2.4.6"}, "is missing"),
], ids=["ok", "no-hash", "drifted", "missing-pin", "extra-pin", "range", "md5", "no-file"])
def test_lock_problems(text, want, needle):
    problems = CONSTRAINTS.lock_problems("hack/lock/x.txt", text, want)
    if needle is None:
        assert problems == []
    else:
        assert any(needle in p for p in problems), problems


def test_hashes_are_taken_from_the_locked_version_only():
    files = [{"filename": f, "hashes": {"sha256": h}} for f, h in [
        ("numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl", "1" * 64),
        ("numpy-2.4.6.tar.gz", "2" * 64),
        ("numpy-2.4.60-cp311-cp311-manylinux_2_28_x86_64.whl", "3" * 64),
        ("numpy-2.4.6-py3.11.egg", "4" * 64),
        ("numpy_other-2.4.6-py3-none-any.whl", "5" * 64),
        ("numpy-2.4.6rc1.tar.gz", "6" * 64),
    ]]
    assert CONSTRAINTS._files_of("numpy", "2.4.6", files) == ["1" * 64, "2" * 64]


def _engine() -> str | None:
    for tool in ("docker", "podman"):
        exe = shutil.which(tool)
        if exe and subprocess.run([exe, "info"], capture_output=True, timeout=30).returncode == 0:
            return exe
    return None


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_builds_and_runs_as_non_root(name):
    engine = _engine()
    if not engine:
        pytest.skip("no running container engine (docker/podman info fails); structure tests above cover the Dockerfiles")
    path = IMAGES[name][0]
    tag = f"roboaug-test/{name}:ci"
    build = subprocess.run([engine, "build", "-f", str(REPO / path), "-t", tag, str(REPO)],
                           capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stderr[-4000:]
    out = subprocess.run([engine, "run", "--rm", "--read-only", "--entrypoint", "python", tag, "-c",
                          "import os, roboaug.api, roboaug.worker, roboaug.operator; print(os.getuid())"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1000"
