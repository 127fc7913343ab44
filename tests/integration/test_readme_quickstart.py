"""The README's quick start, typed as written into a new shell, from a fresh copy of the repository.

One bash process runs the five commands (so ``. .venv/bin/activate``, ``eval`` and ``&`` work as in a
terminal), with no virtualenv active and none of the connector's variables set. Only the service's port
differs: ``CONNECTOR_BIND`` is set to a free loopback port and the curl line is pointed at it, so the test
cannot collide with anything on 8080. The README's stop line runs at the end, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from conftest_service import ROOT, free_loopback_port

README = (ROOT / "README.md").read_text()
SECTION = README[README.index("## Quick start") : README.index("## How it works")]
COPY_IGNORES = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info"
)


def _commands() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", SECTION, re.DOTALL).group(1)
    return [line for line in block.splitlines() if line.strip()]


def _stop_line() -> str:
    return re.search(r"stop everything with\s+`([^`]+)`", SECTION).group(1)


def _fresh_shell_environment(port: int) -> dict[str, str]:
    """The environment of a new login shell: no virtualenv active, no CONNECTOR_* variables."""
    path = os.pathsep.join(
        part for part in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if ".venv" not in part
    )
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CONNECTOR_", "ES_", "PYTEST")) and name not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    env.update(PATH=path, CONNECTOR_BIND=f"127.0.0.1:{port}")
    return env


def test_the_quick_start_reaches_outliers_from_the_webhook(tmp_path: Path) -> None:
    commands = _commands()
    assert len(commands) <= 5, "the README promises a quick start of at most five commands"
    port = free_loopback_port()
    script = "\n".join(
        [
            f"trap '{_stop_line()}' EXIT",
            *(line.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for line in commands),
        ]
    )
    clone = tmp_path / "clone"
    shutil.copytree(ROOT, clone, ignore=COPY_IGNORES)
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=clone,
        env=_fresh_shell_environment(port),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    log = clone / "service.log"
    assert result.returncode == 0, (result.stderr[-4000:], log.read_text()[-4000:] if log.exists() else "")
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("{")]
    answer = json.loads(line)
    assert answer["model"] == "rarechild"
    assert answer["index"] == "osquery-sample"
    assert answer["events_analyzed"] == 5280
    alerts = {(alert["aggregator"], alert["term"]): alert for alert in answer["outliers"]}
    word = alerts[("winword.exe", "cmd.exe")]
    assert word["explanation"].startswith("winword.exe → cmd.exe: a shell started by an Office application")
    assert all(
        word["event"][key] for key in ("command_line", "parent_command_line", "user", "path", "sha256")
    )
    assert answer["annotation"]["written"] == answer["outliers_total"] == len(answer["outliers"])
    assert "stopped node in" in result.stdout + result.stderr
