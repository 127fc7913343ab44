"""``connector setup kibana``, ``kibana-connector`` and ``security-rule``: the Kibana installers' options."""

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
from connector.kibana.security_rule import DEFAULT_INTERVAL, DEFAULT_SECURITY_RULE_ID, render_security_rule
from connector.scheduling import (
    ServiceCredentials,
    ServiceEndpoint,
    redacted,
)
from connector.settings import DEFAULT_RESULTS_INDEX


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


@click.command("security-rule")
@KIBANA_URL_OPTION
@SPACE_OPTION
@click.option(
    "--results-index",
    default=DEFAULT_RESULTS_INDEX,
    show_default=True,
    metavar="NAME",
    help="The connector's results index; the rule reads NAME* (rollover indices included).",
)
@click.option(
    "--rule-id",
    default=DEFAULT_SECURITY_RULE_ID,
    show_default=True,
    help="rule_id of the detection rule (running again updates the rule with this id).",
)
@click.option(
    "--interval",
    default=DEFAULT_INTERVAL,
    show_default=True,
    metavar="DURATION",
    help="How often the rule runs (<number><s|m|h|d>, at least 1m); each run looks back 2m further.",
)
@click.option(
    "--enabled/--disabled", default=True, show_default=True, help="Whether the rule runs once installed."
)
@CA_CERTS_OPTION
@TIMEOUT_OPTION
@click.option("--dry-run", is_flag=True, help="Print the rule as it would be sent; send nothing.")
def security_rule_command(
    kibana_url: str,
    space: str | None,
    results_index: str,
    rule_id: str,
    interval: str,
    enabled: bool,
    ca_certs: str | None,
    timeout: float,
    dry_run: bool,
) -> None:
    """Create or update the Elastic Security rule that raises an alert for each finding in the results index.

    A custom query rule of Kibana's detection engine: it works on a Basic licence.
    """
    try:
        connection = KibanaConnection.from_env(
            url=kibana_url, space=space, ca_certs=ca_certs, timeout_seconds=timeout
        )
        rule = render_security_rule(
            results_index=results_index, rule_id=rule_id, interval=interval, enabled=enabled
        )
        if dry_run:
            click.echo(json.dumps(rule, indent=2, ensure_ascii=False))
            return
        result = KibanaClient(connection).put_detection_rule(rule)
    except ConnectorError as error:
        fail(error)
        return
    where = f"space {connection.space}" if connection.space else "the default space"
    state = "runs" if enabled else "is disabled; it would run"
    click.echo(
        f"{result} detection rule {rule_id} in {where} of {connection.url}: {state} every {interval} "
        f"over {', '.join(rule['index'])} ({rule['query']})",
        err=True,
    )
