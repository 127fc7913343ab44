"""The ``ingest_time_field`` use-case option (docs/scheduling.md, "Late events")."""

from connector.config import load_use_cases

TERMS = """
[terms_x]
es_query_filter=tags:endpoint
aggregator=OsqueryFilter.parentname
target=OsqueryFilter.name
target_count_method=within_aggregator
trigger_on=low
trigger_method=pct_of_avg_value
trigger_sensitivity=1
{extra}
"""
RARECHILD = """
[rarechild_x]
es_query_filter=tags:endpoint
aggregator=process.parent.name
target=process.name
{extra}
"""


def load(tmp_path, text, extra=""):
    path = tmp_path / "use_cases.ini"
    path.write_text(text.format(extra=extra))
    return load_use_cases(path).select()


def test_unset_by_default_so_spans_select_on_the_timestamp(tmp_path):
    assert load(tmp_path, TERMS).ingest_time_field is None
    assert load(tmp_path, RARECHILD).ingest_time_field is None


def test_a_field_is_kept_and_not_copied_into_records_as_an_unknown_option(tmp_path):
    for text in (TERMS, RARECHILD):
        use_case = load(tmp_path, text, "ingest_time_field = event.ingested")
        assert use_case.ingest_time_field == "event.ingested"
        assert "ingest_time_field" not in dict(use_case.extra_options)


def test_an_empty_value_means_unset(tmp_path):
    assert load(tmp_path, TERMS, "ingest_time_field =").ingest_time_field is None
