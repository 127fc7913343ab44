"""The ``connector`` command line: thin wrappers around the engine.

Exit codes: 0 ok, 1 operational error, 2 usage or configuration error. Results go to stdout,
messages and progress to stderr.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from connector import __version__
from connector.engine import detect_file_result
from connector.errors import ConnectorError
from connector.report import render_table

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
