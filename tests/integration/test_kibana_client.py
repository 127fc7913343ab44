"""The Kibana installer client against a local stand-in that checks requests as Kibana's API expects them.

The stand-in (``http.server`` on 127.0.0.1, one thread, bounded by timeouts) checks what Kibana checks:
method, path with the space prefix, the ``overwrite`` query parameter, the ``kbn-xsrf`` header, the
``Authorization`` header, the ``elastic-api-version`` header when one is sent, and for imports a
``multipart/form-data`` body with one part named ``file`` whose filename ends in ``.ndjson``. It also
checks every body with the offline checks the shipped assets are checked with (tests/kibana_api.py): each
saved object of an uploaded file, the connector and rule bodies of create (POST) and update (PUT), and
the detection rule against the schema restated from Kibana's OpenAPI. A request that breaks a rule is
answered 418 and recorded in ``problems``. Answers are the shapes Kibana's saved-objects, actions,
alerting and detection engine APIs document.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from connector.cli.setup_kibana import kibana_command, kibana_connector_command, security_rule_command
from connector.errors import (
    ConfigError,
    KibanaAuthError,
    KibanaError,
    KibanaUnavailableError,
    SavedObjectsImportError,
)
from connector.kibana.alerting import DEFAULT_CONNECTOR_ID, DEFAULT_RULE_ID, render_connector, render_rule
from connector.kibana.client import DEFAULT_BUNDLE, KibanaClient, KibanaConnection
from connector.kibana.security_rule import DEFAULT_SECURITY_RULE_ID, render_security_rule
from connector.scheduling import ServiceCredentials, ServiceEndpoint
from connector.settings import Secret
from tests.kibana_api import (
    CORE_MIGRATION_VERSION,
    DETECTION_ENGINE_API_VERSION,
    TYPE_MIGRATION_VERSION,
    detection_rule_problems,
    es_query_rule_problems,
    import_file_problems,
    webhook_connector_problems,
)

TLS_DIR = Path(__file__).parent / "data" / "kibana-tls"
API_KEY = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
USERNAME = "installer"
PASSWORD = "kibana-pa$$word-for-tests"
SERVICE_PASSWORD = "service-pa$$word-for-tests"
REQUEST_TIMEOUT_S = 5.0
SEARCH_SOURCE = {"query": {"language": "kuery", "query": ""}, "filter": []}
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"


def saved_object(
    object_type: str,
    object_id: str,
    attributes: dict[str, Any],
    references: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A saved object as an export holds it (envelope and migration versions), which Kibana imports."""
    return {
        "type": object_type,
        "id": object_id,
        "attributes": attributes,
        "references": references or [],
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "typeMigrationVersion": TYPE_MIGRATION_VERSION[object_type],
    }


BUNDLE_LINES = [
    saved_object(
        "index-pattern", "rcp-results", {"title": "outliers-rare-child*", "timeFieldName": "@timestamp"}
    ),
    saved_object(
        "search",
        "rcp-search",
        {
            "title": "Rare child processes",
            "columns": ["outliers.term"],
            "sort": [["@timestamp", "desc"]],
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": json.dumps({**SEARCH_SOURCE, "indexRefName": INDEX_REF})
            },
        },
        [{"name": INDEX_REF, "type": "index-pattern", "id": "rcp-results"}],
    ),
    saved_object(
        "dashboard",
        "rcp-dashboard",
        {
            "title": "Rare child processes",
            "panelsJSON": "[]",
            "optionsJSON": "{}",
            "timeRestore": False,
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(SEARCH_SOURCE)},
        },
    ),
]
EXPORT_SUMMARY = {"exportedCount": 3, "missingRefCount": 0, "missingReferences": []}


# -- the local stand-in --------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A header's value by its case-insensitive name (urllib sends ``Kbn-xsrf``, HTTP ignores case)."""
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), None)


@dataclass
class StandIn:
    """What the local Kibana saw; ``problems`` lists every way a request differed from Kibana's API."""

    url: str
    requests: list[Recorded] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def calls(self) -> list[tuple[str, str]]:
        return [(request.method, request.path) for request in self.requests]


