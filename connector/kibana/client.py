"""A small Kibana API client for the installers: saved-objects import, the webhook connector and its rule,
and the Elastic Security detection rule.

Standard library only (``urllib``): the service does not need an HTTP client library, and the installer
should not add one. Each call is one bounded request (a timeout, no retries, no redirects: a redirect
usually means a login page or a missing ``server.basePath``, and following it could hand the
``Authorization`` header to another host). TLS certificates are verified; ``--ca-certs`` adds a CA.

Kibana's answers are reported as they are documented (docs/formats.md §5): an import answers
200 even when objects fail, so :class:`ImportReport` lists each object's success or error and the
installer exits non-zero unless ``success`` is true and every object was written.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from connector import __version__
from connector.errors import (
    ConfigError,
    KibanaAuthError,
    KibanaError,
    KibanaUnavailableError,
    SavedObjectsImportError,
)
from connector.scheduling import ASSETS_DIR
from connector.settings import Secret

log = logging.getLogger(__name__)

DEFAULT_BUNDLE = ASSETS_DIR / "rare-child-connector.ndjson"
DEFAULT_TIMEOUT_SECONDS = 60.0
_SPACE_ID = re.compile(r"[a-z0-9_-]+")
_OBJECT_ID = re.compile(r"[A-Za-z0-9._-]+")
_MAX_MESSAGE_CHARS = 500
DETECTION_RULES_PATH = "/api/detection_engine/rules"
#: The detection engine's public routes are versioned; 2023-10-31 is the only version of this one (8.11+).
DETECTION_ENGINE_HEADERS = {"elastic-api-version": "2023-10-31"}
_FORBIDDEN = (
    "it needs 'all' on Saved Objects Management (import) or on Actions and Connectors and Stack Rules "
    "(connector, rule) in the space, and the Webhook connector needs a Gold licence"
)
_DETECTION_REFUSED = "Kibana refused the detection rule"
_DETECTION_FORBIDDEN = (
    "it needs 'all' on the Security feature (rules) in the space, and 'read' and 'view_index_metadata' on "
    "the results index, which the rule reads with the privileges of whoever installs it"
)


@dataclass(frozen=True, kw_only=True)
class KibanaConnection:
    """How to reach Kibana: base URL (with any ``server.basePath``), space, credentials, TLS trust."""

    url: str
    space: str | None = None
    api_key: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    ca_certs: str | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] = os.environ,
        *,
        url: str,
        space: str | None = None,
        ca_certs: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> KibanaConnection:
        """Credentials from ``KIBANA_API_KEY`` or ``KIBANA_USERNAME``/``KIBANA_PASSWORD`` (never from argv).

        :raises ConfigError: naming the option or variable that is wrong.
        """
        base = url.strip().rstrip("/")
        try:
            parts = urlsplit(base)
            parts.port  # noqa: B018 (parsing the port is the check)
        except ValueError as error:
            raise ConfigError(f"{url!r} is not a URL ({error})", option="--kibana-url") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{url!r} is not an http:// or https:// URL, e.g. https://kibana.internal:5601",
                option="--kibana-url",
            )
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                "must not contain credentials; set KIBANA_API_KEY or KIBANA_USERNAME/KIBANA_PASSWORD",
                option="--kibana-url",
            )
        if parts.query or parts.fragment:
            raise ConfigError("must not have a query string or fragment", option="--kibana-url")
        if space is not None and not _SPACE_ID.fullmatch(space):
            raise ConfigError(
                f"{space!r} is not a space id (lowercase letters, digits, '_' and '-')", option="--space"
            )
        if ca_certs is not None:
            if not Path(ca_certs).is_file():
                raise ConfigError(f"{ca_certs!r} is not a file; give a PEM CA bundle", option="--ca-certs")
            if parts.scheme.lower() != "https":
                raise ConfigError("a CA certificate needs an https:// Kibana URL", option="--ca-certs")
        api_key = (environ.get("KIBANA_API_KEY") or "").strip() or None
        username = (environ.get("KIBANA_USERNAME") or "").strip() or None
        password = environ.get("KIBANA_PASSWORD") or None
        if api_key is not None and (username is not None or password is not None):
            raise ConfigError(
                "set either an API key or KIBANA_USERNAME/KIBANA_PASSWORD, not both", option="KIBANA_API_KEY"
            )
        if (username is None) != (password is None):
            missing = "KIBANA_PASSWORD" if password is None else "KIBANA_USERNAME"
            raise ConfigError("set KIBANA_USERNAME and KIBANA_PASSWORD together", option=missing)
        return cls(
            url=base,
            space=None if space in (None, "default") else space,
            api_key=Secret(api_key) if api_key is not None else None,
            username=username,
            password=Secret(password) if password is not None else None,
            ca_certs=ca_certs,
            timeout_seconds=timeout_seconds,
        )

    def api_url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        """``<url>[/s/<space>]<path>[?query]``: Kibana addresses a space by a path prefix."""
        space = f"/s/{quote(self.space, safe='')}" if self.space else ""
        return f"{self.url}{space}{path}" + (f"?{urlencode(query)}" if query else "")

    def authorization(self) -> str | None:
        if self.api_key is not None:
            return f"ApiKey {self.api_key.reveal()}"
        if self.username is not None and self.password is not None:
            pair = f"{self.username}:{self.password.reveal()}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        return None


@dataclass(frozen=True)
class KibanaResponse:
    status: int
    body: Any
    text: str


@dataclass(frozen=True)
class ImportedObject:
    type: str
    id: str
    title: str
    destination_id: str | None = None
    overwrite: bool = False

    def describe(self) -> str:
        moved = f" as {self.destination_id}" if self.destination_id else ""
        replaced = " (replaced the existing one)" if self.overwrite else ""
        return f"imported {self.type}:{self.id}{moved} {self.title!r}{replaced}"


@dataclass(frozen=True)
class RejectedObject:
    type: str
    id: str
    title: str
    error_type: str
    reason: str

    def describe(self) -> str:
        return f"rejected {self.type}:{self.id} {self.title!r}: {self.error_type}: {self.reason}"


@dataclass(frozen=True)
class ImportReport:
    """Kibana's answer to one import, object by object."""

    success: bool
    success_count: int
    expected_count: int
    imported: tuple[ImportedObject, ...]
    rejected: tuple[RejectedObject, ...]
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Done only if Kibana says so AND every object of the file was written (docs/formats.md §5)."""
        return self.success and not self.rejected and self.success_count == self.expected_count

    def raise_for_errors(self) -> None:
        """:raises SavedObjectsImportError: naming every rejected object, unless the import is :attr:`ok`."""
        if self.ok:
            return
        if self.rejected:
            names = ", ".join(f"{item.type}:{item.id} ({item.error_type})" for item in self.rejected)
            written = (
                "Kibana wrote none of them"
                if self.success_count == 0
                else f"{self.success_count} object(s) were written"
            )
            message = (
                f"Kibana rejected {len(self.rejected)} of {self.expected_count} object(s): {names}; {written}"
            )
        else:
            message = (
                f"Kibana reported success={str(self.success).lower()} with {self.success_count} of "
                f"{self.expected_count} object(s) written and no error; check Kibana's log"
            )
        raise SavedObjectsImportError(
            message,
            details=[
                {
                    "type": item.type,
                    "id": item.id,
                    "title": item.title,
                    "error": item.error_type,
                    "reason": item.reason,
                }
                for item in self.rejected
            ],
        )


class KibanaClient:
    """One Kibana, one space, one set of credentials; every call is a single bounded request."""

    def __init__(self, connection: KibanaConnection) -> None:
        self.connection = connection
        context = ssl.create_default_context(cafile=connection.ca_certs)
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context), _NoRedirects()
        )

    # -- saved objects ---------------------------------------------------------------------------

    def import_saved_objects(self, path: Path, *, overwrite: bool = True) -> ImportReport:
        """``POST [/s/<space>]/api/saved_objects/_import?overwrite=...`` with the NDJSON file as ``file``.

        :raises ConfigError: the file is not ``*.ndjson`` or has a line that is not a JSON object.
        :raises KibanaError: and subclasses, when Kibana refuses the whole request or cannot be reached.
        """
        expected = count_saved_objects(path)
        data = path.read_bytes()
        boundary = f"rare-child-{uuid.uuid4().hex}"
        filename = path.name.replace('"', "_")
        body = b"".join(
            [
                f"--{boundary}\r\n".encode(),
                f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode(),
                b"Content-Type: application/ndjson\r\n\r\n",
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        response = self._send(
            "POST",
            "/api/saved_objects/_import",
            query={"overwrite": "true" if overwrite else "false"},
            data=body,
            content_type=f"multipart/form-data; boundary={boundary}",
        )
        self._check(response, "the saved-objects import", bad_request="Kibana refused the file")
        if not isinstance(response.body, Mapping) or "success" not in response.body:
            raise KibanaError(f"Kibana's import answer has no 'success' field: {_shorten(response.text)}")
        return import_report(response.body, expected_count=expected)

    # -- alerting --------------------------------------------------------------------------------

    def put_connector(self, connector_id: str, definition: Mapping[str, Any]) -> str:
        """Create the connector with this id, or update it; returns ``"created"`` or ``"updated"``.

        Update (``PUT``) takes only ``name``, ``config`` and ``secrets``; create (``POST``) also the type.
        """
        path = f"/api/actions/connector/{_object_id(connector_id, '--connector-id')}"
        existing = self._send("GET", path)
        if existing.status == 404:
            self._check(self._send("POST", path, json_body=dict(definition)), "creating the connector")
            return "created"
        self._check(existing, "reading the connector")
        self._same_type(existing.body, "connector_type_id", definition.get("connector_type_id"), connector_id)
        update = {key: definition[key] for key in ("name", "config", "secrets") if key in definition}
        self._check(self._send("PUT", path, json_body=update), "updating the connector")
        return "updated"

    def put_rule(self, rule_id: str, definition: Mapping[str, Any]) -> str:
        """Create the rule with this id, or update it; returns ``"created"`` or ``"updated"``.

        Update (``PUT``) refuses ``rule_type_id``, ``consumer`` and ``enabled``, so they are left out.
        """
        path = f"/api/alerting/rule/{_object_id(rule_id, '--rule-id')}"
        existing = self._send("GET", path)
        if existing.status == 404:
            self._check(self._send("POST", path, json_body=dict(definition)), "creating the rule")
            return "created"
        self._check(existing, "reading the rule")
        self._same_type(existing.body, "rule_type_id", definition.get("rule_type_id"), rule_id)
        update_keys = ("name", "tags", "schedule", "params", "actions", "throttle", "notify_when")
        update = {key: definition[key] for key in update_keys if key in definition}
        self._check(self._send("PUT", path, json_body=update), "updating the rule")
        return "updated"

    # -- the detection engine (Elastic Security) --------------------------------------------------

    def put_detection_rule(self, definition: Mapping[str, Any]) -> str:
        """Create the detection rule, or replace it when its ``rule_id`` exists; ``"created"``/``"updated"``.

        ``POST /api/detection_engine/rules`` answers 409 for a ``rule_id`` that exists; ``PUT`` on the same
        path then replaces that rule with the same body (it finds the rule by the body's ``rule_id``).
        """
        if not isinstance(definition.get("rule_id"), str) or not definition["rule_id"]:
            raise ConfigError("the detection rule has no rule_id, so it could not be updated later")
        body = dict(definition)
        created = self._send("POST", DETECTION_RULES_PATH, json_body=body, headers=DETECTION_ENGINE_HEADERS)
        if created.status != 409:
            self._check(
                created,
                "creating the detection rule",
                bad_request=_DETECTION_REFUSED,
                forbidden=_DETECTION_FORBIDDEN,
            )
            return "created"
        updated = self._send("PUT", DETECTION_RULES_PATH, json_body=body, headers=DETECTION_ENGINE_HEADERS)
        self._check(
            updated,
            "updating the detection rule",
            bad_request=_DETECTION_REFUSED,
            forbidden=_DETECTION_FORBIDDEN,
        )
        return "updated"

    # -- transport -------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> KibanaResponse:
        url = self.connection.api_url(path, query)
        headers = {
            "kbn-xsrf": "rare-child-connector",
            "Accept": "application/json",
            "User-Agent": f"rare-child-connector/{__version__}",
            **(headers or {}),
        }
        if json_body is not None:
            data = json.dumps(json_body).encode()
            content_type = "application/json"
        if content_type is not None:
            headers["Content-Type"] = content_type
        authorization = self.connection.authorization()
        if authorization is not None:
            headers["Authorization"] = authorization
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        log.debug("%s %s", method, url)
        try:
            with self._opener.open(request, timeout=self.connection.timeout_seconds) as answer:
                return _response(answer.status, answer.read())
        except urllib.error.HTTPError as error:
            with error:
                if 300 <= error.code < 400:
                    location = error.headers.get("Location", "?")
                    raise KibanaUnavailableError(
                        f"Kibana at {self.connection.url} answered {method} {path} with a redirect to "
                        f"{location}; give Kibana's base URL, including its server.basePath"
                    ) from None
                return _response(error.code, error.read())
        except urllib.error.URLError as error:
            raise self._unreachable(error.reason) from None
        except (TimeoutError, ConnectionError, ssl.SSLError) as error:
            raise self._unreachable(error) from None

    def _unreachable(self, reason: object) -> KibanaUnavailableError:
        url = self.connection.url
        if isinstance(reason, ssl.SSLCertVerificationError):
            return KibanaUnavailableError(
                f"TLS verification of Kibana at {url} failed ({reason.verify_message}); pass --ca-certs "
                "with the CA that signed its certificate"
            )
        if isinstance(reason, TimeoutError):
            return KibanaUnavailableError(
                f"Kibana at {url} did not answer within {self.connection.timeout_seconds:g} s"
            )
        if isinstance(reason, ConnectionRefusedError):
            return KibanaUnavailableError(
                f"Kibana at {url} refused the connection; check --kibana-url and that Kibana is running"
            )
        if isinstance(reason, socket.gaierror):
            return KibanaUnavailableError(
                f"the host of {url} cannot be resolved ({reason}); check --kibana-url"
            )
        return KibanaUnavailableError(f"Kibana at {url} is unreachable ({reason})")

    def _check(
        self,
        response: KibanaResponse,
        what: str,
        *,
        bad_request: str | None = None,
        forbidden: str = _FORBIDDEN,
    ) -> None:
        status = response.status
        if 200 <= status < 300:
            if response.body is None:
                raise KibanaUnavailableError(
                    f"{self.connection.url} answered {what} with something that is not JSON "
                    f"({_shorten(response.text)}); is it Kibana's base URL?"
                )
            return
        message = _kibana_message(response)
        if status == 401:
            raise KibanaAuthError(
                f"Kibana refused the credentials (401: {message}); check KIBANA_API_KEY "
                "or KIBANA_USERNAME/KIBANA_PASSWORD"
            )
        if status == 403:
            raise KibanaAuthError(f"Kibana's user may not do {what} (403: {message}); {forbidden}")
        if status == 404:
            raise KibanaError(
                f"Kibana answered 404 to {what} ({message}); check that space "
                f"{self.connection.space or 'default'!r} exists and that --kibana-url is Kibana's base URL"
            )
        if status == 400 and bad_request is not None:
            raise KibanaError(f"{bad_request} (400: {message})")
        if status in (502, 503, 504):
            raise KibanaUnavailableError(
                f"Kibana at {self.connection.url} answered {status} to {what} ({message}): it is starting, "
                "overloaded or behind a failing proxy; retry when its status page shows it available"
            )
        raise KibanaError(f"Kibana answered {status} to {what}: {message}")

    @staticmethod
    def _same_type(existing: Any, key: str, wanted: Any, object_id: str) -> None:
        found = existing.get(key) if isinstance(existing, Mapping) else None
        if found is not None and wanted is not None and found != wanted:
            raise KibanaError(
                f"object {object_id} already exists with {key} {found!r}, not {wanted!r}; "
                "pass another id (--connector-id/--rule-id) or delete it"
            )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Turn every 3xx into an :class:`~urllib.error.HTTPError` instead of following it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _response(status: int, raw: bytes) -> KibanaResponse:
    text = raw.decode("utf-8", errors="replace")
    try:
        body = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        body = None
    return KibanaResponse(status, body, text)


def _kibana_message(response: KibanaResponse) -> str:
    """Kibana's errors are ``{"statusCode", "error", "message"}``; fall back to the raw text."""
    if isinstance(response.body, Mapping):
        message = response.body.get("message") or response.body.get("error")
        if message:
            return _shorten(str(message))
    return _shorten(response.text) or "no message"


def _shorten(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_MESSAGE_CHARS else flat[: _MAX_MESSAGE_CHARS - 3] + "..."


def _object_id(value: str, option: str) -> str:
    if not _OBJECT_ID.fullmatch(value):
        raise ConfigError(f"{value!r} is not an id; use letters, digits, '.', '_' and '-'", option=option)
    return value


def count_saved_objects(path: Path) -> int:
    """The number of objects in an NDJSON bundle (blank lines and an export summary line do not count).

    :raises ConfigError: naming the file (and line) when Kibana would refuse it: another extension, or a
        line that is not a JSON object (Kibana then refuses the whole file).
    """
    if path.suffix != ".ndjson":
        raise ConfigError("Kibana imports only files whose name ends in .ndjson", path=path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot be read: {error}", path=path) from None
    objects = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"line {number} is not JSON ({error.msg})", path=path) from None
        if not isinstance(document, dict):
            raise ConfigError(f"line {number} is not a JSON object", path=path)
        if "exportedCount" not in document:  # the optional export summary line is not an object
            objects += 1
    return objects


def import_report(body: Mapping[str, Any], *, expected_count: int) -> ImportReport:
    """Read Kibana's import answer: ``success``, ``successCount``, ``successResults``, ``errors``."""
    imported = tuple(
        ImportedObject(
            type=str(item.get("type", "?")),
            id=str(item.get("id", "?")),
            title=_title(item),
            destination_id=item.get("destinationId"),
            overwrite=bool(item.get("overwrite", False)),
        )
        for item in body.get("successResults") or []
        if isinstance(item, Mapping)
    )
    rejected = tuple(
        RejectedObject(
            type=str(item.get("type", "?")),
            id=str(item.get("id", "?")),
            title=_title(item),
            error_type=str((item.get("error") or {}).get("type", "unknown")),
            reason=_error_reason(item.get("error") or {}),
        )
        for item in body.get("errors") or []
        if isinstance(item, Mapping)
    )
    warnings = tuple(
        str(warning.get("message", warning)) if isinstance(warning, Mapping) else str(warning)
        for warning in body.get("warnings") or []
    )
    return ImportReport(
        success=body.get("success") is True,
        success_count=int(body.get("successCount") or 0),
        expected_count=expected_count,
        imported=imported,
        rejected=rejected,
        warnings=warnings,
    )


def _title(item: Mapping[str, Any]) -> str:
    meta = item.get("meta")
    if isinstance(meta, Mapping) and meta.get("title"):
        return str(meta["title"])
    return str(item.get("title") or "")


def _error_reason(error: Mapping[str, Any]) -> str:
    """What to do about one rejected object, by Kibana's error type."""
    kind = error.get("type")
    if kind == "conflict":
        return "an object with this id exists; import again with --overwrite to replace it"
    if kind == "ambiguous_conflict":
        destinations = ", ".join(
            str(item.get("id")) for item in error.get("destinations") or [] if isinstance(item, Mapping)
        )
        return f"matches several existing objects ({destinations or 'ids not given'}); resolve it in Kibana"
    if kind == "missing_references":
        references = ", ".join(
            f"{item.get('type')}:{item.get('id')}"
            for item in error.get("references") or []
            if isinstance(item, Mapping)
        )
        return f"references objects neither in the file nor in the space: {references or '?'}"
    if kind == "unsupported_type":
        return "this Kibana does not know the type (a disabled plugin or an older version)"
    details = error.get("message") or error.get("error") or json.dumps(dict(error), sort_keys=True)
    status = error.get("statusCode")
    return f"{details} (status {status})" if status else str(details)
