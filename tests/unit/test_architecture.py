"""Structural rules (docs/architecture.md): a pure model, and no side effects at import."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "connector"
FORBIDDEN_IN_MODEL = {
    "elasticsearch",
    "elastic_transport",
    "flask",
    "os",
    "socket",
    "connector.sources",
    "connector.engine",
    "connector.cli",
    "requests",
    "urllib",
}


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", sorted(PACKAGE.joinpath("model").glob("*.py")), ids=lambda p: p.name)
def test_model_package_does_no_io(module):
    """connector/model imports nothing that does I/O or knows about sources, Flask or Elasticsearch."""
    imported = _imported_modules(module)
    offending = {
        name
        for name in imported
        for banned in FORBIDDEN_IN_MODEL
        if name == banned or name.startswith(banned + ".")
    }
    assert offending == set()


def test_importing_the_entry_points_opens_no_socket_and_reads_no_environment():
    """Importing the CLI and engine with an empty environment connects nowhere (CONTRIBUTING.md)."""
    probe = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise AssertionError('socket opened at import')\n"
        "socket.socket.connect = refuse\n"
        "import connector.cli, connector.engine, connector.config, connector.model.terms\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