@contextmanager
def kibana_stand_in(
    replies: Mapping[tuple[str, str], Reply],
    *,
    authorization: str | None,
    import_file: bytes | None = None,
    overwrite: str = "true",
    tls: bool = False,
) -> Iterator[StandIn]:
    """Serve ``replies`` keyed by (method, path); check every request; stop the server afterwards."""
    stand_in = StandIn(url="")

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S  # a stuck client cannot hold the server thread

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            recorded = Recorded(self.command, parts.path, parse_qs(parts.query), dict(self.headers), body)
            stand_in.requests.append(recorded)
            problems = check_request(recorded, authorization, import_file, overwrite)
            stand_in.problems.extend(problems)
            reply = replies.get((self.command, parts.path))
            if problems:
                reply = Reply(418, {"problems": problems})
            elif reply is None:
                reply = Reply(404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"})
            raw = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(TLS_DIR / "server.pem", TLS_DIR / "server-key.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    stand_in.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def check_request(
    request: Recorded, authorization: str | None, import_file: bytes | None, overwrite: str
) -> list[str]:
    """Every difference between ``request`` and what Kibana's API requires."""
    problems = []
    if "kbn-xsrf" not in {name.lower() for name in request.headers}:
        problems.append("no kbn-xsrf header")
    if request.headers.get("Authorization") != authorization:
        problems.append(f"Authorization header is {request.headers.get('Authorization')!r}")
    version = request.header("elastic-api-version")
    if version is not None and version != DETECTION_ENGINE_API_VERSION:
        problems.append(f"elastic-api-version {version!r} is not a version of this route")
    if request.path.endswith("/api/saved_objects/_import"):
        problems.extend(check_import(request, import_file, overwrite))
    elif request.method in ("POST", "PUT"):
        if request.headers.get("Content-Type") != "application/json":
            problems.append(f"Content-Type is {request.headers.get('Content-Type')!r}")
        try:
            body = json.loads(request.body)
        except ValueError:
            return [*problems, "the body is not JSON"]
        problems.extend(check_body(request, body))
    return problems


def check_body(request: Recorded, body: Any) -> list[str]:
    """The body of a connector or rule create (POST) or update (PUT), as the actions and alerting APIs
    validate it; any other body is a problem (the stand-in checks every body it gets)."""
    create = request.method == "POST"
    if "/api/actions/connector/" in request.path:
        return [f"connector: {problem}" for problem in webhook_connector_problems(body, create=create)]
    if "/api/alerting/rule/" in request.path:
        return [f"rule: {problem}" for problem in es_query_rule_problems(body, create=create)]
    if request.path.endswith("/api/detection_engine/rules"):  # PUT (update) takes the create body
        return [f"detection rule: {problem}" for problem in detection_rule_problems(body, kibana_only=True)]
    return [f"no body check for {request.method} {request.path}"]


def check_import(request: Recorded, import_file: bytes | None, overwrite: str) -> list[str]:
    problems = []
    if request.method != "POST":
        problems.append(f"import method is {request.method}")
    if request.query != {"overwrite": [overwrite]}:
        problems.append(f"import query is {request.query}")
    content_type = request.headers.get("Content-Type", "")
    if not content_type.startswith("multipart/form-data; boundary="):
        problems.append(f"import Content-Type is {content_type!r}")
        return problems
    boundary = content_type.partition("boundary=")[2]
    if not request.body.startswith(f"--{boundary}\r\n".encode()):
        problems.append("the body does not start with the boundary")
    if not request.body.endswith(f"\r\n--{boundary}--\r\n".encode()):
        problems.append("the body does not end with the closing boundary")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + request.body
    )
    parts = list(message.iter_parts()) if message.is_multipart() else []
    if len(parts) != 1:
        return [*problems, f"the form has {len(parts)} parts, not 1"]
    part = parts[0]
    if part.get_param("name", header="content-disposition") != "file":
        problems.append(f"the form field is {part.get_param('name', header='content-disposition')!r}")
    filename = part.get_filename() or ""
    if not filename.endswith(".ndjson"):
        problems.append(f"Invalid file extension: {filename!r}")
    uploaded = part.get_payload(decode=True)
    if import_file is not None and uploaded != import_file:
        problems.append("the uploaded file differs from the bundle")
    problems.extend(import_file_problems(uploaded))
    return problems


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """Three objects and an export summary line (which Kibana drops and we must not count)."""
    path = tmp_path / "rare-child-connector.ndjson"
    lines = [json.dumps(line, sort_keys=True) for line in [*BUNDLE_LINES, EXPORT_SUMMARY]]
    path.write_text("\n".join(lines) + "\n")
    return path


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def connection(url: str, *, space: str | None = None, **environ: str) -> KibanaConnection:
    env = environ or {"KIBANA_API_KEY": API_KEY}
    return KibanaConnection.from_env(env, url=url, space=space, timeout_seconds=REQUEST_TIMEOUT_S)


def api_key_header() -> str:
    return f"ApiKey {API_KEY}"


def success_results(overwrite: bool = True) -> list[dict[str, Any]]:
    return [
        {
            "type": line["type"],
            "id": line["id"],
            "meta": {"title": line["attributes"]["title"], "icon": "app"},
            **({"overwrite": True} if overwrite else {}),
        }
        for line in BUNDLE_LINES
    ]


ALL_SUCCESS = {"success": True, "successCount": 3, "successResults": success_results(), "warnings": []}
PARTIAL = {
    "success": False,
    "successCount": 0,
    "errors": [
        {
            "type": "search",
            "id": "rcp-search",
            "meta": {"title": "Rare child processes", "icon": "discoverApp"},
            "error": {"type": "missing_references", "references": [{"type": "index-pattern", "id": "gone"}]},
        },
        {
            "type": "dashboard",
            "id": "rcp-dashboard",
            "meta": {"title": "Rare child processes", "icon": "dashboardApp"},
            "error": {"type": "conflict"},
        },
        {
            "type": "index-pattern",
            "id": "rcp-results",
            "meta": {"title": "outliers-rare-child*"},
            "error": {
                "type": "unknown",
                "message": "Document has a property which belongs to a more recent version of Kibana",
                "statusCode": 400,
            },
        },
    ],
    "warnings": [],
}
UNAUTHORIZED = {
    "statusCode": 401,
    "error": "Unauthorized",
    "message": "[security_exception]: unable to authenticate with provided credentials",
}
DUPLICATES = {
    "statusCode": 400,
    "error": "Bad Request",
    "message": "Non-unique import objects detected: [dashboard:rcp-dashboard]",
}


def import_path(space: str | None) -> str:
    return f"/s/{space}/api/saved_objects/_import" if space else "/api/saved_objects/_import"


