"""Maps the product folders onto import names; everything else is in pyproject.toml.

A folder named `operator/` cannot be imported as `operator` (that shadows the standard library),
so every top-level folder is installed under a `roboaug_` name.
"""
import os

from setuptools import setup

FOLDERS = {
    "roboaug_api": "api",
    "roboaug_operator": "operator",
    "roboaug_worker": "worker",
    "roboaug_devstack": "devstack",
}


def _packages():
    for name, folder in FOLDERS.items():
        for root, _dirs, files in os.walk(folder):
            if "__init__.py" in files:
                rel = os.path.relpath(root, folder)
                yield name if rel == "." else name + "." + rel.replace(os.sep, ".")


setup(
    packages=sorted(_packages()),
    package_dir=FOLDERS,
    package_data={name: ["**/*.yaml", "**/*.json", "**/*.html", "**/*.jinja"] for name in FOLDERS},
)
