"""Convert osquery-shaped process events (NVISO's ``OsqueryFilter.*``) to the shapes other sources write.

    python scripts/convert_events.py --to ecs examples/sample-events.ndjson > defend.ndjson

Shapes (``--to``):

* ``ecs``: Elastic Defend (``logs-endpoint.events.process-default``): ECS ``process.*``, ``user.name``,
  ``host.name``, ``event.category: [process]``, ``event.type: [start]``, ``event.ingested``; each start is
  followed by the process's end event (``event.type: [end]``), as Defend records both, so that a use case
  that counted ends too would be caught;
* ``sysmon``: Sysmon through Elastic's Windows integration (``logs-windows.sysmon_operational-default``):
  the same ECS fields with ``event.code: "1"`` and ``winlog.*``; each start followed by its event 5
  (process terminated);
* ``osquery-manager``: Fleet Osquery Manager results (``logs-osquery_manager.result-default``) of the
  scheduled query in examples/osquery-manager-processes.sql: its columns under ``osquery.*``, the agent's
  name in ``agent.name``.

Ids are kept (an end event gets ``<id>-end``), so findings can be compared id for id. Empty strings are
left out, as ECS producers leave out fields they have no value for. Input: one hit or bare document per
line; output: one hit per line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

SHAPES = ("ecs", "sysmon", "osquery-manager")
INDICES = {
    "ecs": "logs-endpoint.events.process-default",
    "sysmon": "logs-windows.sysmon_operational-default",
    "osquery-manager": "logs-osquery_manager.result-default",
}


def _text(value: Any) -> Any:
    return None if value in ("", None) else value


def _compact(value: Any) -> Any:
    """``value`` without None leaves and the objects they leave empty."""
    if isinstance(value, Mapping):
        kept = {key: _compact(item) for key, item in value.items()}
        return {key: item for key, item in kept.items() if item not in (None, {})}
    return value


def _process(osquery: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": _text(osquery.get("name")),
        "executable": _text(osquery.get("path")),
        "command_line": _text(osquery.get("cmdline")),
        "pid": osquery.get("pid"),
        "hash": {"sha256": _text(osquery.get("sha256"))},
        "parent": {
            "name": _text(osquery.get("parentname")),
            "command_line": _text(osquery.get("parentcmdline")),
            "pid": osquery.get("parent"),
        },
    }


def _ecs_event(source: Mapping[str, Any], shape: str, event_type: str) -> dict[str, Any]:
    osquery = source.get("OsqueryFilter") or {}
    host = (source.get("host") or {}).get("name")
    timestamp = source.get("@timestamp")
    event: dict[str, Any] = {
        "kind": "event",
        "category": ["process"],
        "type": [event_type],
        "ingested": timestamp,
    }
    document: dict[str, Any] = {
        "@timestamp": timestamp,
        "host": {"name": host},
        "user": {"name": _text(osquery.get("username"))},
        "process": _process(osquery),
    }
    if shape == "ecs":
        event.update(action="start" if event_type == "start" else "end", dataset="endpoint.events.process")
        event["module"] = "endpoint"
        document["agent"] = {"type": "endpoint"}
        document["data_stream"] = {
            "type": "logs",
            "dataset": "endpoint.events.process",
            "namespace": "default",
        }
    else:
        code = "1" if event_type == "start" else "5"
        event.update(code=code, provider="Microsoft-Windows-Sysmon", dataset="windows.sysmon_operational")
        event["module"] = "sysmon"
        document["winlog"] = {
            "channel": "Microsoft-Windows-Sysmon/Operational",
            "event_id": code,
            "computer_name": host,
        }
        document["data_stream"] = {
            "type": "logs",
            "dataset": "windows.sysmon_operational",
            "namespace": "default",
        }
    document["event"] = event
    return _compact(document)


def _osquery_manager_event(source: Mapping[str, Any]) -> dict[str, Any]:
    osquery = source.get("OsqueryFilter") or {}
    columns = {
        "name": osquery.get("name"),
        "path": osquery.get("path"),
        "cmdline": osquery.get("cmdline"),
        "pid": osquery.get("pid"),
        "sha256": osquery.get("sha256"),
        "username": osquery.get("username"),
        "parent_name": osquery.get("parentname"),
        "parent_cmdline": osquery.get("parentcmdline"),
    }
    return _compact(
        {
            "@timestamp": source.get("@timestamp"),
            "osquery": {key: _text(value) for key, value in columns.items()},
            "agent": {"name": (source.get("host") or {}).get("name"), "type": "osquerybeat"},
            "action_id": "pack_rare-child_processes",
            "data_stream": {"type": "logs", "dataset": "osquery_manager.result", "namespace": "default"},
        }
    )


def convert_hit(hit: Mapping[str, Any], shape: str) -> Iterator[dict[str, Any]]:
    """The hits ``shape`` has for one osquery hit: the start (and, for ECS shapes, the end)."""
    source = hit.get("_source", hit)
    document_id = str(hit.get("_id", ""))
    index = INDICES[shape]
    if shape == "osquery-manager":
        yield {"_id": document_id, "_index": index, "_source": _osquery_manager_event(source)}
        return
    yield {"_id": document_id, "_index": index, "_source": _ecs_event(source, shape, "start")}
    yield {"_id": f"{document_id}-end", "_index": index, "_source": _ecs_event(source, shape, "end")}


def convert_lines(lines: TextIO, shape: str, out: TextIO) -> int:
    """Convert every line of ``lines`` into ``out``; the number of hits written."""
    written = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            hit = json.loads(line)
        except json.JSONDecodeError as error:
            raise SystemExit(f"line {number}: not JSON ({error.msg})") from None
        for converted in convert_hit(hit, shape):
            out.write(json.dumps(converted, ensure_ascii=False, separators=(",", ":")) + "\n")
            written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", choices=SHAPES, required=True, help="the shape to write")
    parser.add_argument("events", type=argparse.FileType("r", encoding="utf-8"), help="osquery NDJSON")
    arguments = parser.parse_args(argv)
    with arguments.events as lines:
        convert_lines(lines, arguments.to, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