# -- import --------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", [None, "security"], ids=["default-space", "named-space"])
def test_import_sends_exactly_what_kibana_expects_and_reports_every_object(bundle, space):
    """Multipart field ``file``, ``.ndjson`` filename, kbn-xsrf, ApiKey auth, overwrite=true, space path."""
    replies = {("POST", import_path(space)): Reply(200, ALL_SUCCESS)}
    with kibana_stand_in(
        replies, authorization=api_key_header(), import_file=bundle.read_bytes()
    ) as stand_in:
        report = KibanaClient(connection(stand_in.url, space=space)).import_saved_objects(bundle)
    assert stand_in.problems == []
    assert stand_in.calls() == [("POST", import_path(space))]
    assert report.ok
    assert (report.success_count, report.expected_count) == (3, 3)
    assert [(item.type, item.id, item.title, item.overwrite) for item in report.imported] == [
        ("index-pattern", "rcp-results", "outliers-rare-child*", True),
        ("search", "rcp-search", "Rare child processes", True),
        ("dashboard", "rcp-dashboard", "Rare child processes", True),
    ]
    report.raise_for_errors()  # does not raise


def test_the_shipped_bundle_is_uploaded_byte_for_byte_and_every_object_counted():
    """The default --file (kibana_saved_objects/rare-child-connector.ndjson) goes out unchanged, and the
    report is done only when Kibana wrote as many objects as the file holds."""
    objects = [json.loads(line) for line in DEFAULT_BUNDLE.read_text().splitlines() if line.strip()]
    objects = [item for item in objects if "exportedCount" not in item]
    results = [{"type": item["type"], "id": item["id"], "meta": {"title": "t"}} for item in objects]
    answer = {"success": True, "successCount": len(results), "successResults": results, "warnings": []}
    replies = {("POST", import_path(None)): Reply(200, answer)}
    with kibana_stand_in(
        replies, authorization=api_key_header(), import_file=DEFAULT_BUNDLE.read_bytes()
    ) as stand_in:
        report = KibanaClient(connection(stand_in.url)).import_saved_objects(DEFAULT_BUNDLE)
    assert stand_in.problems == []
    assert report.ok and report.expected_count == len(objects) > 0


def test_no_overwrite_sends_overwrite_false_and_basic_auth(bundle):
    """--no-overwrite is the query parameter overwrite=false; username/password become HTTP basic."""
    basic = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    replies = {
        ("POST", import_path(None)): Reply(200, {**ALL_SUCCESS, "successResults": success_results(False)})
    }
    with kibana_stand_in(replies, authorization=basic, overwrite="false") as stand_in:
        client = KibanaClient(connection(stand_in.url, KIBANA_USERNAME=USERNAME, KIBANA_PASSWORD=PASSWORD))
        report = client.import_saved_objects(bundle, overwrite=False)
    assert stand_in.problems == []
    assert report.ok


def test_the_default_space_is_addressed_without_a_prefix(bundle):
    """--space default is Kibana's default space: no /s/default prefix."""
    replies = {("POST", import_path(None)): Reply(200, ALL_SUCCESS)}
    with kibana_stand_in(replies, authorization=api_key_header()) as stand_in:
        KibanaClient(connection(stand_in.url, space="default")).import_saved_objects(bundle)
    assert stand_in.calls() == [("POST", "/api/saved_objects/_import")]


def test_partial_import_reports_each_rejected_object_with_what_to_do(bundle):
    """conflict, missing_references and unknown errors are named per object; nothing was written."""
    replies = {("POST", import_path(None)): Reply(200, PARTIAL)}
    with kibana_stand_in(replies, authorization=api_key_header()) as stand_in:
        report = KibanaClient(connection(stand_in.url)).import_saved_objects(bundle)
    assert stand_in.problems == []
    assert not report.ok
    assert [item.describe() for item in report.rejected] == [
        "rejected search:rcp-search 'Rare child processes': missing_references: references objects neither "
        "in the file nor in the space: index-pattern:gone",
        "rejected dashboard:rcp-dashboard 'Rare child processes': conflict: an object with this id exists; "
        "import again with --overwrite to replace it",
        "rejected index-pattern:rcp-results 'outliers-rare-child*': unknown: Document has a property which "
        "belongs to a more recent version of Kibana (status 400)",
    ]
    with pytest.raises(SavedObjectsImportError) as raised:
        report.raise_for_errors()
    assert raised.value.exit_code == 3
    assert raised.value.message == (
        "Kibana rejected 3 of 3 object(s): search:rcp-search (missing_references), "
        "dashboard:rcp-dashboard (conflict), index-pattern:rcp-results (unknown); Kibana wrote none of them"
    )
    assert [detail["id"] for detail in raised.value.details] == ["rcp-search", "rcp-dashboard", "rcp-results"]


def test_unsupported_type_leaves_the_others_written_and_still_fails(bundle):
    """unsupported_type does not stop the other objects; the report says how many were written."""
    body = {
        "success": False,
        "successCount": 2,
        "successResults": success_results()[:2],
        "errors": [
            {
                "type": "dashboard",
                "id": "rcp-dashboard",
                "meta": {"title": "Rare child processes"},
                "error": {"type": "unsupported_type"},
            }
        ],
        "warnings": [],
    }
    with kibana_stand_in(
        {("POST", import_path(None)): Reply(200, body)}, authorization=api_key_header()
    ) as s:
        report = KibanaClient(connection(s.url)).import_saved_objects(bundle)
    with pytest.raises(SavedObjectsImportError, match=r"2 object\(s\) were written$"):
        report.raise_for_errors()


