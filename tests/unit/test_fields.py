"""Event -> model strings: field lookup, value spelling, Cartesian products (terms-model §2)."""

import pytest

from connector.model.fields import ABSENT, event_pairs, lookup, sentences, value_text


def test_lookup_is_case_insensitive_and_first_match_in_document_order_wins():
    """Each path segment matches keys case-insensitively; the first matching key is used."""
    document = {"osqueryfilter": {"NAME": "first"}, "OsqueryFilter": {"name": "second"}}
    assert lookup(document, "OsqueryFilter.Name") == "first"


def test_lookup_does_not_resolve_literal_dotted_keys():
    """A top-level key "host.name" is not the path host.name (quirk Q5)."""
    assert lookup({"host.name": "WS-1"}, "host.name") is ABSENT


@pytest.mark.parametrize(
    "document",
    [{"OsqueryFilter": "a string"}, {"OsqueryFilter": ["a", "list"]}, {"OsqueryFilter": None}],
    ids=["through-scalar", "through-array", "through-null"],
)
def test_lookup_through_a_non_object_is_absent_instead_of_a_crash(document):
    """ee-outliers aborts the whole run here (Q11); we treat the field as absent."""
    assert lookup(document, "OsqueryFilter.name") is ABSENT
    assert sentences(document, ["OsqueryFilter.name"]) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (7, "7"),
        (1.5, "1.5"),
        (True, "True"),
        ("", ""),
        ([1, None, "x"], "1 - None - x"),
        (None, None),
        ({"a": 1}, None),
        ([1, [2]], None),
        ([{"a": 1}], None),
    ],
    ids=[
        "int",
        "float",
        "bool",
        "empty-string",
        "array-joined",
        "null",
        "object",
        "nested-array",
        "array-of-objects",
    ],
)
def test_value_text_uses_python_spelling(value, expected):
    """Scalars are str()'d, arrays of scalars joined with ' - ', unusable values give None."""
    assert value_text(value) == expected


def test_array_fields_keep_duplicates_and_drop_unusable_elements():
    """Each array element is one value; duplicates stay (Q5); null/object elements vanish."""
    document = {"t": ["cmd.exe", "cmd.exe", None, {"x": 1}, ["a", "b"]]}
    assert sentences(document, ["t"]) == ["cmd.exe", "cmd.exe", "a - b"]


def test_empty_array_gives_no_values_but_is_not_absent():
    """An empty array yields no entries, which differs from a missing field (skip)."""
    assert sentences({"t": []}, ["t"]) == []


def test_several_fields_give_the_cartesian_product_new_field_outermost():
    """For fields a, b the order is b's values outer, a's values inner."""
    document = {"a": ["a1", "a2"], "b": ["b1", "b2"]}
    assert sentences(document, ["a", "b"]) == ["a1 - b1", "a2 - b1", "a1 - b2", "a2 - b2"]


def test_event_pairs_loops_terms_outer_and_aggregators_inner():
    """Entries come out as (aggregator, term) for each term, then each aggregator value."""
    document = {"host": ["h1", "h2"], "child": ["c1", "c2"]}
    assert event_pairs(document, aggregator=["host"], target=["child"]) == [
        ("h1", "c1"),
        ("h2", "c1"),
        ("h1", "c2"),
        ("h2", "c2"),
    ]


def test_event_missing_any_field_is_skipped():
    """One absent aggregator or target field removes the whole event from the counts."""
    assert event_pairs({"child": "c"}, aggregator=["parent"], target=["child"]) is None
    assert event_pairs({"parent": "p"}, aggregator=["parent"], target=["child"]) is None
