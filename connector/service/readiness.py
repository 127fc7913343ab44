"""Readiness probe: can this instance reach Elasticsearch with its own credentials right now?

The probe asks ``GET /_security/_authenticate``: it checks exactly the credentials, and every
authenticated user or API key may call it, so the connector's role needs no cluster privilege for it
(``cluster.health`` would need ``monitor``, which also reveals the cluster state of every index, and a
probe refused every few seconds would fill the security audit log with denials). A cluster without
security has no such endpoint; there, any answer to ``cluster.health`` proves it is reachable.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from elasticsearch import ApiError, Elasticsearch, SSLError, TransportError

from connector.sources.elasticsearch import tls_failure_message

log = logging.getLogger(__name__)

#: Well under the second a probe must answer in: a node that cannot confirm our credentials this fast is
#: not ready (a frozen one would otherwise hold the probe for the whole request timeout).
PROBE_TIMEOUT_SECONDS = 0.5
#: What a cluster with security disabled answers to /_security/_authenticate (no handler for it).
_NO_SECURITY_STATUSES = (400, 404, 405)


class ElasticsearchCheck(StrEnum):
    OK = "ok"
    UNREACHABLE = "unreachable"
    UNAUTHORIZED = "unauthorized"


class _SecurityDisabled(Exception):
    """The cluster has no security endpoints: there are no credentials to check."""


class ReadinessLog:
    """Says "service ready" once, after the first successful Elasticsearch check, not before.

    At start the factory checks once: if Elasticsearch does not answer, the log says the service is
    waiting for it, and "service ready" comes with the first later check that succeeds (a readiness
    probe). A process that logs "ready" while it cannot detect anything would mislead whoever reads it.
    """

    def __init__(self, description: str) -> None:
        self.description = description
        self.announced = False
        self.waiting_said = False

    def observe(self, check: ElasticsearchCheck, *, es_url: str) -> None:
        if self.announced:
            return
        if check is ElasticsearchCheck.OK:
            self.announced = True
            log.info(
                "service ready: Elasticsearch at %s accepts the connector's credentials; %s",
                es_url,
                self.description,
            )
        elif not self.waiting_said:  # once: each failed probe logs its own reason anyway
            self.waiting_said = True
            log.warning(
                "waiting for Elasticsearch at %s (%s): detections answer 503 and /readyz 503 until it does; "
                "%s",
                es_url,
                check.value,
                self.description,
            )


def check_elasticsearch(
    client: Elasticsearch, timeout_seconds: float = PROBE_TIMEOUT_SECONDS
) -> ElasticsearchCheck:
    """One request (two on a cluster without security) with a short timeout and no retries.

    401/403 mean the connector's credentials are refused; any other answer of a secured cluster
    means reachable (even a red cluster: detection may still work on healthy indices).
    """
    probe = client.options(request_timeout=timeout_seconds, max_retries=0)
    try:
        try:
            _authenticate(probe)
        except _SecurityDisabled:
            probe.cluster.health()
    except ApiError as error:
        status = error.meta.status if error.meta is not None else 0
        if status in (401, 403):
            log.warning("readiness: Elasticsearch refused the connector's credentials (%s)", status)
            return ElasticsearchCheck.UNAUTHORIZED
        log.warning("readiness: Elasticsearch answered %s", status)
        return ElasticsearchCheck.UNREACHABLE
    except SSLError as error:
        log.warning("readiness: %s", tls_failure_message(error))
        return ElasticsearchCheck.UNREACHABLE
    except TransportError as error:
        log.warning("readiness: Elasticsearch unreachable (%s)", type(error).__name__)
        return ElasticsearchCheck.UNREACHABLE
    return ElasticsearchCheck.OK


def _authenticate(probe: Elasticsearch) -> None:
    """Who the credentials are; the answer (user, roles, API key id) is not kept or logged."""
    try:
        probe.security.authenticate()
    except ApiError as error:
        status = error.meta.status if error.meta is not None else 0
        if status in _NO_SECURITY_STATUSES:
            raise _SecurityDisabled from None
        raise