def test_success_without_every_object_is_not_done(bundle):
    """success=true but successCount below the file's object count: not done (Kibana can skip objects)."""
    body = {**ALL_SUCCESS, "successCount": 2, "successResults": success_results()[:2]}
    with kibana_stand_in(
        {("POST", import_path(None)): Reply(200, body)}, authorization=api_key_header()
    ) as s:
        report = KibanaClient(connection(s.url)).import_saved_objects(bundle)
    assert not report.ok
    with pytest.raises(SavedObjectsImportError, match=r"with 2 of 3 object\(s\) written and no error"):
        report.raise_for_errors()


def test_wrong_credentials_are_a_clear_auth_error(bundle):
    """401: the message says which variables hold the credentials, and never the credentials."""
    replies = {("POST", import_path(None)): Reply(401, UNAUTHORIZED)}
    with (
        kibana_stand_in(replies, authorization=api_key_header()) as stand_in,
        pytest.raises(KibanaAuthError) as raised,
    ):
        KibanaClient(connection(stand_in.url)).import_saved_objects(bundle)
    assert raised.value.message == (
        "Kibana refused the credentials (401: [security_exception]: unable to authenticate with provided "
        "credentials); check KIBANA_API_KEY or KIBANA_USERNAME/KIBANA_PASSWORD"
    )
    assert API_KEY not in raised.value.message


def test_a_bad_file_is_refused_with_kibanas_message(bundle):
    """400 (here: duplicate objects): Kibana's own message, nothing imported."""
    replies = {("POST", import_path(None)): Reply(400, DUPLICATES)}
    with (
        kibana_stand_in(replies, authorization=api_key_header()) as stand_in,
        pytest.raises(KibanaError) as raised,
    ):
        KibanaClient(connection(stand_in.url)).import_saved_objects(bundle)
    assert raised.value.message == (
        "Kibana refused the file (400: Non-unique import objects detected: [dashboard:rcp-dashboard])"
    )


def test_an_unreachable_kibana_is_a_clear_error(bundle):
    """Connection refused on a closed loopback port."""
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(KibanaUnavailableError) as raised:
        KibanaClient(connection(url)).import_saved_objects(bundle)
    assert raised.value.message == (
        f"Kibana at {url} refused the connection; check --kibana-url and that Kibana is running"
    )


def test_a_redirect_is_not_followed(bundle):
    """A 302 (a login page, a missing basePath) is an error; the credentials are not sent elsewhere."""
    replies = {("POST", import_path(None)): Reply(302, b"", {"Location": "http://198.51.100.7/login"})}
    with (
        kibana_stand_in(replies, authorization=api_key_header()) as stand_in,
        pytest.raises(KibanaUnavailableError, match=r"redirect to http://198\.51\.100\.7/login"),
    ):
        KibanaClient(connection(stand_in.url)).import_saved_objects(bundle)
    assert len(stand_in.requests) == 1


def test_a_non_json_answer_is_not_taken_for_kibana(bundle):
    """200 with HTML (a proxy page): the client says it is not Kibana's answer."""
    replies = {("POST", import_path(None)): Reply(200, b"<html>proxy</html>")}
    with (
        kibana_stand_in(replies, authorization=api_key_header()) as stand_in,
        pytest.raises(KibanaUnavailableError, match=r"is not JSON \(<html>proxy</html>\)"),
    ):
        KibanaClient(connection(stand_in.url)).import_saved_objects(bundle)


def test_tls_verification_is_on_by_default_and_a_ca_makes_it_pass(bundle):
    """A certificate from an unknown CA fails verification; --ca-certs with that CA succeeds."""
    replies = {("POST", import_path(None)): Reply(200, ALL_SUCCESS)}
    with kibana_stand_in(replies, authorization=api_key_header(), tls=True) as stand_in:
        with pytest.raises(KibanaUnavailableError) as raised:
            KibanaClient(connection(stand_in.url)).import_saved_objects(bundle)
        trusted = KibanaConnection.from_env(
            {"KIBANA_API_KEY": API_KEY}, url=stand_in.url, ca_certs=str(TLS_DIR / "ca.pem"), timeout_seconds=5
        )
        report = KibanaClient(trusted).import_saved_objects(bundle)
    assert raised.value.message.startswith(f"TLS verification of Kibana at {stand_in.url} failed (")
    assert raised.value.message.endswith("pass --ca-certs with the CA that signed its certificate")
    assert report.ok
    assert len(stand_in.requests) == 1  # only the verified connection got as far as a request
    assert stand_in.problems == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bundle.json", "{}\n", "Kibana imports only files whose name ends in .ndjson"),
        (
            "bundle.ndjson",
            '{"type": "search"}\n{oops\n',
            "line 2 is not JSON (Expecting property name enclosed in double quotes)",
        ),
        ("bundle.ndjson", "[1, 2]\n", "line 1 is not a JSON object"),
    ],
    ids=["wrong-extension", "bad-line", "not-an-object"],
)
def test_files_kibana_would_refuse_are_refused_before_sending(tmp_path, name, content, message):
    """The client names the file and line instead of sending a request Kibana rejects as a whole."""
    path = tmp_path / name
    path.write_text(content)
    with (
        kibana_stand_in({}, authorization=api_key_header()) as stand_in,
        pytest.raises(ConfigError) as raised,
    ):
        KibanaClient(connection(stand_in.url)).import_saved_objects(path)
    assert raised.value.message == f"{path}: {message}"
    assert stand_in.requests == []


