"""The repository's shape, as tools that read imports see it.

- import path = file path: every module of a component lives at <component>/src/roboaug/<component>/;
- nothing on sys.path shadows the standard library (plain `python` from the repository root);
- the layer rules in pyproject.toml [tool.importlinter] hold (import-linter's own run);
- every third-party module a component imports is declared by that component's pyproject.toml.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("api", "operator", "worker", "devstack")
STDLIB = set(sys.stdlib_module_names)


def _modules(component: str) -> list[Path]:
    return sorted((REPO / component / "src" / "roboaug" / component).rglob("*.py"))


@pytest.mark.parametrize("component", COMPONENTS)
def test_import_path_is_the_file_path(component):
    import importlib

    files = _modules(component)
    assert files, f"{component}/src/roboaug/{component} holds no modules"
    src = REPO / component / "src"
    for path in files:
        rel = path.relative_to(src).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        if parts[-1] == "__main__":
            continue
        module = importlib.import_module(".".join(parts))
        assert Path(module.__file__).resolve() == path.resolve(), module.__name__


def test_no_namespace_root_file_and_no_top_level_package_named_like_the_stdlib():
    for component in COMPONENTS:
        assert not (REPO / component / "src" / "roboaug" / "__init__.py").exists(), \
            "roboaug is a namespace shared by the components: no __init__.py at its root"
        assert not (REPO / component / "__init__.py").exists(), f"{component}/ must not be a package"
    shadowing = [p.name for p in REPO.iterdir()
                 if (p.suffix == ".py" and p.stem in STDLIB) or (p.is_dir() and (p / "__init__.py").exists()
                                                                and p.name in STDLIB)]
    assert not shadowing


def test_plain_python_from_the_repo_root_gets_the_standard_library():
    # The current directory goes first on sys.path for `python -c`: the operator/ folder there
    # must not stand in for the stdlib's operator module (no -P, no PYTHONSAFEPATH needed).
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONSAFEPATH"}
    code = ("import operator, sys; assert sys.path[0] == '', sys.path[0]; "
            "import roboaug.operator, roboaug.api.models; print(operator.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).parent == Path(sysconfig.get_paths()["stdlib"])


def test_layer_contracts_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(exe), "--config", str(REPO / "pyproject.toml")], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def _third_party_imports(component: str) -> dict[str, str]:
    """{top-level module: first file importing it} for imports outside the stdlib and roboaug."""
    found: dict[str, str] = {}
    for path in _modules(component):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in STDLIB and top != "roboaug":
                    found.setdefault(top, path.relative_to(REPO).as_posix())
    return found


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_third_party_import_is_declared_by_its_component(component):
    project = tomllib.loads((REPO / component / "pyproject.toml").read_text())["project"]
    declared = {_norm(r.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip())
                for r in project.get("dependencies", [])}
    for extra in project.get("optional-dependencies", {}).values():
        declared |= {_norm(r.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip()) for r in extra}
    dists_of = metadata.packages_distributions()
    missing = {}
    for module, where in _third_party_imports(component).items():
        dists = {_norm(d) for d in dists_of.get(module, [])}
        assert dists, f"{where} imports {module}, which no installed distribution provides"
        if not dists & declared:
            missing[module] = (where, sorted(dists))
    assert not missing, f"{component}/pyproject.toml does not declare: {missing}"


# The one module allowed to reach into a library's private parts, and why. It patches kopf's
# start-up and watch (issue 14 item 8) only after checking the layout of what it patches, and
# leaves kopf as it is, with a warning, when kopf looks different: a kopf upgrade costs speed or
# memory, never correctness. Anything else reaching into private modules breaks on upgrades.
PRIVATE_IMPORTS_ALLOWED = {
    "operator/src/roboaug/operator/kopf_startup.py": "kopf",
}


def test_no_private_imports_from_third_party_packages():
    offenders = []
    for component in COMPONENTS:
        for path in _modules(component):
            where = str(path.relative_to(REPO))
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    parts = node.module.split(".")
                    if parts[0] not in STDLIB and parts[0] != "roboaug" and any(p.startswith("_") for p in parts[1:]):
                        if PRIVATE_IMPORTS_ALLOWED.get(where) != parts[0]:
                            offenders.append(f"{where}: from {node.module} import ...")
    assert not offenders, offenders


def test_the_private_import_exception_still_guards_what_it_patches():
    """An exception that outlived its reason would hide new private imports in that module."""
    for where, package in PRIVATE_IMPORTS_ALLOWED.items():
        text = (REPO / where).read_text()
        assert f"from {package}._" in text, f"{where} no longer imports {package}'s internals: drop its exception"
        assert "log.warning" in text, f"{where} must warn and leave {package} alone when its layout differs"


def test_no_cross_module_private_access_inside_our_components():
    """`module._name` and `from .module import _name` across our own modules: a private name
    used from outside its module is an undeclared interface (tests may still reach in)."""
    offenders = []
    for component in COMPONENTS:
        for path in _modules(component):
            tree = ast.parse(path.read_text())
            module_aliases: set[str] = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("roboaug")):
                    for alias in node.names:
                        if alias.name.startswith("_") and not alias.name.startswith("__"):
                            offenders.append(f"{path.relative_to(REPO)}: from {node.module} import {alias.name}")
                        module_aliases.add(alias.asname or alias.name)
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name.startswith("roboaug"):
                            module_aliases.add(alias.asname or alias.name.split(".")[0])
            for node in ast.walk(tree):
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                        and node.value.id in module_aliases and node.attr.startswith("_")
                        and not node.attr.startswith("__")):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not offenders, offenders
