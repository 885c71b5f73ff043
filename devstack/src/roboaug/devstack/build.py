"""Build the local control plane's binaries from published Go modules (dev/test only).

Why: our machines have no container engine, so kind/k3d cannot run. Everything the dev stack
runs (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, helm) is
compiled here from upstream Go modules into a per-version cache *outside* the repository:

    ${ROBOAUG_CACHE:-~/.cache/roboaug}/bin/k8s-<version>/

The Go modules used to build them are generated (go.mod + a two-line etcd main) into
``${ROBOAUG_CACHE}/gomod/`` and never committed. ``k8s.io/kubernetes`` needs a ``replace`` line per
staging module; they are derived from that exact version's go.mod (see docs/CONTROL_PLANE.md).

Idempotent: a ``versions.json`` stamp in the bin dir records what was built; when it matches and
every binary exists, :func:`build` returns at once.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

K8S_VERSION = os.environ.get("ROBOAUG_K8S_VERSION", "v1.34.4")
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.22.0"
MIN_GO = (1, 26)

K8S_CMDS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"]
BINARIES = ["etcd", *K8S_CMDS, "kwok", "helm"]
STAMP = "versions.json"


def cache_root() -> Path:
    """Root of everything devstack caches (binaries, generated Go modules, logs of builds)."""
    return Path(os.environ.get("ROBOAUG_CACHE") or Path.home() / ".cache" / "roboaug")


def bin_dir(k8s_version: str = K8S_VERSION) -> Path:
    return cache_root() / "bin" / f"k8s-{k8s_version}"


def go_version() -> tuple[int, int] | None:
    """The installed Go's (major, minor), or None when no `go` is on PATH."""
    go = shutil.which("go")
    if not go:
        return None
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True).stdout
    m = re.match(r"go(\d+)\.(\d+)", out.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def go_ok() -> bool:
    v = go_version()
    return v is not None and v >= MIN_GO


def read_stamp(k8s_version: str = K8S_VERSION) -> dict | None:
    p = bin_dir(k8s_version) / STAMP
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def is_built(k8s_version: str = K8S_VERSION) -> bool:
    """True when every binary is in the cache and the stamp matches the wanted versions."""
    d = bin_dir(k8s_version)
    stamp = read_stamp(k8s_version)
    want = {"kubernetes": k8s_version, "kwok": KWOK_VERSION, "helm": HELM_VERSION}
    if not stamp or any(stamp.get(k) != v for k, v in want.items()):
        return False
    return all((d / b).is_file() for b in BINARIES)


# ---------------------------------------------------------------------------------------------
# helpers


def _go_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env["GO111MODULE"] = "on"
    # -p 2: two cores and 24 GB; linking kube-apiserver twice in parallel is the memory peak.
    flags = env.get("GOFLAGS", "").split()
    flags = [f for f in flags if not f.startswith("-p=")] + ["-p=2"]
    if not any(f.startswith("-buildvcs") for f in flags):
        flags.append("-buildvcs=false")
    env["GOFLAGS"] = " ".join(flags)
    env.update(extra or {})
    return env


def _run(cmd: list[str], cwd: Path | None, log, env: dict | None = None) -> str:
    log(f"$ {' '.join(cmd)}" + (f"   (in {cwd})" if cwd else ""))
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=cwd, env=env or _go_env(), capture_output=True, text=True)
    if p.stderr.strip():
        log(p.stderr.strip()[-4000:])
    log(f"  -> rc={p.returncode} in {time.monotonic() - t0:.1f}s")
    if p.returncode != 0:
        raise RuntimeError(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-4000:]}")
    return p.stdout


def _mod_info(module_at_version: str, log) -> dict:
    """`go mod download -json` of one module: its .mod file (GoMod) and source dir (Dir)."""
    out = _run(["go", "mod", "download", "-json", module_at_version], cwd=Path("/"), log=log,
               env=_go_env({"GOFLAGS": "-mod=mod"}))
    return json.loads(out)


# What the other Go builds of the dev stack (kueue.py) share with this one.
run_go = _run
module_info = _mod_info


def parse_k8s_gomod(text: str) -> dict:
    """Pull what our wrapper module must copy out of k8s.io/kubernetes' go.mod.

    Returns the staging module paths (replaced with ``./staging/...`` upstream), the ``godebug``
    line, the ``go`` directive and the required etcd server version.
    """
    staging = re.findall(r"^\s*(k8s\.io/[\w.\-/]+)\s+=>\s+\./staging/", text, re.M)
    godebug = re.search(r"^godebug\s+.*$", text, re.M)
    go_line = re.search(r"^go\s+(\S+)", text, re.M)
    etcd = re.search(r"go\.etcd\.io/etcd/server/v3\s+(v\S+)", text)
    return {
        "staging": sorted(set(staging)),
        "godebug": godebug.group(0) if godebug else "",
        "go": go_line.group(1) if go_line else "1.24.0",
        "etcd": etcd.group(1) if etcd else None,
    }


def staging_version(k8s_version: str) -> str:
    """v1.34.4 -> v0.34.4: the tag every staging module carries for that release."""
    return "v0." + k8s_version.lstrip("v").split(".", 1)[1]


def k8s_ldflags(k8s_version: str) -> str:
    major, minor = k8s_version.lstrip("v").split(".")[:2]
    parts = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        parts += [f"-X {pkg}.gitVersion={k8s_version}", f"-X {pkg}.gitMajor={major}",
                  f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean",
                  f"-X {pkg}.buildDate=1970-01-01T00:00:00Z"]
    return " ".join(parts)