@pytest.mark.parametrize(
    ("environ", "option"),
    [
        (
            {"KIBANA_API_KEY": API_KEY, "KIBANA_USERNAME": USERNAME, "KIBANA_PASSWORD": PASSWORD},
            "KIBANA_API_KEY",
        ),
        ({"KIBANA_USERNAME": USERNAME}, "KIBANA_PASSWORD"),
    ],
    ids=["key-and-password", "user-without-password"],
)
def test_ambiguous_credentials_are_a_configuration_error(environ, option):
    """Either an API key or a user and password; the error names the variable, not its value."""
    with pytest.raises(ConfigError) as raised:
        KibanaConnection.from_env(environ, url="https://kibana.internal:5601")
    assert raised.value.option == option
    assert API_KEY not in raised.value.message and PASSWORD not in raised.value.message


# -- the connector and the rule ------------------------------------------------------------------

CONNECTOR_PATH = f"/api/actions/connector/{DEFAULT_CONNECTOR_ID}"
RULE_PATH = f"/api/alerting/rule/{DEFAULT_RULE_ID}"
NOT_FOUND = {"statusCode": 404, "error": "Not Found", "message": "Saved object not found"}


def service() -> tuple[ServiceEndpoint, ServiceCredentials]:
    return ServiceEndpoint.parse("https://rcp.internal:8443"), ServiceCredentials(
        "kibana", Secret(SERVICE_PASSWORD)
    )


def test_a_new_connector_and_rule_are_created_with_their_ids():
    """GET answers 404, so each is created with POST .../<id> and the full definition."""
    endpoint, credentials = service()
    connector = render_connector(endpoint=endpoint, credentials=credentials)
    rule = render_rule(connector_id=DEFAULT_CONNECTOR_ID, index="osquery-*")
    replies = {
        ("GET", f"/s/soc{CONNECTOR_PATH}"): Reply(404, NOT_FOUND),
        ("POST", f"/s/soc{CONNECTOR_PATH}"): Reply(200, {"id": DEFAULT_CONNECTOR_ID, **connector}),
        ("GET", f"/s/soc{RULE_PATH}"): Reply(404, NOT_FOUND),
        ("POST", f"/s/soc{RULE_PATH}"): Reply(200, {"id": DEFAULT_RULE_ID}),
    }
    with kibana_stand_in(replies, authorization=api_key_header()) as stand_in:
        client = KibanaClient(connection(stand_in.url, space="soc"))
        assert client.put_connector(DEFAULT_CONNECTOR_ID, connector) == "created"
        assert client.put_rule(DEFAULT_RULE_ID, rule) == "created"
    assert stand_in.problems == []
    assert [(method, path.removeprefix("/s/soc")) for method, path in stand_in.calls()] == [
        ("GET", CONNECTOR_PATH),
        ("POST", CONNECTOR_PATH),
        ("GET", RULE_PATH),
        ("POST", RULE_PATH),
    ]
    sent_connector = json.loads(stand_in.requests[1].body)
    assert sent_connector == {
        "name": "Rare child process detection (webhook service)",
        "connector_type_id": ".webhook",
        "config": {
            "url": "https://rcp.internal:8443/api/v1/detect",
            "method": "post",
            "headers": {"Content-Type": "application/json"},
            "hasAuth": True,
            "authType": "webhook-authentication-basic",
        },
        "secrets": {"user": "kibana", "password": SERVICE_PASSWORD},
    }
    sent_rule = json.loads(stand_in.requests[3].body)
    assert sent_rule["actions"][0]["id"] == DEFAULT_CONNECTOR_ID
    assert sent_rule["actions"][0]["group"] == "query matched"
    assert json.loads(sent_rule["actions"][0]["params"]["body"])["index"] == "osquery-*"


def test_an_existing_connector_and_rule_are_updated_with_what_put_accepts():
    """Update bodies hold only the fields Kibana's PUT accepts (no type, consumer or enabled)."""
    endpoint, credentials = service()
    connector = render_connector(endpoint=endpoint, credentials=credentials)
    rule = render_rule(connector_id=DEFAULT_CONNECTOR_ID)
    replies = {
        ("GET", CONNECTOR_PATH): Reply(200, {"id": DEFAULT_CONNECTOR_ID, "connector_type_id": ".webhook"}),
        ("PUT", CONNECTOR_PATH): Reply(200, {"id": DEFAULT_CONNECTOR_ID}),
        ("GET", RULE_PATH): Reply(200, {"id": DEFAULT_RULE_ID, "rule_type_id": ".es-query"}),
        ("PUT", RULE_PATH): Reply(200, {"id": DEFAULT_RULE_ID}),
    }
    with kibana_stand_in(replies, authorization=api_key_header()) as stand_in:
        client = KibanaClient(connection(stand_in.url))
        assert client.put_connector(DEFAULT_CONNECTOR_ID, connector) == "updated"
        assert client.put_rule(DEFAULT_RULE_ID, rule) == "updated"
    assert stand_in.problems == []
    assert sorted(json.loads(stand_in.requests[1].body)) == ["config", "name", "secrets"]
    assert sorted(json.loads(stand_in.requests[3].body)) == ["actions", "name", "params", "schedule", "tags"]


def _with_schedule(rule: dict[str, Any], interval: str) -> dict[str, Any]:
    return {**rule, "schedule": {"interval": interval}}


