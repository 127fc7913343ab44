"""Fixtures running the REAL webhook service: gunicorn on a free 127.0.0.1 port, as in production.

Imported by ``conftest.py``. Each server is session-scoped: started once with its own environment
(credentials, a copy of examples/rare_child.ini), polled on ``/healthz`` until a deadline, and stopped in
a ``finally`` (terminate, wait, then kill its process group). If gunicorn exits or never answers, the
test fails with its output.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = ROOT / "connector/service/gunicorn_conf.py"
APP_FACTORY = "connector.service:create_app()"
EXAMPLE_USE_CASES = ROOT / "examples/rare_child.ini"
STARTUP_DEADLINE_S = 60.0
STOP_TIMEOUT_S = 40.0  # gunicorn's graceful_timeout is 30 s
REQUEST_TIMEOUT_S = 60.0
#: Indices the test services may read; test indices are created under this prefix.
SERVICE_INDEX_PREFIX = "rcp-svc-"
# Use cases that Elasticsearch must refuse (422): a Lucene syntax error, and a field no index has.
BROKEN_USE_CASES = """
[terms_broken_query]
es_query_filter=OsqueryFilter.name:(cmd.exe
aggregator=OsqueryFilter.parentname
target=OsqueryFilter.name
target_count_method=within_aggregator
trigger_on=low
trigger_method=pct_of_avg_value
trigger_sensitivity=1

[terms_unknown_field]
es_query_filter=tags:endpoint
aggregator=OsqueryFilter.grandparentname
target=OsqueryFilter.name
target_count_method=within_aggregator
trigger_on=low
trigger_method=pct_of_avg_value
trigger_sensitivity=1
"""


def free_loopback_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class RunningService:
    """A started server and the credentials it accepts."""

    url: str
    log_path: Path
    token: str
    basic_user: str
    basic_password: str
    environment: Mapping[str, str] = field(repr=False)

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def basic(self) -> dict[str, str]:
        pair = f"{self.basic_user}:{self.basic_password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResult:
        """One HTTP request (4xx/5xx are returned, not raised), bounded by a timeout."""
        all_headers = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        return http_request(method, self.url + path, data=data, headers=all_headers)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        """Every line of the service's output as a JSON object (ECS logs); fails on a line that is not."""
        lines = []
        for number, line in enumerate(self.log_text().splitlines(), start=1):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"line {number} of the service log is not JSON: {line[:300]!r}", pytrace=False)
        return lines


def http_request(
    method: str, url: str, *, data: bytes | None = None, headers: Mapping[str, str] | None = None
) -> HttpResult:
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return HttpResult(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return HttpResult(error.code, error.headers, error.read())


def _tail(path: Path, max_chars: int = 8000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-max_chars:]


def _tails(paths: Sequence[Path]) -> str:
    return "\n".join(f"--- {path.name}\n{_tail(path)}" if len(paths) > 1 else _tail(path) for path in paths)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (gunicorn stops its workers gracefully), then SIGKILL to the group we created if it hangs."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # The leader is still alive, so its process group (ours, from start_new_session) is too.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _wait_until_healthy(process: subprocess.Popen[bytes], url: str, *log_paths: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    last_problem = "no answer yet"
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            pytest.fail(
                f"the service exited with code {code} before answering /healthz; "
                f"its output:\n{_tails(log_paths)}",
                pytrace=False,
            )
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
                last_problem = f"status {response.status}"
        except (urllib.error.URLError, OSError) as error:
            last_problem = repr(error)
        time.sleep(0.2)
    pytest.fail(
        f"the service did not answer /healthz within {STARTUP_DEADLINE_S:.0f} s ({last_problem}); "
        f"its output:\n{_tails(log_paths)}",
        pytrace=False,
    )


@contextmanager
def run_service(
    workdir: Path,
    environment: Mapping[str, str],
    *,
    command: Sequence[str] | None = None,
    workers: int = 2,
    stderr_path: Path | None = None,
) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """Start the service (gunicorn by default, or ``command``) on a free loopback port; stop it after.

    Yields ``(base_url, log_path, environment)``. ``CONNECTOR_*`` variables of the calling
    environment are dropped so only ``environment`` configures the service. The process's stdout and
    stderr both go to ``log_path``, unless ``stderr_path`` is given: then ``log_path`` holds stdout alone
    and ``stderr_path`` stderr, as two separate streams.
    """
    port = free_loopback_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("CONNECTOR_")}
    env.update(environment)
    env.update({"CONNECTOR_BIND": f"127.0.0.1:{port}", "CONNECTOR_WORKERS": str(workers)})
    argv = list(command or [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), APP_FACTORY])
    log_path = workdir / f"service-{port}.log"
    with open(log_path, "wb") as log_file, open(stderr_path or os.devnull, "wb") as stderr_file:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=stderr_file if stderr_path else subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_healthy(process, url, log_path, *([stderr_path] if stderr_path else []))
        yield url, log_path, env
    finally:
        _stop(process)