def write_k8s_module(d: Path, k8s_version: str, info: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    sv = staging_version(k8s_version)
    replaces = "\n".join(f"\t{m} => {m} {sv}" for m in info["staging"])
    tools = "\n".join(f"\tk8s.io/kubernetes/cmd/{c}" for c in K8S_CMDS)
    (d / "go.mod").write_text(
        "// Generated by roboaug.devstack.build; do not commit.\n"
        "module roboaug.dev/devstack/k8sbuild\n\n"
        f"go {info['go']}\n\n{info['godebug']}\n\n"
        f"require k8s.io/kubernetes {k8s_version}\n\n"
        f"replace (\n{replaces}\n)\n\ntool (\n{tools}\n)\n")


def write_etcd_module(d: Path, etcd_version: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "go.mod").write_text(
        "// Generated by roboaug.devstack.build; do not commit.\n"
        "module roboaug.dev/devstack/etcdbuild\n\ngo 1.24.0\n\n"
        f"require go.etcd.io/etcd/server/v3 {etcd_version}\n")
    # etcd's own go.mod uses relative replaces, so `go install` refuses it: wrap etcdmain.Main.
    (d / "main.go").write_text(
        "// Generated by roboaug.devstack.build: etcd's server as a program.\n"
        "package main\n\nimport (\n\t\"os\"\n\n\t\"go.etcd.io/etcd/server/v3/etcdmain\"\n)\n\n"
        "func main() { etcdmain.Main(os.Args) }\n")


def helm_ldflags(helm_dir: Path, helm_version: str, k8s_version: str) -> str:
    """Stamp helm's own version and, for offline `helm template`, the Kubernetes version.

    Helm v3 keeps the default kube version in string vars named k8sVersionMajor/Minor in one or
    more packages (set by its Makefile); find them in the downloaded source instead of guessing.
    """
    major, minor = k8s_version.lstrip("v").split(".")[:2]
    parts = ["-s", "-w", f"-X helm.sh/helm/v3/internal/version.version={helm_version}",
             "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
             "-X helm.sh/helm/v3/internal/version.metadata="]
    for go_file in helm_dir.rglob("*.go"):
        if go_file.name.endswith("_test.go") or "testdata" in go_file.parts:
            continue
        text = go_file.read_text(errors="replace")
        if re.search(r"\bk8sVersionMajor\s*=\s*\"", text):
            pkg = "helm.sh/helm/v3/" + go_file.parent.relative_to(helm_dir).as_posix()
            parts += [f"-X {pkg}.k8sVersionMajor={major}", f"-X {pkg}.k8sVersionMinor={minor}"]
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------


def build(k8s_version: str = K8S_VERSION, force: bool = False, log=None) -> Path:
    """Build every binary into :func:`bin_dir` unless already there; returns that directory."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    out = bin_dir(k8s_version)
    if not force and is_built(k8s_version):
        log(f"devstack binaries already built in {out}")
        return out
    if not go_ok():
        raise RuntimeError("Go >= %d.%d is needed to build the dev stack (found %s)"
                           % (*MIN_GO, go_version()))
    t0 = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    gomod = cache_root() / "gomod" / f"k8s-{k8s_version}"

    k8s = _mod_info(f"k8s.io/kubernetes@{k8s_version}", log)
    info = parse_k8s_gomod(Path(k8s["GoMod"]).read_text())
    if not info["etcd"]:
        raise RuntimeError("could not find the etcd version in k8s.io/kubernetes' go.mod")
    log(f"kubernetes {k8s_version}: {len(info['staging'])} staging modules, etcd {info['etcd']},"
        f" {info['godebug']}")

    # etcd: the version that Kubernetes release requires.
    ed = gomod / "etcd"
    write_etcd_module(ed, info["etcd"])
    _run(["go", "mod", "tidy"], ed, log)
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "etcd"), "."], ed, log)

    # kube-apiserver, controller-manager, scheduler, kubectl from one wrapper module.
    kd = gomod / "kubernetes"
    write_k8s_module(kd, k8s_version, info)
    _run(["go", "mod", "tidy"], kd, log)
    pkgs = [f"k8s.io/kubernetes/cmd/{c}" for c in K8S_CMDS]
    _run(["go", "build", "-trimpath", "-ldflags", k8s_ldflags(k8s_version),
          "-o", str(out) + "/", *pkgs], kd, log)

    # kwok and helm have no replace directives: plain `go install mod@version`.
    gobin = _go_env({"GOBIN": str(out)})
    _run(["go", "install", "-trimpath", "-ldflags",
          f"-s -w -X sigs.k8s.io/kwok/pkg/consts.version={KWOK_VERSION}",
          f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}"], Path("/"), log, env=gobin)
    helm = _mod_info(f"helm.sh/helm/v3@{HELM_VERSION}", log)
    _run(["go", "install", "-trimpath", "-ldflags",
          helm_ldflags(Path(helm["Dir"]), HELM_VERSION, k8s_version),
          f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"], Path("/"), log, env=gobin)

    missing = [b for b in BINARIES if not (out / b).is_file()]
    if missing:
        raise RuntimeError(f"build finished but binaries are missing: {missing}")
    stamp = {"kubernetes": k8s_version, "etcd": info["etcd"], "kwok": KWOK_VERSION,
             "helm": HELM_VERSION, "go": subprocess.run(["go", "env", "GOVERSION"],
                                                        capture_output=True, text=True
                                                        ).stdout.strip(),
             "built_seconds": round(time.monotonic() - t0, 1),
             "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
    log(f"built {', '.join(BINARIES)} into {out} in {stamp['built_seconds']}s")
    return out


def ensure_built(k8s_version: str = K8S_VERSION, log=None) -> Path:
    """Return the bin dir, building on demand (the test fixture and `up` use this)."""
    return build(k8s_version, force=False, log=log)
