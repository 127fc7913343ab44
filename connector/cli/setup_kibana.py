"""``connector setup kibana`` and ``connector setup kibana-connector``: the Kibana installers' options."""

from __future__ import annotations

import json
from pathlib import Path

import click

from connector.cli.options import (
    CA_CERTS_OPTION,
    KIBANA_URL_OPTION,
    SPACE_OPTION,
    TIMEOUT_OPTION,
    fail,
    service_credential_options,
)
from connector.errors import (
    ConnectorError,
    SavedObjectsImportError,
)
from connector.kibana.alerting import (
    DEFAULT_CONNECTOR_ID,
    DEFAULT_RULE_ID,
    DEFAULT_RULE_INDEX,
    render_connector,
    render_rule,
)
from connector.kibana.client import DEFAULT_BUNDLE, KibanaClient, KibanaConnection
from connector.scheduling import (
    ServiceCredentials,
    ServiceEndpoint,
    redacted,
)


@click.command("kibana")
@KIBANA_URL_OPTION
@SPACE_OPTION
@click.option(
    "--overwrite/--no-overwrite",
    default=True,
    show_default=True,
    help="Replace objects that already exist (without it, an existing object is a conflict and Kibana "
    "writes nothing).",
)
@click.option(
    "--file",
    "bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_BUNDLE,
    show_default=True,
    help="The NDJSON saved-objects bundle.",
)
@CA_CERTS_OPTION
@TIMEOUT_OPTION
def kibana_command(
    kibana_url: str, space: str | None, overwrite: bool, bundle: Path, ca_certs: str | None, timeout: float
) -> None:
    """Import the saved objects (data views, searches, visualizations, dashboard) into Kibana.

    Each object's result is printed; the exit code is 3 if Kibana rejected any of them.
    """
    try:
        connection = KibanaConnection.from_env(
            url=kibana_url, space=space, ca_certs=ca_certs, timeout_seconds=timeout
        )
        report = KibanaClient(connection).import_saved_objects(bundle, overwrite=overwrite)
    except ConnectorError as error:
        fail(error)
        return
    for item in report.imported:
        click.echo(item.describe(), err=True)
    for item in report.rejected:
        click.echo(f"error: {item.describe()}", err=True)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    try:
        report.raise_for_errors()
    except SavedObjectsImportError as error:
        fail(error)
        return
    where = f"space {connection.space}" if connection.space else "the default space"
    click.echo(f"imported {report.success_count} object(s) into {where} of {connection.url}", err=True)


@click.command("kibana-connector")
@KIBANA_URL_OPTION
@SPACE_OPTION
@click.option(
    "--service-url",
    required=True,
    metavar="URL",
    help="Where Kibana reaches the webhook service, e.g. https://rcp.internal:8443 (check "
    "xpack.actions.allowedHosts).",
)
@service_credential_options
@click.option("--connector-id", default=DEFAULT_CONNECTOR_ID, show_default=True, help="Id of the connector.")
@click.option(
    "--rule/--no-rule",
    "with_rule",
    default=True,
    show_default=True,
    help="Also create or update the hourly rule that calls the connector.",
)
@click.option("--rule-id", default=DEFAULT_RULE_ID, show_default=True, help="Id of the rule.")
@click.option(
    "--index",
    metavar="PATTERN",
    help=f"Index the detection reads and the rule counts (default: the service's own; the rule then counts "
    f"{DEFAULT_RULE_INDEX}).",
)
@click.option(
    "--use-case", "use_case", metavar="NAME", help="Use case to run (default: the service's first)."
)
@CA_CERTS_OPTION
@TIMEOUT_OPTION
@click.option("--dry-run", is_flag=True, help="Print the connector and rule (password masked); send nothing.")
def kibana_connector_command(
    kibana_url: str,
    space: str | None,
    service_url: str,
    service_user: str | None,
    service_password: str | None,
    connector_id: str,
    with_rule: bool,
    rule_id: str,
    index: str | None,
    use_case: str | None,
    ca_certs: str | None,
    timeout: float,
    dry_run: bool,
) -> None:
    """Create or update the Kibana Webhook connector for the service, and the hourly rule that calls it.

    For clusters without Watcher. Kibana's Webhook connector needs a Gold licence as well.
    """
    try:
        endpoint = ServiceEndpoint.parse(service_url)
        credentials = ServiceCredentials.of(service_user, service_password)
        connection = KibanaConnection.from_env(
            url=kibana_url, space=space, ca_certs=ca_certs, timeout_seconds=timeout
        )
        connector = render_connector(endpoint=endpoint, credentials=credentials)
        rule = render_rule(connector_id=connector_id, index=index, use_case=use_case) if with_rule else None
        if dry_run:
            shown = {"connector": redacted(connector, (credentials.password,)), "rule": rule}
            click.echo(json.dumps(shown, indent=2, ensure_ascii=False))
            return
        client = KibanaClient(connection)
        connector_result = client.put_connector(connector_id, connector)
        click.echo(f"{connector_result} connector {connector_id}: POST {endpoint.detect_url}", err=True)
        if rule is not None:
            rule_result = client.put_rule(rule_id, rule)
            click.echo(f"{rule_result} rule {rule_id}: calls connector {connector_id} every hour", err=True)
    except ConnectorError as error:
        fail(error)