@pytest.mark.parametrize(
    ("send", "problem"),
    [
        (
            lambda client, bundle_path: client.import_saved_objects(bundle_path),
            "line 2 (search:rcp-search): search attribute 'sampleSize' is not in its schema",
        ),
        (
            lambda client, _: client.put_connector(
                DEFAULT_CONNECTOR_ID,
                {**render_connector(endpoint=service()[0], credentials=service()[1]), "config": {"url": "x"}},
            ),
            "connector: config.url 'x' is not an http(s) URL",
        ),
        (
            lambda client, _: client.put_rule(
                DEFAULT_RULE_ID, _with_schedule(render_rule(connector_id=DEFAULT_CONNECTOR_ID), "hourly")
            ),
            "rule: schedule.interval 'hourly' is not <number><s|m|h|d>",
        ),
    ],
    ids=["saved-object-unknown-attribute", "connector-bad-url", "rule-bad-interval"],
)
def test_a_body_kibana_would_refuse_fails_at_the_stand_in(tmp_path, send, problem):
    """The stand-in is not a JSON sink: a saved object, connector or rule Kibana would refuse is answered
    418 with the problem, and the client reports a failure."""
    lines = [*BUNDLE_LINES]
    lines[1] = {**lines[1], "attributes": {**lines[1]["attributes"], "sampleSize": 100}}
    bundle_path = tmp_path / "refused.ndjson"
    bundle_path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    replies = {
        ("POST", import_path(None)): Reply(200, ALL_SUCCESS),
        ("GET", CONNECTOR_PATH): Reply(404, NOT_FOUND),
        ("POST", CONNECTOR_PATH): Reply(200, {"id": DEFAULT_CONNECTOR_ID}),
        ("GET", RULE_PATH): Reply(404, NOT_FOUND),
        ("POST", RULE_PATH): Reply(200, {"id": DEFAULT_RULE_ID}),
    }
    with (
        kibana_stand_in(replies, authorization=api_key_header()) as stand_in,
        pytest.raises(KibanaError, match="418"),
    ):
        send(KibanaClient(connection(stand_in.url)), bundle_path)
    assert stand_in.problems == [problem]


def test_an_id_taken_by_another_connector_type_is_not_overwritten():
    """GET finds a connector of another type under the id: an error, and no PUT."""
    endpoint, credentials = service()
    replies = {
        ("GET", CONNECTOR_PATH): Reply(200, {"id": DEFAULT_CONNECTOR_ID, "connector_type_id": ".slack"})
    }
    with (
        kibana_stand_in(replies, authorization=api_key_header()) as stand_in,
        pytest.raises(KibanaError, match=r"already exists with connector_type_id '\.slack'"),
    ):
        KibanaClient(connection(stand_in.url)).put_connector(
            DEFAULT_CONNECTOR_ID, render_connector(endpoint=endpoint, credentials=credentials)
        )
    assert stand_in.calls() == [("GET", CONNECTOR_PATH)]


# -- the click commands --------------------------------------------------------------------------


def run(command: Any, args: list[str], env: Mapping[str, str]) -> Any:
    return CliRunner().invoke(command, args, env=dict(env), catch_exceptions=False)


def test_kibana_command_prints_each_object_and_exits_0(bundle):
    """Success: one line per imported object, then the total; exit code 0."""
    replies = {("POST", import_path("soc")): Reply(200, ALL_SUCCESS)}
    with kibana_stand_in(replies, authorization=api_key_header()) as stand_in:
        result = run(
            kibana_command,
            ["--kibana-url", stand_in.url, "--space", "soc", "--file", str(bundle)],
            {"KIBANA_API_KEY": API_KEY},
        )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "imported index-pattern:rcp-results 'outliers-rare-child*' (replaced the existing one)",
        "imported search:rcp-search 'Rare child processes' (replaced the existing one)",
        "imported dashboard:rcp-dashboard 'Rare child processes' (replaced the existing one)",
        f"imported 3 object(s) into space soc of {stand_in.url}",
    ]


def test_kibana_command_names_every_failing_object_and_exits_3(bundle, caplog):
    """Rejected objects: each is named with its error, the exit code is 3, no secret is printed or logged."""
    caplog.set_level(logging.DEBUG)
    replies = {("POST", import_path(None)): Reply(200, PARTIAL)}
    with kibana_stand_in(replies, authorization=api_key_header()) as stand_in:
        result = run(
            kibana_command, ["--kibana-url", stand_in.url, "--file", str(bundle)], {"KIBANA_API_KEY": API_KEY}
        )
    assert result.exit_code == 3
    errors = [line for line in result.output.splitlines() if line.startswith("error: rejected ")]
    assert [line.split()[2] for line in errors] == [
        "search:rcp-search",
        "dashboard:rcp-dashboard",
        "index-pattern:rcp-results",
    ]
    assert result.output.splitlines()[-1].startswith("error: Kibana rejected 3 of 3 object(s)")
    assert API_KEY not in result.output
    assert all(API_KEY not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(401, UNAUTHORIZED), "error: Kibana refused the credentials (401: "),
        (Reply(400, DUPLICATES), "error: Kibana refused the file (400: Non-unique import objects detected"),
    ],
    ids=["401", "400-bad-file"],
)
def test_kibana_command_exits_1_on_refused_requests(bundle, reply, message):
    """Wrong credentials and a refused file: exit code 1 and Kibana's message."""
    with kibana_stand_in(
        {("POST", import_path(None)): reply},
        authorization=f"Basic {base64.b64encode(f'{USERNAME}:{PASSWORD}'.encode()).decode()}",
    ) as s:
        result = run(
            kibana_command,
            ["--kibana-url", s.url, "--file", str(bundle)],
            {"KIBANA_USERNAME": USERNAME, "KIBANA_PASSWORD": PASSWORD},
        )
    assert result.exit_code == 1
    assert result.output.startswith(message)
    assert PASSWORD not in result.output


