"""Elasticsearch queries for the rarechild model's path factors, built from its prior knowledge.

They say in Query DSL what :class:`~connector.model.knowledge.Knowledge` says in Python, with the same
wildcard semantics (``case_insensitive`` wildcard queries on keyword fields), so that the counts of both
sources agree event for event.
"""

from __future__ import annotations

from typing import Any

from connector.model.knowledge import Knowledge, home_pattern


def es_wildcard(pattern: str) -> str:
    """Our pattern as a Lucene wildcard: only the backslash needs escaping (``*`` and ``?`` mean the same)."""
    return pattern.replace("\\", "\\\\")


def user_writable_query(knowledge: Knowledge, path_field: str) -> dict[str, Any]:
    return {
        "bool": {
            "should": [
                {"wildcard": {path_field: {"value": es_wildcard(pattern), "case_insensitive": True}}}
                for pattern in knowledge.user_writable_patterns
            ],
            "minimum_should_match": 1,
        }
    }


def outside_home_query(knowledge: Knowledge, child_field: str, path_field: str) -> dict[str, Any]:
    """An event of a listed system binary whose path lies outside each of its home directories."""
    clauses = []
    for name in sorted(knowledge.system_homes):
        clauses.append(
            {
                "bool": {
                    "filter": [
                        {"term": {child_field: {"value": name, "case_insensitive": True}}},
                        {"exists": {"field": path_field}},
                    ],
                    "must_not": [
                        {"term": {path_field: ""}},  # an empty path is no path, as in the model
                        *(
                            {
                                "wildcard": {
                                    path_field: {
                                        "value": es_wildcard(home_pattern(home)),
                                        "case_insensitive": True,
                                    }
                                }
                            }
                            for home in sorted(knowledge.system_homes[name])
                        ),
                    ],
                }
            }
        )
    return {"bool": {"should": clauses, "minimum_should_match": 1}}


def flagged_query(knowledge: Knowledge, child_field: str, path_field: str) -> dict[str, Any]:
    """Events that show either path factor."""
    return {
        "bool": {
            "should": [
                user_writable_query(knowledge, path_field),
                outside_home_query(knowledge, child_field, path_field),
            ],
            "minimum_should_match": 1,
        }
    }
