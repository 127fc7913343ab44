"""``connector setup watch``: render the hourly Watcher watch for one deployment and install it."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from connector.cli.options import service_credential_options
from connector.errors import ConnectorError
from connector.scheduling import (
    WATCH_ASSET,
    ServiceCredentials,
    ServiceEndpoint,
)
from connector.settings import ElasticsearchConnection
from connector.watcher import DEFAULT_WATCH_ID, install_watch, redacted_watch, render_watch

log = logging.getLogger(__name__)


@click.command("watch")
@click.option(
    "--service-url",
    required=True,
    metavar="URL",
    help="Where Elasticsearch reaches the webhook service, e.g. https://rcp.internal:8443.",
)
@service_credential_options
@click.option(
    "--index", metavar="PATTERN", help="Index the watch asks the service to read (default: its own)."
)
@click.option(
    "--use-case", "use_case", metavar="NAME", help="Use case to run (default: the service's first)."
)
@click.option("--watch-id", default=DEFAULT_WATCH_ID, show_default=True, help="Id of the stored watch.")
@click.option("--inactive", is_flag=True, help="Store the watch deactivated (activate it in Kibana later).")
@click.option(
    "--es-url", "es_url", metavar="URLS", help="Default: CONNECTOR_ES_URL (credentials: CONNECTOR_ES_*)."
)
@click.option(
    "--watch-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=WATCH_ASSET,
    show_default=True,
    help="The watch asset to fill in.",
)
@click.option("--dry-run", is_flag=True, help="Print the filled-in watch (password masked); install nothing.")
def watch_command(
    service_url: str,
    service_user: str | None,
    service_password: str | None,
    index: str | None,
    use_case: str | None,
    watch_id: str,
    inactive: bool,
    es_url: str | None,
    watch_file: Path,
    dry_run: bool,
) -> None:
    """Install the hourly Watcher watch that calls POST /api/v1/detect (needs Watcher: Gold or trial)."""
    try:
        endpoint = ServiceEndpoint.parse(service_url)
        credentials = ServiceCredentials.of(service_user, service_password)
        watch = render_watch(
            endpoint=endpoint,
            credentials=credentials,
            index=index,
            use_case=use_case,
            template_path=watch_file,
        )
        if dry_run:
            click.echo(json.dumps(redacted_watch(watch, credentials), indent=2, ensure_ascii=False))
            return
        if endpoint.scheme == "http":
            click.echo(
                "warning: the service URL is http://, so the basic credentials cross the network "
                "unencrypted; serve it behind TLS",
                err=True,
            )
        log.info("installing watch %s calling %s", watch_id, endpoint.detect_url)
        client = ElasticsearchConnection.from_env(url=es_url).client()
        try:
            response = install_watch(client, watch, watch_id=watch_id, active=not inactive)
        finally:
            client.close()
    except ConnectorError as error:
        click.echo(f"error: {error.message}", err=True)
        sys.exit(error.exit_code)
    verb = "created" if response.get("created") else "updated"
    click.echo(
        f"{verb} watch {response.get('_id', watch_id)} (version {response.get('_version')}, "
        f"{'inactive' if inactive else 'active'}): POST {endpoint.detect_url} every hour at minute 5",
        err=True,
    )
