"""The scheduling assets (Watcher watch, Kibana connector and rules) filled in for one deployment.

The assets in ``kibana_saved_objects/`` are reviewed JSON files with ``${NAME}`` placeholders where a
deployment differs: the service's scheme, host, port and path prefix, and its basic credentials. Mustache
(``{{...}}``) is left alone: Watcher and Kibana render it at run time. Placeholders are filled in the
parsed JSON, never by editing text, so a value with a quote cannot change the document's structure, and
a document with a placeholder left over is refused instead of being installed half configured.

Secrets travel as :class:`~connector.settings.Secret` until the one place that builds the request; the
:func:`redacted` copy is what may be printed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connector.errors import ConfigError
from connector.settings import Secret


def _assets_dir() -> Path:
    """The reviewed assets: ``kibana_saved_objects/`` of a clone, or its copy inside an installed wheel."""
    packaged = Path(__file__).resolve().parent / "assets"  # pyproject.toml maps them there
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / "kibana_saved_objects"


#: Where the reviewed assets live (next to the saved-objects bundle).
ASSETS_DIR = _assets_dir()
WATCH_ASSET = ASSETS_DIR / "watch-rare-child.json"
KIBANA_CONNECTOR_ASSET = ASSETS_DIR / "kibana-connector-webhook.json"
KIBANA_RULE_ASSET = ASSETS_DIR / "kibana-rule-rare-child.json"
SECURITY_RULE_ASSET = ASSETS_DIR / "security-rule-rare-child.json"
DETECT_PATH = "/api/v1/detect"
REDACTED = "**********"
#: Loggers of the Elasticsearch client that write request bodies (``elastic_transport.node`` at DEBUG).
CLIENT_BODY_LOGGERS = ("elastic_transport.node", "elastic_transport.transport")

_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
# A path prefix (reverse proxy) goes into Watcher's Mustache ``path`` template and Kibana's URL:
# unreserved URL characters and "/" only, so it can neither open a template tag nor need escaping.
_PATH_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)*")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class ServiceEndpoint:
    """Where the webhook service listens, as Watcher's webhook action wants it: separate parts."""

    scheme: str
    host: str
    port: int
    path_prefix: str = ""

    @classmethod
    def parse(cls, url: str, *, option: str = "--service-url") -> ServiceEndpoint:
        """Split ``https://rcp.internal:8443[/prefix]``; a missing port is the scheme's default.

        :raises ConfigError: naming ``option`` when the URL has no http(s) scheme or host, carries
            credentials, a query or a fragment, or a path prefix with characters a template could misread.
        """
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as error:
            raise ConfigError(f"{url!r} is not a URL ({error})", option=option) from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ConfigError(
                f"{url!r} is not an http:// or https:// URL with a host, e.g. https://rcp.internal:8443",
                option=option,
            )
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                "must not contain credentials; give them with --service-user/--service-password "
                "(or CONNECTOR_BASIC_USER/CONNECTOR_BASIC_PASSWORD)",
                option=option,
            )
        if parts.query or parts.fragment:
            raise ConfigError("must not have a query string or fragment; give the base URL", option=option)
        prefix = parts.path.rstrip("/")
        if prefix.endswith(DETECT_PATH):
            prefix = prefix[: -len(DETECT_PATH)]
        if not _PATH_PREFIX.fullmatch(prefix):
            raise ConfigError(
                f"path {parts.path!r} may only hold letters, digits, '.', '_', '~', '-' and '/'",
                option=option,
            )
        if port == 0:
            raise ConfigError("port 0 is not a port", option=option)
        return cls(scheme, parts.hostname, port or _DEFAULT_PORTS[scheme], prefix)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path_prefix}"

    @property
    def detect_url(self) -> str:
        return self.base_url + DETECT_PATH


@dataclass(frozen=True)
class ServiceCredentials:
    """The HTTP basic credentials the service accepts (``CONNECTOR_BASIC_USER``/``_PASSWORD``)."""

    user: str
    password: Secret

    @classmethod
    def of(cls, user: str | None, password: str | None) -> ServiceCredentials:
        """Both or neither were given on the command line; neither is an error too (auth is on by default).

        :raises ConfigError: naming the missing option, or a user name HTTP basic auth cannot carry.
        """
        if not user or not password:
            missing = "--service-password" if user else "--service-user"
            raise ConfigError(
                "the service requires credentials: give --service-user and --service-password "
                "(or set CONNECTOR_BASIC_USER and CONNECTOR_BASIC_PASSWORD, as for the service itself)",
                option=missing,
            )
        if ":" in user:
            raise ConfigError("must not contain ':' (HTTP basic auth splits on it)", option="--service-user")
        return cls(user, Secret(password))


