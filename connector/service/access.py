"""Which index a request may read: only what the configured allowed patterns cover."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

from connector.config import UseCase
from connector.errors import IndexNotAllowedError

# Characters of Elasticsearch index names, plus its only wildcard "*". Everything else (",", ":",
# whitespace, "<date math>", "?", "[") is refused before pattern matching.
_INDEX_EXPRESSION = re.compile(r"[a-z0-9._+*-]+")


def index_allowed(index: str, allowed_patterns: tuple[str, ...]) -> bool:
    """Whether ``index`` (a name or a ``*`` pattern) can only ever reach indices the allowed patterns cover.

    A requested ``*`` is matched literally against the allowed patterns, whose only wildcard is also
    ``*``: ``osquery-2024*`` is covered by ``osquery-*``, but ``*`` and ``osquery*`` are not.
    Lists (``a,b``), exclusions (``-a``) and remote clusters (``cluster:a``) are never allowed.
    """
    if not _INDEX_EXPRESSION.fullmatch(index) or index.startswith(("-", "+")):
        return False
    return any(fnmatchcase(index, pattern) for pattern in allowed_patterns)


def choose_index(requested: str | None, use_case: UseCase, allowed_patterns: tuple[str, ...]) -> str:
    """The index to read: the requested one if allowed; by default the use case's ``es_index`` if
    allowed, else the first allowed pattern.

    :raises IndexNotAllowedError: (403) with the path ``$.index``.
    """
    if requested is None:
        if use_case.es_index is not None and index_allowed(use_case.es_index, allowed_patterns):
            return use_case.es_index
        return allowed_patterns[0]
    if not index_allowed(requested, allowed_patterns):
        message = (
            f"index {requested!r} is not covered by the allowed patterns ({', '.join(allowed_patterns)}); "
            "name one index or pattern inside them, without ',', a leading '-' or a remote cluster"
        )
        raise IndexNotAllowedError(message, details=[{"path": "$.index", "message": message}])
    return requested
