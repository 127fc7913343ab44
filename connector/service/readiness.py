"""Readiness probe: can this instance reach Elasticsearch with its own credentials right now?"""

from __future__ import annotations

import logging
from enum import StrEnum

from elasticsearch import ApiError, Elasticsearch, TransportError

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 3.0


class ElasticsearchCheck(StrEnum):
    OK = "ok"
    UNREACHABLE = "unreachable"
    UNAUTHORIZED = "unauthorized"


def check_elasticsearch(
    client: Elasticsearch, timeout_seconds: float = PROBE_TIMEOUT_SECONDS
) -> ElasticsearchCheck:
    """One ``cluster.health`` call with a short timeout and no retries.

    Any answer means reachable (even a red cluster: detection may still work on healthy indices);
    401/403 mean the connector's credentials (or their ``monitor`` privilege) are refused.
    """
    probe = client.options(request_timeout=timeout_seconds, max_retries=0)
    try:
        probe.cluster.health()
    except ApiError as error:
        status = error.meta.status if error.meta is not None else 0
        if status in (401, 403):
            log.warning("readiness: Elasticsearch refused the connector's credentials (%s)", status)
            return ElasticsearchCheck.UNAUTHORIZED
        log.warning("readiness: Elasticsearch answered %s", status)
        return ElasticsearchCheck.UNREACHABLE
    except TransportError as error:
        log.warning("readiness: Elasticsearch unreachable (%s)", type(error).__name__)
        return ElasticsearchCheck.UNREACHABLE
    return ElasticsearchCheck.OK
