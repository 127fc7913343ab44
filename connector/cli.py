"""The ``connector`` command line: thin wrappers around the engine.

Exit codes: 0 ok, 1 operational error, 2 usage or configuration error. Results go to stdout,
messages and progress to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from connector import __version__
from connector.engine import detect_file_result
from connector.errors import ConnectorError
from connector.report import render_table
from connector.service.catalog import load_catalog
from connector.service.serving import APP_FACTORY, GUNICORN_CONF, parse_bind, parse_workers
from connector.settings import Settings

log = logging.getLogger(__name__)

_EXISTING_FILE = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="connector")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Rare child process detection (the ee-outliers terms model) for the Elastic stack."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


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
    required=True,
    help="NDJSON file: one Elasticsearch hit or one event document per line.",
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
    events_path: Path,
    use_case: str | None,
    global_config_path: Path | None,
    output_format: str,
) -> None:
    """Run a use case over an NDJSON events file and print its outliers."""
    progress = _terminal_progress(events_path) if sys.stderr.isatty() else None
    try:
        result = detect_file_result(
            config_path=config_path,
            events_path=events_path,
            use_case=use_case,
            global_config_path=global_config_path,
            progress=progress,
        )
    except ConnectorError as error:
        _fail(error)
    finally:
        if progress:
            click.echo("\r\033[K", nl=False, err=True)
    contract = result.to_contract()
    if output_format == "json":
        click.echo(json.dumps(contract, ensure_ascii=False, indent=2))
    else:
        click.echo(render_table(contract), nl=False)


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
        _fail(error)
    environment = dict(os.environ, CONNECTOR_BIND=bind, CONNECTOR_WORKERS=str(worker_count))
    argv = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), APP_FACTORY]
    click.echo(f"starting gunicorn on {bind} with {worker_count} worker(s)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, environment)


def _fail(error: ConnectorError) -> None:
    click.echo(f"error: {error.message}", err=True)
    sys.exit(error.exit_code)


def _terminal_progress(events_path: Path):  # type: ignore[no-untyped-def]
    total = max(events_path.stat().st_size, 1)

    def report(lines: int, bytes_read: int) -> None:
        click.echo(
            f"\rreading {events_path.name}: {lines:,} lines ({100 * bytes_read // total}%)",
            nl=False,
            err=True,
        )

    return report
