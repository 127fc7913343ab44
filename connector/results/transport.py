"""Sending the write-back: every request under the detection's time budget, bulk items reported one by one."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError, helpers

from connector.errors import ConnectorError
from connector.results.failures import item_error, missing_privilege, privilege_error, translate_error
from connector.sources.elasticsearch import TimeBudget

BULK_CHUNK_SIZE = 500

# streaming_bulk re-sends items refused with 429 (queue full) this often, sleeping 1 s, 2 s, 4 s (blocking).
BULK_MAX_RETRIES = 3

BULK_INITIAL_BACKOFF_S = 1


@dataclass(frozen=True)
class WriteRequests:
    """The client and the time budget that every write-back request is sent under."""

    client: Elasticsearch
    budget: TimeBudget

    def bound(self, doing: str) -> Elasticsearch:
        """The client with the time left for the next request (raises once the deadline has passed)."""
        return self.budget.bind(self.client, doing)

    def call(self, request: Callable[[Elasticsearch], Any], doing: str) -> Any:
        """``request(client)``, its failure translated into the project's errors."""
        try:
            return request(self.bound(doing))
        except (ApiError, TransportError) as error:
            raise self.translate(error, doing) from None

    def bulk(
        self, actions: Sequence[dict[str, Any]], refresh: bool | str, doing: str
    ) -> Iterator[tuple[bool, dict[str, Any]]]:
        """``streaming_bulk`` reporting every item as ``(ok, info)``; raises only when nothing can be written.

        One ``streaming_bulk`` per :data:`BULK_CHUNK_SIZE` actions, so each bulk request gets the time left
        when it is sent (a deadline is not stretched by later chunks).
        """
        for start in range(0, len(actions), BULK_CHUNK_SIZE):
            results = helpers.streaming_bulk(
                self.bound(doing),
                actions[start : start + BULK_CHUNK_SIZE],
                chunk_size=BULK_CHUNK_SIZE,
                raise_on_error=False,
                raise_on_exception=False,
                max_retries=BULK_MAX_RETRIES,
                initial_backoff=BULK_INITIAL_BACKOFF_S,
                refresh=refresh,
            )
            try:
                for ok, item in results:
                    info = next(iter(item.values()))
                    exception = info.get("exception")
                    # A whole request refused for the credentials: every later request will be refused too.
                    if not ok and isinstance(exception, ApiError) and exception.status_code in (401, 403):
                        raise self.translate(exception, doing) from None
                    # An item refused for a missing privilege: so will every other item for that index.
                    if not ok and missing_privilege(info):
                        raise privilege_error(item_error(info)["reason"], doing)
                    yield ok, info
            except (ApiError, TransportError) as error:
                raise self.translate(error, doing) from None

    def translate(self, error: ApiError | TransportError, doing: str) -> ConnectorError:
        return translate_error(error, doing, self.budget)
