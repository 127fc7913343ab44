"""What a wheel ships: every package of connector/ and every data file the code reads at run time.

An installed (non-editable) package only has what pyproject.toml lists, so a new sub-package or data file
that is not listed works in the checkout and breaks the image and every `pip install .`.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_connector_package_is_listed():
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "connector").rglob("__init__.py")
        if "__pycache__" not in path.parts
    }
    assert found <= set(SETUPTOOLS["packages"]), sorted(found - set(SETUPTOOLS["packages"]))


def test_every_data_file_under_connector_is_package_data():
    package_data = SETUPTOOLS["package-data"]
    missing = []
    for path in (ROOT / "connector").rglob("*"):
        if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(ROOT)
        covered = False
        for package, patterns in package_data.items():
            base = Path(*package.split("."))
            if base in relative.parents:
                inner = relative.relative_to(base).as_posix()
                covered |= any(fnmatch.fnmatch(inner, pattern) for pattern in patterns)
        if not covered:
            missing.append(str(relative))
    assert missing == []
