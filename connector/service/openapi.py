"""The OpenAPI 3.1 document, generated from the same schema files that validate requests.

Each ``schemas/<name>.schema.json`` becomes ``components/schemas/<Name>`` unchanged (OpenAPI 3.1
schema objects are JSON Schema 2020-12), and operations refer to them with ``$ref``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector import __version__

# (status, description) of the errors each operation documents; all use the Error schema.
_COMMON_ERRORS = {
    "401": "No valid credentials (WWW-Authenticate names the accepted schemes).",
    "500": "Internal error; no details are returned, the log has them under the request id.",
}
_DETECT_ERRORS = {
    "400": "Malformed JSON, a schema violation (every one listed with its JSON path) or an invalid range.",
    "401": _COMMON_ERRORS["401"],
    "403": "The index, or a concrete index it reaches (through an alias), is outside the allowed patterns.",
    "404": "Unknown use case.",
    "413": "The body is larger than CONNECTOR_MAX_BODY_BYTES.",
    "415": "The body is not declared as application/json.",
    "409": "since_checkpoint: another detection holds this use case's checkpoint (checkpoint_busy: nothing "
    "was analysed), or took it over while this call ran (checkpoint_conflict); retry later.",
    "422": "Elasticsearch rejected the query or a configured field cannot be aggregated.",
    "500": _COMMON_ERRORS["500"],
    "501": "The body was sent with a compressing Transfer-Encoding (gzip, deflate, compress).",
    "502": "Elasticsearch refused the connector's own credentials.",
    "503": "Elasticsearch is unreachable, or an index to read has unavailable shards (index_unavailable, "
    "a red index); retry after Retry-After seconds.",
    "504": "Elasticsearch did not answer in time.",
}


# Both read the checkpoint index: they fail as Elasticsearch does (a scraper records the failure).
_CHECKPOINT_READ_ERRORS = {
    **_COMMON_ERRORS,
    "503": _DETECT_ERRORS["503"],
    "504": "Elasticsearch did not answer in time.",
}


def component_name(schema_name: str) -> str:
    """``detect-request`` -> ``DetectRequest``."""
    return "".join(part.capitalize() for part in schema_name.split("-"))


def _ref(schema_name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{component_name(schema_name)}"}


def _json(schema_name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema_name)}},
    }
    if headers:
        response["headers"] = headers
    return response


def _errors(statuses: Mapping[str, str]) -> dict[str, Any]:
    responses = {}
    for status, description in statuses.items():
        headers: dict[str, Any] = {}
        # The service always sends these two, so clients (and conformance checks) may rely on them.
        if status == "401":
            headers["WWW-Authenticate"] = {
                "schema": {"type": "string"},
                "required": True,
                "description": "Accepted schemes.",
            }
        if status == "503":
            headers["Retry-After"] = {
                "schema": {"type": "integer", "minimum": 1},
                "required": True,
                "description": "Seconds to wait.",
            }
        responses[status] = _json("error", description, headers)
    return responses


def build_openapi(schema_documents: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The OpenAPI 3.1 document; ``schema_documents`` are the loaded schema files by name."""
    request_id_header = {
        "X-Request-Id": {
            "schema": {"type": "string"},
            "description": "The request id (the caller's X-Request-Id if short and safe, else a uuid4).",
        }
    }
    authenticated = [{"bearerAuth": []}, {"basicAuth": []}]
    public: list[dict[str, list[str]]] = []
    paths = {
        "/api/v1/detect": {
            "post": {
                "operationId": "detect",
                "summary": "Run a use case over a time range and return (and write) its outliers.",
                "security": authenticated,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("detect-request")}},
                },
                "responses": {
                    "200": _json("detect-response", "Detection result.", request_id_header),
                    "207": _json(
                        "detect-response",
                        "Detection result, but some outliers could not be written: annotation.outcome is "
                        "partial or failed and annotation.errors says why.",
                        request_id_header,
                    ),
                    **_errors(_DETECT_ERRORS),
                },
            }
        },
        "/api/v1/checkpoints": {
            "get": {
                "operationId": "listCheckpoints",
                "summary": "How far scheduled detection has analysed each use case and index, and its lag.",
                "security": authenticated,
                "responses": {
                    "200": _json("checkpoints-response", "The stored checkpoints."),
                    **_errors(_CHECKPOINT_READ_ERRORS),
                },
            }
        },
        "/api/v1/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "The checkpoints' lag for Prometheus: per use case and index, and how many are "
                "behind CONNECTOR_CHECKPOINT_MAX_LAG_HOURS.",
                "security": authenticated,
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format 0.0.4 "
                        "(text/plain; version=0.0.4; charset=utf-8).",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(_CHECKPOINT_READ_ERRORS),
                },
            }
        },
        "/api/v1/use-cases": {
            "get": {
                "operationId": "listUseCases",
                "summary": "The use cases this service was started with.",
                "security": authenticated,
                "responses": {
                    "200": _json("use-cases-response", "The use cases, default first."),
                    **_errors(_COMMON_ERRORS),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness: the process serves requests. The only endpoint without authentication.",
                "security": public,
                "responses": {
                    "200": _json("health-response", "Alive."),
                    **_errors({"500": _COMMON_ERRORS["500"]}),
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readiness",
                "summary": "Readiness: Elasticsearch answers the connector's credentials and use cases "
                "are loaded.",
                "security": authenticated,
                "responses": {
                    "200": _json("readiness-response", "Ready."),
                    "503": _json("readiness-response", "Not ready; checks says why."),
                    **_errors(_COMMON_ERRORS),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": authenticated,
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_errors(_COMMON_ERRORS),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Rare child process connector",
            "version": __version__,
            "description": (
                "Finds rare child processes in Elasticsearch for a time range, or for every hour since "
                "its checkpoint: the ee-outliers terms model, exactly, or the scored rarechild model; "
                "writes the findings back as ECS alerts. Every error has the Error body."
            ),
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "security": authenticated,
        "paths": paths,
        "components": {
            "schemas": {component_name(name): document for name, document in schema_documents.items()},
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "CONNECTOR_API_TOKENS"},
                "basicAuth": {"type": "http", "scheme": "basic", "description": "CONNECTOR_BASIC_USER"},
            },
        },
    }
