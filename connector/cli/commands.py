"""The ``connector`` command line: thin wrappers around the engine.

Exit codes: 0 ok, 1 operational error, 2 usage or configuration error, 3 some writes failed.
Results go to stdout,
messages and progress to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from elasticsearch import Elasticsearch

from connector import __version__
from connector.cli.options import fail
from connector.cli.setup_kibana import kibana_command, kibana_connector_command, security_rule_command
from connector.cli.setup_watch import watch_command
from connector.config import load_use_case
from connector.engine import (
    DEFAULT_RESULTS_INDEX,
    ElasticsearchDetection,
    detect_file_result,
    detect_in_elasticsearch,
)
from connector.errors import (
    ConnectorError,
    ElasticsearchTimeoutError,
    ElasticsearchTlsError,
    ElasticsearchUnavailableError,
)
from connector.knowledge import load_knowledge
from connector.loading import load_events
from connector.report import render_table
from connector.results import AnnotateMode, install_results_template, results_template_name
from connector.results.template import upgrade_results_mappings
from connector.service.catalog import load_catalog
from connector.service.serving import APP_FACTORY, GUNICORN_CONF, parse_bind, parse_workers
from connector.settings import ElasticsearchConnection, Settings
from connector.sources.ndjson import NdjsonSource
from connector.timerange import resolve_baseline, resolve_range

log = logging.getLogger(__name__)

EXIT_WRITES_FAILED = 3
CLI_MAX_RANGE_DAYS = 3660
DEFAULT_SOURCE_INDEX = "osquery-*"

_EXISTING_FILE = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="connector")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Rare child process detection (the ee-outliers terms model) for the Elastic stack."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        # The client logs every retry with a traceback; our own error message says what failed.
        logging.getLogger("elastic_transport").setLevel(logging.ERROR)


@main.command()
@click.option(
    "--config",
    "config_path",
    type=_EXISTING_FILE,
    required=True,
    help="INI use-case file (ee-outliers format).",
)
@click.option(
    "--events",
    "events_path",
    type=_EXISTING_FILE,
    help="NDJSON file: one Elasticsearch hit or one event document per line.",
)
@click.option(
    "--es-url",
    "es_url",
    metavar="URL[,URL...]",
    help="Detect over Elasticsearch instead of a file; several nodes of one cluster separated by ',' "
    "(credentials: CONNECTOR_ES_* variables).",
)
@click.option(
    "--index",
    metavar="PATTERN",
    help="With --es-url: index pattern; default: the use case's es_index, else osquery-*.",
)
@click.option(
    "--from",
    "range_from",
    default="now-7d",
    show_default=True,
    metavar="TIME",
    help="With --es-url: start of the range (ISO-8601 or date math).",
)
@click.option(
    "--to",
    "range_to",
    default="now",
    show_default=True,
    metavar="TIME",
    help="With --es-url: end of the range, exclusive.",
)
@click.option(
    "--baseline-from",
    "baseline_from",
    metavar="TIME",
    help="With --es-url: count from here too, but report only events in the range.",
)
@click.option(
    "--annotate",
    type=click.Choice([mode.value for mode in AnnotateMode]),
    default="none",
    show_default=True,
    help="With --es-url: write outliers to the results index or in place.",
)
@click.option(
    "--results-index",
    default=DEFAULT_RESULTS_INDEX,
    show_default=True,
    help="With --annotate results_index: where outliers are written.",
)
@click.option(
    "--use-case",
    "use_case",
    metavar="NAME",
    help="Section name (terms_...) or model name; default: the first use case in the file.",
)
@click.option(
    "--global-config",
    "global_config_path",
    type=_EXISTING_FILE,
    help="Optional ee-outliers global file: [general] defaults, [assets], global whitelists.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["json", "table"]),
    default="json",
    show_default=True,
    help="json: the documented contract; table: for people.",
)
def detect(
    config_path: Path,
    events_path: Path | None,
    es_url: str | None,
    index: str | None,
    range_from: str,
    range_to: str,
    baseline_from: str | None,
    annotate: str,
    results_index: str,
    use_case: str | None,
    global_config_path: Path | None,
    output_format: str,
) -> None:
    """Run a use case over an NDJSON file (--events) or Elasticsearch (--es-url); print its outliers.

    Both give the same JSON. Exit code 3 means some outliers could not be written.
    """
    if (events_path is None) == (es_url is None):
        raise click.UsageError("give exactly one of --events FILE or --es-url URL")
    if events_path is not None:
        contract = _detect_file(config_path, events_path, use_case, global_config_path)
        failed_writes = 0
    else:
        try:
            detection = _detect_elasticsearch(
                config_path,
                es_url or "",
                index,
                range_from,
                range_to,
                baseline_from,
                annotate,
                results_index,
                use_case,
                global_config_path,
            )
        except ConnectorError as error:
            fail(error)
        contract = detection.to_contract()
        failed_writes = detection.annotation.failed
        if detection.hint:
            click.echo(f"note: {detection.hint}", err=True)
        for item in detection.annotation.errors:
            click.echo(
                f"error: writing {item.get('_id')}: {item.get('type')}: {item.get('reason')}", err=True
            )
    if output_format == "json":
        click.echo(json.dumps(contract, ensure_ascii=False, indent=2))
    else:
        click.echo(render_table(contract), nl=False)
    if failed_writes:
        click.echo(f"error: {failed_writes} outlier(s) could not be written", err=True)
        sys.exit(EXIT_WRITES_FAILED)


def _detect_file(
    config_path: Path, events_path: Path, use_case: str | None, global_config_path: Path | None
) -> dict[str, Any]:
    progress = _terminal_progress(events_path) if sys.stderr.isatty() else None
    try:
        return detect_file_result(
            config_path=config_path,
            events_path=events_path,
            use_case=use_case,
            global_config_path=global_config_path,
            progress=progress,
        ).to_contract()
    except ConnectorError as error:
        fail(error)
        raise  # unreachable: fail exits
    finally:
        if progress:
            click.echo("\r\033[K", nl=False, err=True)


def _detect_elasticsearch(
    config_path: Path,
    es_url: str,
    index: str | None,
    range_from: str,
    range_to: str,
    baseline_from: str | None,
    annotate: str,
    results_index: str,
    use_case: str | None,
    global_config_path: Path | None,
) -> ElasticsearchDetection:
    selected = load_use_case(config_path, use_case, global_config_path=global_config_path)
    now = datetime.now(UTC)
    time_range = resolve_range(range_from, range_to, now=now, max_days=CLI_MAX_RANGE_DAYS, path="range")
    baseline = None
    if baseline_from is not None:
        baseline = resolve_baseline(
            baseline_from, time_range=time_range, now=now, max_days=CLI_MAX_RANGE_DAYS, path="baseline.from"
        )
    with _elasticsearch(es_url) as client:
        return detect_in_elasticsearch(
            client,
            selected,
            index=index or selected.es_index or DEFAULT_SOURCE_INDEX,
            time_range=time_range,
            baseline_start=baseline,
            annotate=AnnotateMode(annotate),
            results_index=results_index,
        )


@main.command()
@click.option(
    "--bind",
    metavar="HOST:PORT",
    help="Address to listen on (or unix:/PATH); default: CONNECTOR_BIND, else 127.0.0.1:8080.",
)
@click.option(
    "--workers",
    metavar="N",
    help="gunicorn worker processes (1-64); default: CONNECTOR_WORKERS, else 2.",
)
def serve(bind: str | None, workers: str | None) -> None:
    """Serve the webhook API with gunicorn; settings come from CONNECTOR_* environment variables.

    The settings and use-case files are checked first, so a misconfiguration exits with 2 and a
    message before gunicorn starts.
    """
    try:
        bind = parse_bind(bind or os.environ.get("CONNECTOR_BIND"))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--bind") from None
    try:
        worker_count = parse_workers(workers or os.environ.get("CONNECTOR_WORKERS"))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--workers") from None
    try:
        settings = Settings.from_env()
        load_catalog(settings.use_case_paths, settings.global_config_path)
    except ConnectorError as error:
        fail(error)
    environment = dict(os.environ, CONNECTOR_BIND=bind, CONNECTOR_WORKERS=str(worker_count))
    argv = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), APP_FACTORY]
    click.echo(f"starting gunicorn on {bind} with {worker_count} worker(s)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, environment)


@main.command()
@click.option(
    "--events",
    "events_path",
    type=_EXISTING_FILE,
    required=True,
    help="NDJSON file of hits or event documents (e.g. examples/sample-events.ndjson).",
)
@click.option("--index", required=True, metavar="NAME", help="Index to load them into.")
@click.option("--es-url", "es_url", metavar="URL[,URL...]", help="Default: CONNECTOR_ES_URL.")
def load(events_path: Path, index: str, es_url: str | None) -> None:
    """Index an NDJSON events file into Elasticsearch (ids kept), e.g. to try the service on the sample."""
    try:
        with _elasticsearch(es_url) as client:
            report = load_events(client, NdjsonSource(events_path).hits(), index=index)
    except ConnectorError as error:
        fail(error)
    click.echo(f"loaded {report.indexed:,} events into {index}", err=True)
    for item in report.errors:
        click.echo(f"error: {item}", err=True)
    if report.failed:
        click.echo(f"error: {report.failed} event(s) could not be indexed", err=True)
        sys.exit(EXIT_WRITES_FAILED)


@main.command("check-knowledge")
@click.argument("path", required=False, type=_EXISTING_FILE)
def check_knowledge(path: Path | None) -> None:
    """Validate a rarechild knowledge file (default: the shipped one) and say what it defines."""
    try:
        knowledge = load_knowledge(path)
    except ConnectorError as error:
        fail(error)
    members = sum(len(item.members) for item in knowledge.classes.values())
    click.echo(
        f"{knowledge.source}: valid; {len(knowledge.classes)} classes ({members} names), "
        f"{len(knowledge.rules)} rules, {len(knowledge.system_homes)} system binaries and their homes, "
        f"{len(knowledge.user_writable_patterns)} user-writable path patterns"
    )


@main.group()
def setup() -> None:
    """Install what the connector needs in Elasticsearch and Kibana (template, objects, schedule, alerts)."""


@setup.command("template")
@click.option(
    "--results-index",
    default=DEFAULT_RESULTS_INDEX,
    show_default=True,
    help="The results index the template is for.",
)
@click.option("--es-url", "es_url", metavar="URL[,URL...]", help="Default: CONNECTOR_ES_URL.")
def setup_template(results_index: str, es_url: str | None) -> None:
    """Install the results index template and add its fields to existing results indices (needs the
    manage_index_templates and the results indices' manage privileges)."""
    try:
        with _elasticsearch(es_url) as client:
            install_results_template(client, results_index)
            upgraded = upgrade_results_mappings(client, results_index)
    except ConnectorError as error:
        fail(error)
    click.echo(
        f"installed index template {results_template_name(results_index)} for {results_index}", err=True
    )
    for index in upgraded:
        click.echo(f"added the template's new fields to existing index {index}", err=True)


@contextmanager
def _elasticsearch(es_url: str | None) -> Iterator[Elasticsearch]:
    """A client from --es-url (else CONNECTOR_ES_URL) and the CONNECTOR_ES_* credentials, closed after."""
    connection = ElasticsearchConnection.from_env(url=es_url)
    client = connection.client()
    try:
        yield client
    except (ElasticsearchUnavailableError, ElasticsearchTimeoutError, ElasticsearchTlsError) as error:
        # Name the nodes, as set by --es-url or CONNECTOR_ES_URL (URLs never hold credentials).
        nodes = ", ".join(connection.urls)
        error.message = f"{error.message} (Elasticsearch at {nodes}, from --es-url or CONNECTOR_ES_URL)"
        raise
    finally:
        client.close()


def _terminal_progress(events_path: Path):  # type: ignore[no-untyped-def]
    total = max(events_path.stat().st_size, 1)

    def report(lines: int, bytes_read: int) -> None:
        click.echo(
            f"\rreading {events_path.name}: {lines:,} lines ({100 * bytes_read // total}%)",
            nl=False,
            err=True,
        )

    return report


setup.add_command(watch_command)
setup.add_command(kibana_command)
setup.add_command(kibana_connector_command)
setup.add_command(security_rule_command)