def test_kibana_command_exits_1_when_kibana_is_unreachable(bundle):
    """A closed port: exit code 1 with the URL and what to check."""
    url = f"http://127.0.0.1:{closed_port()}"
    result = run(kibana_command, ["--kibana-url", url, "--file", str(bundle)], {"KIBANA_API_KEY": API_KEY})
    assert result.exit_code == 1
    assert (
        result.output
        == f"error: Kibana at {url} refused the connection; check --kibana-url and that Kibana is running\n"
    )


def test_kibana_connector_command_reports_a_basic_licence_refusal_without_echoing_secrets(caplog):
    """Kibana on Basic refuses the Webhook connector (403): exit 1, the message mentions Gold."""
    caplog.set_level(logging.DEBUG)
    forbidden = {
        "statusCode": 403,
        "error": "Forbidden",
        "message": "Action type .webhook is disabled because your basic license does not support it. "
        "Please upgrade your license.",
    }
    replies = {
        ("GET", CONNECTOR_PATH): Reply(404, NOT_FOUND),
        ("POST", CONNECTOR_PATH): Reply(403, forbidden),
    }
    env = {
        "KIBANA_API_KEY": API_KEY,
        "CONNECTOR_BASIC_USER": "kibana",
        "CONNECTOR_BASIC_PASSWORD": SERVICE_PASSWORD,
    }
    with kibana_stand_in(replies, authorization=api_key_header()) as stand_in:
        result = run(
            kibana_connector_command,
            ["--kibana-url", stand_in.url, "--service-url", "https://rcp.internal:8443"],
            env,
        )
    assert stand_in.problems == []
    assert result.exit_code == 1
    assert "403: Action type .webhook is disabled because your basic license" in result.output
    assert "the Webhook connector needs a Gold licence" in result.output
    for secret in (API_KEY, SERVICE_PASSWORD):
        assert secret not in result.output
        assert all(secret not in record.getMessage() for record in caplog.records)


