"""Options and error exit shared by the ``connector`` commands, so each is spelled and documented once."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from connector.errors import ConnectorError
from connector.kibana.client import DEFAULT_TIMEOUT_SECONDS


def fail(error: ConnectorError) -> None:
    click.echo(f"error: {error.message}", err=True)
    sys.exit(error.exit_code)


def service_credential_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--service-user`` / ``--service-password``: the basic credentials the service accepts."""
    command = click.option(
        "--service-password",
        envvar="CONNECTOR_BASIC_PASSWORD",
        metavar="SECRET",
        help="Its password (default: CONNECTOR_BASIC_PASSWORD; prefer the variable, argv is visible).",
    )(command)
    return click.option(
        "--service-user",
        envvar="CONNECTOR_BASIC_USER",
        metavar="NAME",
        help="Basic-auth user the service accepts (default: CONNECTOR_BASIC_USER).",
    )(command)


def _require_kibana_url(context: click.Context, parameter: click.Parameter, value: str | None) -> str:
    if not value:
        raise click.UsageError(
            "Missing option '--kibana-url': give Kibana's base URL with --kibana-url URL, or set KIBANA_URL "
            "(e.g. https://kibana.internal:5601)",
            ctx=context,
        )
    return value


KIBANA_URL_OPTION = click.option(
    "--kibana-url",
    envvar="KIBANA_URL",
    callback=_require_kibana_url,
    metavar="URL",
    help="Kibana's base URL with any server.basePath (default: KIBANA_URL). Credentials: KIBANA_API_KEY "
    "or KIBANA_USERNAME/KIBANA_PASSWORD.",
)
SPACE_OPTION = click.option(
    "--space", envvar="KIBANA_SPACE", metavar="ID", help="Kibana space id (default space if unset)."
)
CA_CERTS_OPTION = click.option(
    "--ca-certs",
    envvar="KIBANACA_CERTS_OPTION",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM CA bundle that signed Kibana's certificate (verification is always on).",
)
TIMEOUT_OPTION = click.option(
    "--timeout",
    type=click.FloatRange(1, 600),
    default=DEFAULT_TIMEOUT_SECONDS,
    show_default=True,
    help="Seconds to wait for each Kibana answer.",
)