def load_asset(path: Path) -> dict[str, Any]:
    """One JSON asset, as a dict.

    :raises ConfigError: naming the file when it is missing or is not a JSON object.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            "not found; run from a checkout of the project or pass the asset's path", path=path
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot be read as JSON: {error}", path=path) from None
    if not isinstance(document, dict):
        raise ConfigError("must hold one JSON object", path=path)
    return document


def fill_placeholders(document: Any, values: Mapping[str, str | int | Secret], *, source: Path) -> Any:
    """A copy of ``document`` with every ``${NAME}`` replaced.

    A string that is exactly one placeholder takes the value's own type (an ``int`` port stays a
    number); inside a longer string the value is inserted as text. :class:`Secret` values are revealed
    here, into the copy only.

    :raises ConfigError: naming the file and the placeholder when a name has no value.
    """

    def text_of(name: str) -> str | int:
        if name not in values:
            known = ", ".join(sorted(values))
            raise ConfigError(f"unknown placeholder ${{{name}}}; this installer fills {known}", path=source)
        value = values[name]
        return value.reveal() if isinstance(value, Secret) else value

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: fill(value) for key, value in node.items()}
        if isinstance(node, list):
            return [fill(value) for value in node]
        if isinstance(node, str):
            whole = _PLACEHOLDER.fullmatch(node)
            if whole:
                return text_of(whole.group(1))
            return _PLACEHOLDER.sub(lambda match: str(text_of(match.group(1))), node)
        return node

    return fill(document)


def placeholders_left(document: Any) -> list[str]:
    """The ``${NAME}`` placeholders still in ``document`` (a filled asset must have none)."""
    return sorted(set(_PLACEHOLDER.findall(json.dumps(document))))


def detection_body(template: str, *, index: str | None, use_case: str | None, source: Path) -> str:
    """The Mustache body of a scheduled call, with the optional ``index``/``use_case`` added.

    The body template is itself a JSON object whose strings hold Mustache tags, so the fields are
    added to the parsed object rather than spliced into text. Values may not contain ``{{`` or
    ``}}``: Watcher and Kibana would treat them as template tags.

    :raises ConfigError: when the template is not a JSON object, or a value holds template braces.
    """
    try:
        body = json.loads(template)
    except json.JSONDecodeError as error:
        raise ConfigError(f"the detection body is not a JSON object ({error})", path=source) from None
    if not isinstance(body, dict):
        raise ConfigError("the detection body is not a JSON object", path=source)
    for option, value in (("--index", index), ("--use-case", use_case)):
        if value is not None and ("{{" in value or "}}" in value):
            raise ConfigError("must not contain '{{' or '}}' (Mustache tags)", option=option)
    if index is not None:
        body["index"] = index
    if use_case is not None:
        body["use_case"] = use_case
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def redacted(document: Any, secrets: tuple[Secret, ...]) -> Any:
    """A copy of ``document`` in which every string equal to, or containing, a secret is masked."""
    values = [secret.reveal() for secret in secrets if secret.reveal()]

    def mask(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: mask(value) for key, value in node.items()}
        if isinstance(node, list):
            return [mask(value) for value in node]
        if isinstance(node, str) and any(value in node for value in values):
            return REDACTED
        return node

    return mask(document)


def secrets_in(document: Any) -> tuple[Secret, ...]:
    """Every ``password`` value in ``document`` (Watcher's ``auth.basic.password``, Kibana's ``secrets``)."""
    found: list[Secret] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "password" and isinstance(value, str) and value:
                    found.append(Secret(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return tuple(found)


class _MaskSecrets(logging.Filter):
    """Rewrites a record whose message holds a secret, so that only the mask reaches any handler."""

    def __init__(self, secrets: tuple[Secret, ...]) -> None:
        super().__init__()
        self._values = [secret.reveal() for secret in secrets if secret.reveal()]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(value in message for value in self._values):
            for value in self._values:
                message = message.replace(value, REDACTED)
            record.msg, record.args = message, None
        return True


@contextmanager
def secrets_masked_in_client_logs(secrets: tuple[Secret, ...]) -> Iterator[None]:
    """While a request carries ``secrets`` in its body, mask them in the Elasticsearch client's own logs.

    ``elastic_transport.node`` logs whole request bodies at DEBUG (``connector -vv``), and the body of
    ``PUT _watcher/watch`` holds the service password. Logger filters run where the record is created,
    so the filter is put on the emitting loggers themselves, and removed afterwards.
    """
    mask = _MaskSecrets(secrets)
    loggers = [logging.getLogger(name) for name in CLIENT_BODY_LOGGERS]
    for logger in loggers:
        logger.addFilter(mask)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(mask)
