"""The allowed patterns judged on concrete indices: answers of _resolve/index as the real node gives them
(shapes taken from an 8.19 node: an index, an alias, a data stream, an alias of a data stream)."""

from __future__ import annotations

import pytest

from connector.errors import IndexNotAllowedError
from connector.sources.scope import ConcreteIndex, IndexScope, concrete_indices

PATTERNS = ("osquery-*",)
RESOLVED = {
    "indices": [{"name": "osquery-real", "attributes": ["open"]}],
    "aliases": [{"name": "osquery-alias", "indices": ["secret"]}],
    "data_streams": [{"name": "osquery-ds", "backing_indices": [".ds-osquery-ds-2026.12.01-000001"]}],
}


def test_every_concrete_index_is_listed_with_the_name_it_is_judged_by():
    assert concrete_indices(RESOLVED) == [
        ConcreteIndex(".ds-osquery-ds-2026.12.01-000001", "osquery-ds"),
        ConcreteIndex("osquery-real", "osquery-real"),
        ConcreteIndex("secret", "secret", via="osquery-alias"),
    ]


def test_an_alias_of_a_data_stream_reaches_its_backing_indices():
    resolved = {
        "aliases": [{"name": "osquery-view", "indices": ["osquery-ds"]}],
        "data_streams": [{"name": "osquery-ds", "backing_indices": [".ds-osquery-ds-1"]}],
    }
    scope = IndexScope("osquery-view", PATTERNS)
    scope.admit(resolved)
    scope.check_hit({"_index": ".ds-osquery-ds-1"})


def test_an_index_behind_an_alias_is_refused_by_its_own_name():
    scope = IndexScope("osquery-*", PATTERNS)
    with pytest.raises(IndexNotAllowedError) as refused:
        scope.admit(RESOLVED)
    assert refused.value.status == 403
    assert "reaches the concrete index 'secret' through alias 'osquery-alias'" in refused.value.message


def test_a_hit_from_an_index_the_resolution_did_not_admit_is_refused():
    """An alias added between resolving and reading: the hit's _index is checked before it is used."""
    scope = IndexScope("osquery-real", PATTERNS)
    scope.admit({"indices": [{"name": "osquery-real"}]})
    scope.check_hit({"_index": "osquery-real"})
    with pytest.raises(IndexNotAllowedError) as refused:
        scope.check_hit({"_index": "secret"})
    assert "'secret'" in refused.value.message


def test_a_backing_index_created_by_a_rollover_after_resolving_is_admitted():
    scope = IndexScope("osquery-ds", PATTERNS)
    first = ".ds-osquery-ds-2026.12.01-000001"
    scope.admit({"data_streams": [{"name": "osquery-ds", "backing_indices": [first]}]})
    scope.check_hit({"_index": ".ds-osquery-ds-2026.12.02-000002"})
    for other in (".ds-other-2026.12.01-000001", ".ds-osquery-ds-secret-2026.12.01-000001"):
        with pytest.raises(IndexNotAllowedError):
            scope.check_hit({"_index": other})
