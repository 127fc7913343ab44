"""Which Elasticsearch error answers mean "shards unavailable" (a red index), and the error they become.

The bodies are what a real 8.19 three-node cluster answered with the only node holding an index's two
shards (no replica) stopped.
"""

from __future__ import annotations

from typing import Any

from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError

from connector.errors import ElasticsearchUnavailableError, IndexUnavailableError
from connector.sources.elasticsearch import translate_api_error
from connector.sources.shards import unavailable_shards

# allow_partial_search_results=false (what the connector sends): the search is rejected as a whole.
REJECTED = {
    "error": {
        "root_cause": [],
        "type": "search_phase_execution_exception",
        "reason": "",
        "phase": "query",
        "grouped": True,
        "failed_shards": [],
        "caused_by": {
            "type": "search_phase_execution_exception",
            "reason": "Search rejected due to missing shards [[red1][0], [red1][1]]. Consider using "
            "`allow_partial_search_results` setting to bypass this error.",
            "phase": "query",
            "grouped": True,
            "failed_shards": [],
        },
    },
    "status": 503,
}
# allow_partial_search_results=true, every shard missing: "all shards failed" (grouped: one listed).
ALL_FAILED = {
    "error": {
        "root_cause": [{"type": "no_shard_available_action_exception", "reason": None}],
        "type": "search_phase_execution_exception",
        "reason": "all shards failed",
        "phase": "query",
        "grouped": True,
        "failed_shards": [
            {"shard": 0, "index": "red1", "node": None,
             "reason": {"type": "no_shard_available_action_exception", "reason": None}}
        ],
    },
    "status": 503,
}  # fmt: skip
# Field capabilities of an index without any active shard.
FIELD_CAPS = {
    "error": {
        "root_cause": [{"type": "no_shard_available_action_exception",
                        "reason": "index [red1] has no active shard copy"}],
        "type": "no_shard_available_action_exception",
        "reason": "index [red1] has no active shard copy",
    },
    "status": 503,
}  # fmt: skip
# A node cut off from its cluster: a 503 that is about the node, not about shards.
NO_MASTER = {
    "error": {
        "root_cause": [{"type": "master_not_discovered_exception", "reason": None}],
        "type": "master_not_discovered_exception",
        "reason": None,
    },
    "status": 503,
}


def _api_error(status: int, body: dict[str, Any]) -> ApiError:
    meta = ApiResponseMeta(status, "1.1", HttpHeaders(), 0.0, NodeConfig("http", "127.0.0.1", 9200))
    return ApiError(message=str(body["error"]["type"]), meta=meta, body=body)


def test_missing_shards_are_named_from_each_kind_of_answer() -> None:
    """Pins the shard lists: the rejection names every missing shard, "all shards failed" the ones it
    lists, field capabilities only the index."""
    assert unavailable_shards(REJECTED) == [{"index": "red1", "shard": 0}, {"index": "red1", "shard": 1}]
    assert unavailable_shards(ALL_FAILED) == [{"index": "red1", "shard": 0}]
    assert unavailable_shards(FIELD_CAPS) == [{"index": "red1"}]


def test_other_answers_are_not_about_shards() -> None:
    """Pins that a cut-off node, a query error or a non-error body stays what it was (None)."""
    assert unavailable_shards(NO_MASTER) is None
    assert unavailable_shards({"error": {"type": "parsing_exception", "reason": "bad"}}) is None
    assert unavailable_shards({"hits": {}}) is None
    assert unavailable_shards("not json") is None


def test_a_red_index_becomes_its_own_error_naming_the_shards_and_what_to_do() -> None:
    """Pins the refusal: code index_unavailable, the shards in message and details, the fix."""
    error = translate_api_error(_api_error(503, REJECTED))
    assert isinstance(error, IndexUnavailableError)
    assert error.code == "index_unavailable" and error.status == 503 and error.retry_after_seconds == 60
    assert error.details == [{"index": "red1", "shard": 0}, {"index": "red1", "shard": 1}]
    assert "[red1][0], [red1][1]" in error.message
    assert "Bring back the node(s)" in error.message and "_cluster/allocation/explain" in error.message
    caps = translate_api_error(_api_error(503, FIELD_CAPS))
    assert isinstance(caps, IndexUnavailableError) and "[red1] (every shard)" in caps.message


def test_other_503s_stay_elasticsearch_unavailable() -> None:
    """Pins that only shard answers change: a node without a master is still 'unavailable, retry'."""
    error = translate_api_error(_api_error(503, NO_MASTER))
    assert isinstance(error, ElasticsearchUnavailableError) and error.code == "elasticsearch_unavailable"