def test_kibana_connector_dry_run_masks_the_password_and_sends_nothing():
    """--dry-run prints the connector and rule with the password masked."""
    env = {"CONNECTOR_BASIC_USER": "kibana", "CONNECTOR_BASIC_PASSWORD": SERVICE_PASSWORD}
    url = f"http://127.0.0.1:{closed_port()}"
    result = run(
        kibana_connector_command,
        [
            "--kibana-url",
            url,
            "--service-url",
            "https://rcp.internal:8443/rcp",
            "--dry-run",
            "--use-case",
            "terms_rare_childname",
        ],
        env,
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["connector"]["secrets"] == {"user": "kibana", "password": "**********"}
    assert shown["connector"]["config"]["url"] == "https://rcp.internal:8443/rcp/api/v1/detect"
    assert json.loads(shown["rule"]["actions"][0]["params"]["body"])["use_case"] == "terms_rare_childname"
    assert SERVICE_PASSWORD not in result.output


# -- the Elastic Security detection rule -----------------------------------------------------------


DETECTION_PATH = "/api/detection_engine/rules"
RULE_EXISTS = {
    "message": f'rule_id: "{DEFAULT_SECURITY_RULE_ID}" already exists',
    "status_code": 409,
}


def basic_header() -> str:
    return f"Basic {base64.b64encode(f'{USERNAME}:{PASSWORD}'.encode()).decode()}"


def dry_run_rule(args: list[str]) -> dict[str, Any]:
    """What ``--dry-run`` prints for ``args`` (against a port nobody listens on: nothing can be sent)."""
    url = f"http://127.0.0.1:{closed_port()}"
    result = run(
        security_rule_command, ["--kibana-url", url, *args, "--dry-run"], {"KIBANA_API_KEY": API_KEY}
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_security_rule_command_sends_exactly_the_dry_run_rule():
    """One POST to the space's detection engine with the dry-run JSON, kbn-xsrf, the API version and the
    API key; the stand-in checks the body against Kibana's schema."""
    args = ["--space", "soc", "--results-index", "soc-findings", "--interval", "10m"]
    expected = dry_run_rule(args)
    replies = {("POST", f"/s/soc{DETECTION_PATH}"): Reply(200, {"id": "a1b2", **expected})}
    with kibana_stand_in(replies, authorization=api_key_header()) as stand_in:
        result = run(
            security_rule_command, ["--kibana-url", stand_in.url, *args], {"KIBANA_API_KEY": API_KEY}
        )
    assert result.exit_code == 0, result.output
    assert stand_in.problems == []
    assert stand_in.calls() == [("POST", f"/s/soc{DETECTION_PATH}")]
    (request,) = stand_in.requests
    assert json.loads(request.body) == expected
    assert request.header("kbn-xsrf") and request.header("Content-Type") == "application/json"
    assert request.header("elastic-api-version") == "2023-10-31"
    assert result.stdout == ""
    assert result.stderr == (
        f"created detection rule {DEFAULT_SECURITY_RULE_ID} in space soc of {stand_in.url}: runs every 10m "
        "over soc-findings* (event.kind:alert)\n"
    )
    assert API_KEY not in result.output


def test_an_existing_rule_id_is_replaced_with_put_and_the_same_body(caplog):
    """POST answers 409 (the rule_id exists): the same body goes to PUT, found by its rule_id; basic auth,
    and the password appears in no output and no log record, even at DEBUG."""
    caplog.set_level(logging.DEBUG)
    expected = dry_run_rule(["--disabled"])
    replies = {
        ("POST", DETECTION_PATH): Reply(409, RULE_EXISTS),
        ("PUT", DETECTION_PATH): Reply(200, {"id": "a1b2", **expected}),
    }
    with kibana_stand_in(replies, authorization=basic_header()) as stand_in:
        result = run(
            security_rule_command,
            ["--kibana-url", stand_in.url, "--disabled"],
            {"KIBANA_USERNAME": USERNAME, "KIBANA_PASSWORD": PASSWORD},
        )
    assert result.exit_code == 0, result.output
    assert stand_in.problems == []
    assert stand_in.calls() == [("POST", DETECTION_PATH), ("PUT", DETECTION_PATH)]
    assert [json.loads(request.body) for request in stand_in.requests] == [expected, expected]
    assert all(request.header("elastic-api-version") == "2023-10-31" for request in stand_in.requests)
    assert result.stderr.startswith(f"updated detection rule {DEFAULT_SECURITY_RULE_ID} in the default space")
    assert "is disabled; it would run every 5m" in result.stderr
    for secret in (PASSWORD, basic_header().removeprefix("Basic ")):
        assert secret not in result.output
        assert all(secret not in record.getMessage() for record in caplog.records)


FORBIDDEN_RULES = {
    "statusCode": 403,
    "error": "Forbidden",
    "message": "API [POST /api/detection_engine/rules] is unauthorized for user, this action is granted by "
    "the Kibana privileges [securitySolution-rules-all]",
}
NOT_READY = {"statusCode": 503, "error": "Service Unavailable", "message": "License is not available."}
INTERNAL = {"message": "An internal server error occurred", "status_code": 500}
REFUSED_RULE = {
    "message": "[request body]: investigation_fields: Expected object, received array",
    "status_code": 400,
}


@pytest.mark.parametrize(
    ("replies", "error", "message"),
    [
        (
            {("POST", DETECTION_PATH): Reply(401, UNAUTHORIZED)},
            KibanaAuthError,
            "Kibana refused the credentials (401: [security_exception]: unable to authenticate with provided "
            "credentials); check KIBANA_API_KEY or KIBANA_USERNAME/KIBANA_PASSWORD",
        ),
        (
            {("POST", DETECTION_PATH): Reply(403, FORBIDDEN_RULES)},
            KibanaAuthError,
            f"Kibana's user may not do creating the detection rule (403: {FORBIDDEN_RULES['message']}); "
            "it needs 'all' on the Security feature (rules) in the space, and 'read' and "
            "'view_index_metadata' on the results index, which the rule reads with the privileges of "
            "whoever installs it",
        ),
        (
            {
                ("POST", DETECTION_PATH): Reply(409, RULE_EXISTS),
                ("PUT", DETECTION_PATH): Reply(403, FORBIDDEN_RULES),
            },
            KibanaAuthError,
            "Kibana's user may not do updating the detection rule (403: ",
        ),
        (
            {("POST", DETECTION_PATH): Reply(503, NOT_READY)},
            KibanaUnavailableError,
            "answered 503 to creating the detection rule (License is not available.): it is starting, "
            "overloaded or behind a failing proxy; retry when its status page shows it available",
        ),
        (
            {("POST", DETECTION_PATH): Reply(500, INTERNAL)},
            KibanaError,
            "Kibana answered 500 to creating the detection rule: An internal server error occurred",
        ),
        (
            {("POST", DETECTION_PATH): Reply(400, REFUSED_RULE)},
            KibanaError,
            f"Kibana refused the detection rule (400: {REFUSED_RULE['message']})",
        ),
    ],
    ids=["401", "403", "403-on-update", "503", "500", "400"],
)
def test_refusals_of_the_detection_rule_are_clear_errors_without_secrets(replies, error, message, caplog):
    """Each answer becomes the project's error with what to fix; the command exits 1 with that message and
    neither it nor any log record holds the password."""
    caplog.set_level(logging.DEBUG)
    env = {"KIBANA_USERNAME": USERNAME, "KIBANA_PASSWORD": PASSWORD}
    rule = render_security_rule()
    with kibana_stand_in(replies, authorization=basic_header()) as stand_in:
        with pytest.raises(error) as raised:
            KibanaClient(connection(stand_in.url, **env)).put_detection_rule(rule)
        result = run(security_rule_command, ["--kibana-url", stand_in.url], env)
    assert type(raised.value) is error
    assert message in raised.value.message
    assert stand_in.problems == []
    assert result.exit_code == 1
    assert result.output == f"error: {raised.value.message}\n"
    for secret in (PASSWORD, basic_header().removeprefix("Basic ")):
        assert secret not in result.output
        assert all(secret not in record.getMessage() for record in caplog.records)


def test_a_detection_rule_kibana_would_refuse_fails_at_the_stand_in():
    """The stand-in validates the rule with Kibana's schema: a wrong severity is answered 418 with the
    problem, so the tests above would catch a rendered rule Kibana refuses."""
    rule = {**render_security_rule(), "severity": "severe"}
    replies = {("POST", DETECTION_PATH): Reply(200, {"id": "a1b2"})}
    with (
        kibana_stand_in(replies, authorization=api_key_header()) as stand_in,
        pytest.raises(KibanaError, match="418"),
    ):
        KibanaClient(connection(stand_in.url)).put_detection_rule(rule)
    assert stand_in.problems == [
        "detection rule: $.severity: 'severe' is not one of ['low', 'medium', 'high', 'critical']"
    ]
