"""What one service instance holds, built once by the app factory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch

from connector.service.auth import Authenticator
from connector.service.catalog import UseCaseCatalog
from connector.service.readiness import ReadinessLog
from connector.service.validation import SchemaSet
from connector.settings import Settings


@dataclass(frozen=True)
class ServiceState:
    """Kept in ``app.extensions["connector"]``; per-request data goes on ``flask.g`` instead."""

    settings: Settings
    catalog: UseCaseCatalog
    es_client: Elasticsearch
    #: /readyz's own client, so a probe never waits for one of the detections' pooled connections.
    probe_client: Elasticsearch
    schemas: SchemaSet
    authenticator: Authenticator
    openapi: Mapping[str, Any]
    readiness: ReadinessLog
