"""Proof that the integration fixtures give a real, writable, searchable Elasticsearch node.

The events are osquery-shaped process starts (``OsqueryFilter.name`` = child, ``parentname`` = parent),
built inline so the expected counts are exact and independent of example files.
"""

from __future__ import annotations

import re
import zipfile
from collections import Counter
from typing import Any

from elasticsearch import Elasticsearch, helpers

from scripts import es_node

# (host, child, parent)
EVENTS = [
    ("WS-1", "cmd.exe", "WINWORD.EXE"),
    ("WS-1", "cmd.exe", "explorer.exe"),
    ("WS-2", "cmd.exe", "explorer.exe"),
    ("WS-2", "powershell.exe", "cmd.exe"),
    ("WS-3", "powershell.exe", "explorer.exe"),
    ("WS-3", "rundll32.exe", "WINWORD.EXE"),
]


def _docs(index: str) -> list[dict[str, Any]]:
    return [
        {
            "_index": index,
            "_id": f"evt-{i}",
            "_source": {
                "@timestamp": f"2026-11-01T10:{i:02d}:00Z",
                "host": {"name": host},
                "OsqueryFilter": {"name": child, "parentname": parent},
            },
        }
        for i, (host, child, parent) in enumerate(EVENTS)
    ]


def _bulk(es_client: Elasticsearch, index: str) -> None:
    ok, errors = helpers.bulk(es_client, _docs(index), refresh="wait_for", raise_on_error=False)
    assert (ok, errors) == (len(EVENTS), [])


def test_cluster_is_healthy(es_client: Elasticsearch) -> None:
    """Pins that the fixture hands out a cluster that is at least yellow (readiness is not GET /)."""
    health = es_client.cluster.health()
    assert health["status"] in {"green", "yellow"}
    assert health["number_of_nodes"] >= 1


def test_bulk_search_and_terms_on_dynamic_mapping(es_client: Elasticsearch, index_name: str) -> None:
    """Pins bulk + refresh=wait_for visibility, exact hit totals and terms buckets on the ``.keyword``
    sub-field that dynamic mapping creates for strings (how raw osquery indices usually look)."""
    assert re.fullmatch(r"rcp-test-[0-9a-f]{32}", index_name)
    assert not es_client.indices.exists(index=index_name)
    _bulk(es_client, index_name)

    resp = es_client.search(
        index=index_name,
        size=0,
        track_total_hits=True,
        aggs={"children": {"terms": {"field": "OsqueryFilter.name.keyword", "size": 10}}},
    )
    assert resp["hits"]["total"] == {"value": 6, "relation": "eq"}
    buckets = {b["key"]: b["doc_count"] for b in resp["aggregations"]["children"]["buckets"]}
    assert buckets == {"cmd.exe": 3, "powershell.exe": 2, "rundll32.exe": 1}
    assert resp["aggregations"]["children"]["sum_other_doc_count"] == 0

    word = es_client.search(
        index=index_name,
        query={"term": {"OsqueryFilter.parentname.keyword": "WINWORD.EXE"}},
        sort=[{"@timestamp": "asc"}],
    )
    hits = word["hits"]["hits"]
    assert [h["_id"] for h in hits] == ["evt-0", "evt-5"]
    assert [h["_source"]["OsqueryFilter"]["name"] for h in hits] == ["cmd.exe", "rundll32.exe"]


def test_parent_child_counts_on_explicit_keyword_mapping(es_client: Elasticsearch, index_name: str) -> None:
    """Pins exact (parent, child) pair counts via nested terms aggregations on explicit keyword fields,
    the shape the rare-child model counts."""
    es_client.indices.create(
        index=index_name,
        settings={"number_of_shards": 1, "number_of_replicas": 0},
        mappings={
            "properties": {
                "@timestamp": {"type": "date"},
                "host": {"properties": {"name": {"type": "keyword"}}},
                "OsqueryFilter": {
                    "properties": {"name": {"type": "keyword"}, "parentname": {"type": "keyword"}}
                },
            }
        },
    )
    _bulk(es_client, index_name)

    resp = es_client.search(
        index=index_name,
        size=0,
        aggs={
            "parents": {
                "terms": {"field": "OsqueryFilter.parentname", "size": 10},
                "aggs": {"children": {"terms": {"field": "OsqueryFilter.name", "size": 10}}},
            }
        },
    )
    pairs = {
        (parent["key"], child["key"]): child["doc_count"]
        for parent in resp["aggregations"]["parents"]["buckets"]
        for child in parent["children"]["buckets"]
    }
    assert pairs == dict(Counter((parent, child) for _, child, parent in EVENTS))
    assert pairs == {
        ("explorer.exe", "cmd.exe"): 2,
        ("explorer.exe", "powershell.exe"): 1,
        ("WINWORD.EXE", "cmd.exe"): 1,
        ("WINWORD.EXE", "rundll32.exe"): 1,
        ("cmd.exe", "powershell.exe"): 1,
    }
    assert es_client.count(index=index_name, query={"term": {"host.name": "WS-3"}})["count"] == 2


def test_the_insecure_node_loads_no_plugin(es_client: Elasticsearch) -> None:
    """Pins that only secure nodes get the test plugin: the default node stays the bare distribution."""
    assert es_client.cat.plugins(format="json") == []


def test_the_test_plugin_is_built_once_for_this_version() -> None:
    """Pins the build ``es_node.py fetch`` makes for secure nodes: a jar with the plugin class and a
    descriptor naming this exact Elasticsearch version, cached (a second call reuses it, no rebuild)."""
    dist = es_node.resolve_distribution()
    built = es_node.ensure_test_plugin(dist)
    jar = built / f"{es_node.TEST_PLUGIN_NAME}.jar"
    with zipfile.ZipFile(jar) as zf:
        assert "rcp/testplugin/SecurityIndexAnalysisPlugin.class" in zf.namelist()
    descriptor = (built / "plugin-descriptor.properties").read_text()
    assert f"\nelasticsearch.version={dist.version}\n" in descriptor
    assert "classname=rcp.testplugin.SecurityIndexAnalysisPlugin\n" in descriptor
    mtime = jar.stat().st_mtime_ns
    assert es_node.ensure_test_plugin(dist) == built
    assert jar.stat().st_mtime_ns == mtime
    assert built.parent.name == f"test-plugin-{dist.version}-{es_node.plugin_build_key(dist)}"