@dataclass(frozen=True)
class ServiceCredentials:
    token: str
    basic_user: str
    basic_password: str

    def environment(self) -> dict[str, str]:
        return {
            "CONNECTOR_API_TOKENS": self.token,
            "CONNECTOR_BASIC_USER": self.basic_user,
            "CONNECTOR_BASIC_PASSWORD": self.basic_password,
        }


@pytest.fixture(scope="session")
def service_credentials() -> ServiceCredentials:
    """Fresh random credentials for this test session's services."""
    return ServiceCredentials(
        token=secrets.token_urlsafe(24), basic_user="watcher", basic_password=secrets.token_urlsafe(18)
    )


@pytest.fixture(scope="session")
def service_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Holds the use-case copy and the services' logs."""
    workdir = tmp_path_factory.mktemp("service")
    shutil.copyfile(EXAMPLE_USE_CASES, workdir / "rare_child.ini")
    with (workdir / "rare_child.ini").open("a") as use_cases:
        use_cases.write(BROKEN_USE_CASES)
    return workdir


@pytest.fixture(scope="session")
def service_results_index() -> str:
    return f"{SERVICE_INDEX_PREFIX}results-{uuid.uuid4().hex}"


def progress_indices(results_index: str) -> tuple[str, str]:
    """This session's checkpoint and summary indices, named after its results index (deleted with it) but
    outside its pattern, as the service demands."""
    base = results_index.replace("results", "progress", 1)
    return f"{base}-checkpoints", f"{base}-summary"


def _service_environment(es_url: str, workdir: Path, results_index: str) -> dict[str, str]:
    checkpoints, summary = progress_indices(results_index)
    return {
        "CONNECTOR_ES_URL": es_url,
        "CONNECTOR_USE_CASES": str(workdir / "rare_child.ini"),
        "CONNECTOR_ALLOWED_INDICES": f"{SERVICE_INDEX_PREFIX}*",
        "CONNECTOR_RESULTS_INDEX": results_index,
        "CONNECTOR_CHECKPOINT_INDEX": checkpoints,
        "CONNECTOR_SUMMARY_INDEX": summary,
    }


@contextmanager
def example_service(
    es_url: str,
    es_client: Any,
    workdir: Path,
    use_cases: Path,
    credentials: ServiceCredentials,
    *,
    results_index: str,
) -> Iterator[RunningService]:
    """Real gunicorn serving a copy of one example use-case file over this session's indices; its results
    index is deleted afterwards."""
    copy = workdir / use_cases.name
    shutil.copyfile(use_cases, copy)
    environment = {
        "CONNECTOR_ES_URL": es_url,
        "CONNECTOR_USE_CASES": str(copy),
        "CONNECTOR_ALLOWED_INDICES": f"{SERVICE_INDEX_PREFIX}*",
        "CONNECTOR_RESULTS_INDEX": results_index,
    }
    try:
        with running_service(workdir, environment, credentials) as service:
            yield service
    finally:
        es_client.options(ignore_status=404).indices.delete(index=results_index)


@contextmanager
def running_service(
    workdir: Path,
    environment: Mapping[str, str],
    credentials: ServiceCredentials,
    *,
    workers: int = 2,
) -> Iterator[RunningService]:
    """:func:`run_service` with ``credentials`` configured, as a :class:`RunningService` that sends them."""
    with run_service(workdir, {**environment, **credentials.environment()}, workers=workers) as (
        url,
        log_path,
        env,
    ):
        yield RunningService(
            url=url,
            log_path=log_path,
            token=credentials.token,
            basic_user=credentials.basic_user,
            basic_password=credentials.basic_password,
            environment=env,
        )


@pytest.fixture(scope="session")
def gunicorn_service(
    es_url: str,
    es_client: Elasticsearch,
    service_workdir: Path,
    service_credentials: ServiceCredentials,
    service_results_index: str,
) -> Iterator[RunningService]:
    """Real gunicorn (2 workers) serving the app against the real Elasticsearch node.

    It may read ``rcp-svc-*`` indices and writes results to :func:`service_results_index`, which is
    deleted afterwards.
    """
    environment = _service_environment(es_url, service_workdir, service_results_index)
    try:
        with running_service(service_workdir, environment, service_credentials) as service:
            yield service
    finally:
        indices = ",".join((service_results_index, *progress_indices(service_results_index)))
        es_client.options(ignore_status=404).indices.delete(index=indices, ignore_unavailable=True)


@pytest.fixture(scope="session")
def gunicorn_service_es_down(
    service_workdir: Path, service_credentials: ServiceCredentials, service_results_index: str
) -> Iterator[RunningService]:
    """Real gunicorn whose Elasticsearch URL is a closed loopback port (Elasticsearch "stopped")."""
    closed = f"http://127.0.0.1:{free_loopback_port()}"
    environment = _service_environment(closed, service_workdir, service_results_index)
    with running_service(service_workdir, environment, service_credentials, workers=1) as service:
        yield service
