"""Offline sweep of the Kibana saved-objects bundle (kibana_saved_objects/rare-child-connector.ndjson).

What Kibana's import API would refuse, and what imports but breaks when opened (Kibana 8.11 to 9.x),
checked on every shipped object, one class per concern (as detection-rules' test_all_rules does): the file
itself, the envelope and migration versions, ids and references, JSON-encoded attributes, attribute key
sets, saved searches, Lens, the dashboard, the fields every object uses (against the results index
template), and the sha256 version lock.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from connector.kibana.saved_objects import (
    ANNOTATED_EVENTS_SEARCH_ID,
    BUNDLE_FILE,
    DASHBOARD_ID,
    EVENTS_DATA_VIEW_ID,
    MINIMUM_KIBANA_VERSION,
    RESULTS_DATA_VIEW_ID,
    RESULTS_SEARCH_ID,
    SCORED_ALERTS_SEARCH_ID,
    VERSION_LOCK_FILE,
    FieldUse,
    VersionLockError,
    build_version_lock,
    canonical_json,
    data_view_ids,
    fields_used,
    kql_fields,
    object_sha256,
    render_bundle,
    render_version_lock,
    saved_objects,
)
from connector.results import DEFAULT_RESULTS_INDEX, results_index_template
from tests.kibana_api import (
    CORE_MIGRATION_VERSION,
    DASHBOARD_KEYS,
    DASHBOARD_REFRESH_KEYS,
    IMPORTABLE_TYPES,
    INDEX_PATTERN_KEYS,
    LENS_KEYS,
    LENS_STATE_KEYS,
    LENS_VISUALIZATION_TYPES,
    OPTIONAL_ENVELOPE_KEYS,
    REQUIRED_ENVELOPE_KEYS,
    SEARCH_KEYS,
    SEMVER,
    TYPE_MIGRATION_VERSION,
    attribute_at,
    encoded_attribute_paths,
    saved_object_problems,
    version_tuple,
)
from tests.kibana_api import MINIMUM_KIBANA_VERSION as KIBANA_API_MINIMUM_VERSION

BUNDLE_DIR = Path(__file__).resolve().parents[2] / "kibana_saved_objects"
BUNDLE_PATH = BUNDLE_DIR / BUNDLE_FILE
LOCK_PATH = BUNDLE_DIR / VERSION_LOCK_FILE
EXTERNAL_REFERENCES_PATH = BUNDLE_DIR / "external_references.json"

# What Kibana's import accepts lives in tests/kibana_api.py, shared with the Kibana stand-in of the installer
# tests; what follows are this bundle's own rules.
LENS_FORM_BASED_MINIMUM = "8.6.0"  # the indexpattern -> formBased rename
DASHBOARD_OPTIONS = {"useMargins", "syncColors", "syncCursor", "syncTooltips", "hidePanelTitles"}
SEARCH_SOURCE_INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"
LENS_LAYER_REF = "indexpattern-datasource-layer-{}"
RECORDS = "___records___"
GRID_COLUMNS = 48
# The in-place search reads source events, whose mapping we do not own: only these names are allowed.
IN_PLACE_FIELDS = re.compile(r"^(outliers\..+|tags|@timestamp|host\.name|OsqueryFilter\..+)$")
# Lens operations -> Elasticsearch field types they aggregate.
OPERATION_FIELD_TYPES = {
    "terms": {"keyword", "long", "integer", "double", "boolean", "ip"},
    "date_histogram": {"date", "date_nanos"},
    "range": {"long", "integer", "double", "float", "scaled_float"},
}
AGGREGATING_ROLES = {"sort", "breakdown"}  # and every "lens <operation>" role
# Roles whose field Kibana reads or shows without aggregating it: only its existence is checked.
SHOWN_ROLES = {"time field", "field format", "field label", "column", "query", "filter"}


def is_aggregating(role: str) -> bool:
    return role.startswith("lens ") or role in AGGREGATING_ROLES


def template_fields(properties: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted field name -> type for a mapping's properties, with multi-field sub-fields (``a.keyword``)."""
    fields: dict[str, str] = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            fields.update(template_fields(spec["properties"], f"{path}."))
        if "type" in spec:
            fields[path] = spec["type"]
        for sub_name, sub_spec in spec.get("fields", {}).items():
            fields[f"{path}.{sub_name}"] = sub_spec["type"]
    return fields


RESULTS_FIELDS = template_fields(
    results_index_template(DEFAULT_RESULTS_INDEX)["template"]["mappings"]["properties"]
)


def _parse_lines() -> list[Any]:
    """The bundle lines that parse (the line test reports the others), so that a broken line fails tests
    instead of the whole module's collection."""
    parsed = []
    if BUNDLE_PATH.exists():
        for line in BUNDLE_PATH.read_text(encoding="utf-8").splitlines():
            try:
                parsed.append(json.loads(line))
            except ValueError:
                continue
    return parsed


OBJECTS: list[dict[str, Any]] = [item for item in _parse_lines() if isinstance(item, dict) and "type" in item]
BY_KEY: dict[str, dict[str, Any]] = {f"{item['type']}:{item.get('id')}": item for item in OBJECTS}


def key_of(saved_object: Mapping[str, Any]) -> str:
    return f"{saved_object['type']}:{saved_object['id']}"


def objects_of(*types: str) -> list[Any]:
    return [pytest.param(item, id=key_of(item)) for item in OBJECTS if item["type"] in types]


def all_objects() -> list[Any]:
    return [pytest.param(item, id=key_of(item)) for item in OBJECTS]


def lens_layers(lens: Mapping[str, Any]) -> dict[str, Any]:
    return lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]


def dashboard_panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    return json.loads(dashboard["attributes"]["panelsJSON"])


def field_uses(data_view_id: str | None = None, *, aggregating: bool | None = None) -> list[Any]:
    """(object, field use) of every object reading ``data_view_id`` (any, if ``None``), as params with
    readable ids; ``aggregating`` keeps only the uses that do (True) or do not (False) aggregate."""
    params = []
    for item in OBJECTS:
        if data_view_id is None or data_view_id in data_view_ids(item):
            for use in fields_used(item):
                if aggregating is None or is_aggregating(use.role) == aggregating:
                    params.append(pytest.param(item, use, id=f"{key_of(item)}-{use.role}-{use.field}"))
    return params


# ------------------------------------------------------------------------------------------ the file


class TestBundleFile:
    """The NDJSON file as the import route reads it: one JSON object per line, generated, never edited."""

    def test_file_is_exactly_what_render_bundle_produces(self) -> None:
        """The file is generated: regenerate with ``python scripts/build_saved_objects.py``."""
        assert BUNDLE_PATH.read_text(encoding="utf-8") == render_bundle()

    def test_every_line_is_one_json_object_with_sorted_keys(self) -> None:
        """No blank, unparsable or non-object line; each line is the compact sorted-keys encoding of itself
        (a one-character change in key order or spacing would be a hand edit)."""
        lines = BUNDLE_PATH.read_text(encoding="utf-8").split("\n")
        assert lines[-1] == "", "the file ends with a newline"
        for number, line in enumerate(lines[:-1], start=1):
            assert line.strip(), f"line {number} is blank"
            parsed = json.loads(line)
            assert isinstance(parsed, dict), f"line {number} is not an object"
            assert json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False) == line, (
                f"line {number} is not canonical (sorted keys, compact)"
            )

    def test_one_object_per_line_and_no_export_summary_line(self) -> None:
        """Every line is a saved object; an export summary line (``exportedCount``) is not shipped."""
        lines = BUNDLE_PATH.read_text(encoding="utf-8").splitlines()
        assert len(OBJECTS) == len(lines) == len(saved_objects())
        assert all("exportedCount" not in json.loads(line) for line in lines)

    def test_file_name_and_size_are_within_the_import_limits(self) -> None:
        """``.ndjson`` extension (else 400 Invalid file extension), below maxImportPayloadBytes and
        maxImportExportSize."""
        assert BUNDLE_PATH.suffix == ".ndjson"
        assert BUNDLE_PATH.stat().st_size < 26214400
        assert len(OBJECTS) <= 10000

    def test_objects_are_in_dependency_order(self) -> None:
        """Data views, then searches, then Lens, then the dashboard: each object after what it references."""
        order = {"index-pattern": 0, "search": 1, "visualization": 2, "lens": 2, "dashboard": 3}
        ranks = [order[item["type"]] for item in OBJECTS]
        assert ranks == sorted(ranks)


# ------------------------------------------------------------------------------------------ envelope


class TestEnvelope:
    """Envelope keys and migration versions: what makes the import accept, migrate and validate a line."""

    @pytest.mark.parametrize("saved_object", all_objects())
    def test_kibana_would_import_it(self, saved_object: dict[str, Any]) -> None:
        """The checks the Kibana stand-in of the installer tests applies to every uploaded object (envelope,
        versions, references, schema keys, encoded attributes) find nothing."""
        assert saved_object_problems(saved_object) == []

    def test_the_shared_checks_stand_in_for_the_minimum_kibana_version(self) -> None:
        """tests/kibana_api.py judges objects as the Kibana version the bundle declares as its minimum."""
        assert KIBANA_API_MINIMUM_VERSION == MINIMUM_KIBANA_VERSION

    @pytest.mark.parametrize("saved_object", all_objects())
    def test_envelope_keys(self, saved_object: dict[str, Any]) -> None:
        """All required keys; nothing but ``managed`` besides them (no legacy ``migrationVersion`` next to
        ``typeMigrationVersion``, no export-only fields)."""
        keys = set(saved_object)
        assert keys >= REQUIRED_ENVELOPE_KEYS
        assert keys - REQUIRED_ENVELOPE_KEYS <= OPTIONAL_ENVELOPE_KEYS
        assert isinstance(saved_object["attributes"], dict)
        assert isinstance(saved_object["references"], list)
        if "managed" in saved_object:
            assert saved_object["managed"] is False, "analysts may edit the objects"

    @pytest.mark.parametrize("saved_object", all_objects())
    def test_type_is_importable(self, saved_object: dict[str, Any]) -> None:
        """An unknown type is refused per object (``unsupported_type``)."""
        assert saved_object["type"] in IMPORTABLE_TYPES

    @pytest.mark.parametrize("saved_object", all_objects())
    def test_id_is_stable_readable_and_valid_in_9x(self, saved_object: dict[str, Any]) -> None:
        """``rcp-`` prefix, lower-case words; no ``/`` (recent 9.x rejects it)."""
        assert re.fullmatch(r"rcp-[a-z0-9]+(-[a-z0-9]+)*", saved_object["id"])

    @pytest.mark.parametrize("saved_object", all_objects())
    def test_core_migration_version(self, saved_object: dict[str, Any]) -> None:
        """Valid semver, the 8.8+ export value, not newer than the minimum Kibana version."""
        version = saved_object["coreMigrationVersion"]
        assert SEMVER.match(version)
        assert version == CORE_MIGRATION_VERSION
        assert version_tuple(version) <= version_tuple(MINIMUM_KIBANA_VERSION)

    @pytest.mark.parametrize("saved_object", all_objects())
    def test_type_migration_version(self, saved_object: dict[str, Any]) -> None:
        """TYPE_MIGRATION_VERSION's value for the type: valid semver, no model-version ``10.x`` value, not
        newer than the minimum Kibana version (an older Kibana refuses it as "belongs to a more recent
        version")."""
        version = saved_object["typeMigrationVersion"]
        assert SEMVER.match(version)
        assert version == TYPE_MIGRATION_VERSION[saved_object["type"]]
        assert version_tuple(version)[0] < 10
        assert version_tuple(version) <= version_tuple(MINIMUM_KIBANA_VERSION)

    @pytest.mark.parametrize("saved_object", objects_of("lens"))
    def test_form_based_lens_is_at_least_8_6(self, saved_object: dict[str, Any]) -> None:
        """A ``formBased`` document below 8.6.0 would go through the old ``indexpattern`` migrations."""
        assert version_tuple(saved_object["typeMigrationVersion"]) >= version_tuple(LENS_FORM_BASED_MINIMUM)

    @pytest.mark.parametrize("saved_object", all_objects())
    def test_reference_shape(self, saved_object: dict[str, Any]) -> None:
        """Each reference is exactly ``{name, type, id}`` of strings, names unique within the object."""
        names = []
        for reference in saved_object["references"]:
            assert set(reference) == {"name", "type", "id"}
            assert all(isinstance(value, str) and value for value in reference.values())
            names.append(reference["name"])
        assert len(names) == len(set(names))


# ------------------------------------------------------------------------------------- ids and references


def _external_references() -> list[dict[str, Any]]:
    return json.loads(EXTERNAL_REFERENCES_PATH.read_text(encoding="utf-8"))


class TestIdsAndReferences:
    """Unique ids, and references that resolve inside the bundle to an object of the referenced type."""

    def test_type_and_id_pairs_are_unique(self) -> None:
        """A repeated ``type:id`` makes the whole import fail with 400."""
        keys = [key_of(item) for item in OBJECTS]
        assert len(keys) == len(set(keys))

    def test_the_expected_objects_are_shipped(self) -> None:
        """Two data views, three searches, four Lens, one dashboard, under their stable ids."""
        assert sorted(key_of(item) for item in OBJECTS) == [
            "dashboard:rcp-dashboard",
            "index-pattern:rcp-dataview-events",
            "index-pattern:rcp-dataview-results",
            "lens:rcp-lens-confidence",
            "lens:rcp-lens-outliers-over-time",
            "lens:rcp-lens-outliers-per-host",
            "lens:rcp-lens-top-pairs",
            "search:rcp-search-annotated-events",
            "search:rcp-search-rare-children",
            "search:rcp-search-scored-alerts",
        ]

    def test_external_references_file_is_well_formed(self) -> None:
        """Deliberately unshipped targets are listed as ``{type, id, reason}`` and are not in the bundle."""
        for entry in _external_references():
            assert set(entry) == {"type", "id", "reason"}
            assert f"{entry['type']}:{entry['id']}" not in BY_KEY

    @pytest.mark.parametrize("saved_object", all_objects())
    def test_every_reference_resolves_inside_the_bundle(self, saved_object: dict[str, Any]) -> None:
        """Kibana checks only index-pattern/search targets; a missing lens target imports and then breaks
        the panel. So every target must be a bundle object of the reference's type, on an earlier line
        (or be listed in external_references.json)."""
        external = {f"{entry['type']}:{entry['id']}" for entry in _external_references()}
        position = {key_of(item): number for number, item in enumerate(OBJECTS)}
        for reference in saved_object["references"]:
            target = f"{reference['type']}:{reference['id']}"
            if target in external:
                continue
            assert target in BY_KEY, f"{reference['name']} -> {target} is not in the bundle"
            assert position[target] < position[key_of(saved_object)], f"{target} comes after its user"


# ------------------------------------------------------------------------------------- encoded attributes


def encoded_attributes() -> Iterator[Any]:
    """(object, attribute path, expected JSON type) of every JSON-encoded attribute."""
    for item in OBJECTS:
        for path, kind in encoded_attribute_paths(item):
            yield pytest.param(item, path, kind, id=f"{key_of(item)}-{path}")


class TestEncodedAttributes:
    """Attributes Kibana stores as JSON text: each is a string that parses to the right kind of value."""

    @pytest.mark.parametrize(("saved_object", "path", "kind"), list(encoded_attributes()))
    def test_encoded_attribute_parses(self, saved_object: dict[str, Any], path: str, kind: type) -> None:
        """A string (not an inlined object), valid JSON, of the kind Kibana expects (array or object)."""
        text = attribute_at(saved_object["attributes"], path)
        assert isinstance(text, str)
        assert isinstance(json.loads(text), kind)

    @pytest.mark.parametrize("saved_object", objects_of("lens"))
    def test_lens_state_is_a_real_object(self, saved_object: dict[str, Any]) -> None:
        """Lens ``state`` is an object, not a string; its query and filters are objects and arrays."""
        state = saved_object["attributes"]["state"]
        assert isinstance(state, dict)
        assert isinstance(state["query"], dict)
        assert isinstance(state["filters"], list)


# ------------------------------------------------------------------------------------------ attribute keys


class TestAttributeKeys:
    """Attribute key sets: schemas of search and dashboard forbid unknown keys; the others follow Kibana."""

    @pytest.mark.parametrize("saved_object", objects_of("search"))
    def test_search_keys_within_the_8_8_schema(self, saved_object: dict[str, Any]) -> None:
        """Only 8.8.0 base-schema keys (later ones like ``sampleSize`` are refused by older 8.x)."""
        attributes = saved_object["attributes"]
        assert set(attributes) <= SEARCH_KEYS
        assert isinstance(attributes["title"], str)
        assert set(attributes["kibanaSavedObjectMeta"]) == {"searchSourceJSON"}

    @pytest.mark.parametrize("saved_object", objects_of("dashboard"))
    def test_dashboard_keys_within_the_v1_schema(self, saved_object: dict[str, Any]) -> None:
        """Only schema v1 keys; ``kibanaSavedObjectMeta.searchSourceJSON`` present; refreshInterval keys."""
        attributes = saved_object["attributes"]
        assert set(attributes) <= DASHBOARD_KEYS
        assert isinstance(attributes["title"], str)
        assert set(attributes["kibanaSavedObjectMeta"]) == {"searchSourceJSON"}
        assert set(attributes["refreshInterval"]) <= DASHBOARD_REFRESH_KEYS

    @pytest.mark.parametrize("saved_object", objects_of("index-pattern"))
    def test_data_view_keys(self, saved_object: dict[str, Any]) -> None:
        """The keys Kibana writes for a data view; a title (the pattern) and ``@timestamp`` as time field;
        no references."""
        attributes = saved_object["attributes"]
        assert set(attributes) <= INDEX_PATTERN_KEYS
        assert attributes["timeFieldName"] == "@timestamp"
        assert saved_object["references"] == []

    @pytest.mark.parametrize("saved_object", objects_of("lens"))
    def test_lens_keys(self, saved_object: dict[str, Any]) -> None:
        """Lens attribute and state keys as Kibana writes them; a string title (9.x checks it)."""
        attributes = saved_object["attributes"]
        assert set(attributes) <= LENS_KEYS
        assert isinstance(attributes["title"], str)
        assert set(attributes["state"]) <= LENS_STATE_KEYS
        assert attributes["visualizationType"] in LENS_VISUALIZATION_TYPES

    def test_data_view_patterns(self) -> None:
        """The results data view covers the results index and its siblings; the other the source events."""
        assert (
            BY_KEY[f"index-pattern:{RESULTS_DATA_VIEW_ID}"]["attributes"]["title"] == "outliers-rare-child*"
        )
        assert BY_KEY[f"index-pattern:{EVENTS_DATA_VIEW_ID}"]["attributes"]["title"] == "osquery-*"


# ------------------------------------------------------------------------------------------ searches


class TestSearches:
    """Saved searches: the searchSource points at its data view through a reference, never inline."""

    @pytest.mark.parametrize("saved_object", objects_of("search"))
    def test_search_source_uses_index_ref_name(self, saved_object: dict[str, Any]) -> None:
        """``indexRefName`` is ``kibanaSavedObjectMeta.searchSourceJSON.index`` with a matching index-pattern
        reference; no inlined ``index``; filters with a data view go through their own reference too."""
        source = json.loads(saved_object["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        references = {reference["name"]: reference for reference in saved_object["references"]}
        assert "index" not in source
        assert source["indexRefName"] == SEARCH_SOURCE_INDEX_REF
        assert references[SEARCH_SOURCE_INDEX_REF]["type"] == "index-pattern"
        used = {SEARCH_SOURCE_INDEX_REF}
        for number, search_filter in enumerate(source["filter"]):
            ref_name = search_filter["meta"]["indexRefName"]
            assert ref_name == f"kibanaSavedObjectMeta.searchSourceJSON.filter[{number}].meta.index"
            assert references[ref_name]["type"] == "index-pattern"
            used.add(ref_name)
        assert set(references) == used, "every reference is used by the searchSource"

    @pytest.mark.parametrize("saved_object", objects_of("search"))
    def test_query_sort_and_columns(self, saved_object: dict[str, Any]) -> None:
        """KQL query; ``sort`` is a list of [field, asc|desc] pairs; columns are unique field names."""
        attributes = saved_object["attributes"]
        source = json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert source["query"]["language"] == "kuery"
        assert isinstance(source["query"]["query"], str)
        for pair in attributes["sort"]:
            assert len(pair) == 2 and pair[1] in {"asc", "desc"}
        columns = attributes["columns"]
        assert columns and len(columns) == len(set(columns))
        assert attributes["isTextBasedQuery"] is False

    def test_rare_child_processes_search(self) -> None:
        """Host, parent, child, child command line, user, confidence, summary; newest first; results."""
        search = BY_KEY[f"search:{RESULTS_SEARCH_ID}"]
        assert search["attributes"]["title"] == "Rare child processes"
        assert search["attributes"]["columns"] == [
            "host.name",
            "outliers.aggregator",
            "outliers.term",
            "process.command_line",
            "user.name",
            "outliers.confidence",
            "outliers.summary",
        ]
        assert search["attributes"]["sort"] == [["@timestamp", "desc"]]
        assert data_view_ids(search) == {RESULTS_DATA_VIEW_ID}

    def test_annotated_events_search(self) -> None:
        """Over the source events, only events tagged ``outlier``, showing outliers.* arrays."""
        search = BY_KEY[f"search:{ANNOTATED_EVENTS_SEARCH_ID}"]
        source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert source["query"] == {"language": "kuery", "query": "tags:outlier"}
        assert data_view_ids(search) == {EVENTS_DATA_VIEW_ID}
        assert search["attributes"]["sort"] == [["@timestamp", "desc"]]
        assert any(column.startswith("outliers.") for column in search["attributes"]["columns"])


# ------------------------------------------------------------------------------------------ lens


class TestLens:
    """Lens in the ``formBased`` shape: layers, their references, columns and accessors agree."""

    @pytest.mark.parametrize("saved_object", objects_of("lens"))
    def test_form_based_datasource_only(self, saved_object: dict[str, Any]) -> None:
        """Only ``formBased`` (the pre-8.6 ``indexpattern`` key is not mixed in), at least one layer."""
        states = saved_object["attributes"]["state"]["datasourceStates"]
        assert set(states) == {"formBased"}
        assert lens_layers(saved_object)

    @pytest.mark.parametrize("saved_object", objects_of("lens"))
    def test_each_layer_has_its_reference_and_each_reference_its_layer(
        self, saved_object: dict[str, Any]
    ) -> None:
        """``indexpattern-datasource-layer-<layerId>`` (type index-pattern) per layer, no other reference:
        a layer without one is silently dropped."""
        expected = {LENS_LAYER_REF.format(layer_id) for layer_id in lens_layers(saved_object)}
        references = {reference["name"]: reference for reference in saved_object["references"]}
        assert set(references) == expected
        assert {reference["type"] for reference in references.values()} == {"index-pattern"}

    @pytest.mark.parametrize("saved_object", objects_of("lens"))
    def test_column_order_lists_exactly_the_columns(self, saved_object: dict[str, Any]) -> None:
        """``columnOrder`` holds each column id once; the count column uses ``___records___``; a terms order
        points at a column of the same layer."""
        for layer in lens_layers(saved_object).values():
            order = layer["columnOrder"]
            assert len(order) == len(set(order))
            assert set(order) == set(layer["columns"])
            for column in layer["columns"].values():
                assert isinstance(column["isBucketed"], bool)
                if column["operationType"] == "count":
                    assert column["sourceField"] == RECORDS
                order_by = column.get("params", {}).get("orderBy", {})
                if order_by.get("type") == "column":
                    assert order_by["columnId"] in layer["columns"]

    @pytest.mark.parametrize("saved_object", objects_of("lens"))
    def test_visualization_accessors_are_columns_of_their_layer(self, saved_object: dict[str, Any]) -> None:
        """Every accessor (xAccessor, splitAccessor, accessors, datatable columns and sorting) names a
        column of the same layer, and the visualization's layers are the datasource's layers."""
        layers = lens_layers(saved_object)
        visualization = saved_object["attributes"]["state"]["visualization"]
        if saved_object["attributes"]["visualizationType"] == "lnsXY":
            assert {layer["layerId"] for layer in visualization["layers"]} == set(layers)
            for layer in visualization["layers"]:
                columns = layers[layer["layerId"]]["columns"]
                accessors = [*layer["accessors"], layer.get("xAccessor"), layer.get("splitAccessor")]
                assert layer["layerType"] == "data"
                assert set(accessor for accessor in accessors if accessor is not None) <= set(columns)
        else:
            assert saved_object["attributes"]["visualizationType"] == "lnsDatatable"
            columns = layers[visualization["layerId"]]["columns"]
            shown = [column["columnId"] for column in visualization["columns"]]
            assert set(shown) == set(columns)
            assert visualization["sorting"]["columnId"] in columns

    @pytest.mark.parametrize("saved_object", objects_of("lens"))
    def test_lens_reads_the_results_data_view(self, saved_object: dict[str, Any]) -> None:
        """The analysis visuals read the results data view."""
        assert data_view_ids(saved_object) == {RESULTS_DATA_VIEW_ID}

    @pytest.mark.parametrize("saved_object", objects_of("lens"))
    def test_lens_uses_only_outlier_fields_host_and_time(self, saved_object: dict[str, Any]) -> None:
        """No source schema in the analysis visuals: outliers.*, host.name and @timestamp only, names that
        exist whether outliers went to the results index or in place."""
        for use in fields_used(saved_object):
            assert use.field.startswith("outliers.") or use.field in {"host.name", "@timestamp"}, use

    def test_the_four_visuals(self) -> None:
        """Over time split by summary; parent -> child table with counts; per host; confidence histogram."""

        def shape(object_id: str) -> tuple[str, list[tuple[str, str]]]:
            lens = BY_KEY[f"lens:{object_id}"]
            (layer,) = lens_layers(lens).values()
            columns = [layer["columns"][column_id] for column_id in layer["columnOrder"]]
            return lens["attributes"]["visualizationType"], [
                (column["operationType"], column["sourceField"]) for column in columns
            ]

        assert shape("rcp-lens-outliers-over-time") == (
            "lnsXY",
            [("terms", "outliers.summary.keyword"), ("date_histogram", "@timestamp"), ("count", RECORDS)],
        )
        assert shape("rcp-lens-top-pairs") == (
            "lnsDatatable",
            [("terms", "outliers.aggregator"), ("terms", "outliers.term"), ("count", RECORDS)],
        )
        assert shape("rcp-lens-outliers-per-host") == ("lnsXY", [("terms", "host.name"), ("count", RECORDS)])
        assert shape("rcp-lens-confidence") == (
            "lnsXY",
            [("range", "outliers.confidence"), ("count", RECORDS)],
        )


# ------------------------------------------------------------------------------------------ dashboard


class TestDashboard:
    """The dashboard: panels by reference on a 48-column grid, default time range of 7 days."""

    @pytest.fixture
    def dashboard(self) -> dict[str, Any]:
        return BY_KEY[f"dashboard:{DASHBOARD_ID}"]

    def test_title_time_range_and_options(self, dashboard: dict[str, Any]) -> None:
        """ "Rare child processes", restores now-7d -> now, optionsJSON has the keys Kibana writes."""
        attributes = dashboard["attributes"]
        assert attributes["title"] == "Rare child processes"
        assert (attributes["timeRestore"], attributes["timeFrom"], attributes["timeTo"]) == (
            True,
            "now-7d",
            "now",
        )
        assert set(json.loads(attributes["optionsJSON"])) == DASHBOARD_OPTIONS
        assert json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"]) == {
            "filter": [],
            "query": {"language": "kuery", "query": ""},
        }

    def test_panels_are_by_reference_with_prefixed_reference_names(self, dashboard: dict[str, Any]) -> None:
        """Each panel's ``panelRefName`` has the reference ``<panelIndex>:<panelRefName>`` of the panel's
        type; every reference belongs to a panel; no unprefixed ``panel_*`` reference is mixed in."""
        references = {reference["name"]: reference for reference in dashboard["references"]}
        used = set()
        for panel in dashboard_panels(dashboard):
            assert panel["panelRefName"] == f"panel_{panel['panelIndex']}"
            name = f"{panel['panelIndex']}:{panel['panelRefName']}"
            assert name in references, f"panel {panel['panelIndex']} has no reference {name}"
            assert references[name]["type"] == panel["type"]
            assert "id" not in panel, "legacy inline id"
            used.add(name)
        assert set(references) == used
        assert all(":" in name for name in references)

    def test_panel_fields_and_versions(self, dashboard: dict[str, Any]) -> None:
        """panelIndex unique and equal to gridData.i; panel version semver, not above the minimum."""
        panels = dashboard_panels(dashboard)
        indexes = [panel["panelIndex"] for panel in panels]
        assert len(indexes) == len(set(indexes))
        for panel in panels:
            assert panel["gridData"]["i"] == panel["panelIndex"]
            assert SEMVER.match(panel["version"])
            assert version_tuple(panel["version"]) <= version_tuple(MINIMUM_KIBANA_VERSION)
            assert isinstance(panel["embeddableConfig"], dict)

    def test_grid_layout_fits_48_columns_without_overlap(self, dashboard: dict[str, Any]) -> None:
        """Integer x, y, w, h; x + w <= 48; no two panels share a grid cell."""
        cells: dict[tuple[int, int], str] = {}
        for panel in dashboard_panels(dashboard):
            grid = panel["gridData"]
            assert all(isinstance(grid[key], int) for key in ("x", "y", "w", "h"))
            assert grid["x"] >= 0 and grid["y"] >= 0 and grid["w"] > 0 and grid["h"] > 0
            assert grid["x"] + grid["w"] <= GRID_COLUMNS
            for column in range(grid["x"], grid["x"] + grid["w"]):
                for row in range(grid["y"], grid["y"] + grid["h"]):
                    assert (column, row) not in cells, (
                        f"{panel['panelIndex']} overlaps {cells[(column, row)]}"
                    )
                    cells[(column, row)] = panel["panelIndex"]

    def test_dashboard_combines_the_visuals_and_the_saved_search(self, dashboard: dict[str, Any]) -> None:
        """Every Lens object, the results search and the scored alerts search are panels of the dashboard."""
        targets = {key_of(reference) for reference in dashboard["references"]}
        expected = {key_of(item) for item in OBJECTS if item["type"] == "lens"} | {
            f"search:{RESULTS_SEARCH_ID}",
            f"search:{SCORED_ALERTS_SEARCH_ID}",
        }
        assert targets == expected


# ------------------------------------------------------------------------------------------ fields


class TestFields:
    """Every field an object names exists where the object reads it."""

    def test_template_fields_include_sub_fields(self) -> None:
        """The template walk yields dotted names and multi-field sub-fields (keyword, text)."""
        assert RESULTS_FIELDS["outliers.summary"] == "text"
        assert RESULTS_FIELDS["outliers.summary.keyword"] == "keyword"
        assert RESULTS_FIELDS["OsqueryFilter.cmdline"] == "keyword"
        assert RESULTS_FIELDS["OsqueryFilter.cmdline.text"] == "text"
        assert RESULTS_FIELDS["outliers.top_terms.count"] == "long"

    def test_fields_used_finds_every_kind_of_use(self) -> None:
        """The extractor sees columns, sort, breakdown, query, Lens columns, time fields, formats, labels."""
        search = BY_KEY[f"search:{RESULTS_SEARCH_ID}"]
        assert [(use.role, use.field) for use in fields_used(search)] == [
            ("column", "host.name"),
            ("column", "outliers.aggregator"),
            ("column", "outliers.term"),
            ("column", "process.command_line"),
            ("column", "user.name"),
            ("column", "outliers.confidence"),
            ("column", "outliers.summary"),
            ("sort", "@timestamp"),
            ("breakdown", "outliers.summary.keyword"),
            ("query", "outliers.model_type"),
        ]
        assert FieldUse("tags", "query") in fields_used(BY_KEY[f"search:{ANNOTATED_EVENTS_SEARCH_ID}"])
        over_time = {(use.role, use.field) for use in fields_used(BY_KEY["lens:rcp-lens-outliers-over-time"])}
        assert over_time == {
            ("lens terms", "outliers.summary.keyword"),
            ("lens date_histogram", "@timestamp"),
        }
        data_view = {
            (use.role, use.field) for use in fields_used(BY_KEY[f"index-pattern:{RESULTS_DATA_VIEW_ID}"])
        }
        assert ("time field", "@timestamp") in data_view
        assert ("field format", "outliers.confidence") in data_view
        assert ("field label", "outliers.aggregator") in data_view

    @pytest.mark.parametrize(
        ("query", "fields"),
        [
            ("", []),
            ("tags:outlier", ["tags"]),
            ('host.name:"WS:1" and outliers.term : cmd.exe', ["host.name", "outliers.term"]),
            (
                "not @timestamp >= now-1d or outliers.summary.keyword:*",
                ["@timestamp", "outliers.summary.keyword"],
            ),
            ("outliers.confidence<0.5", ["outliers.confidence"]),
        ],
        ids=["empty", "one field", "quoted colon", "range and exists", "range without spaces"],
    )
    def test_kql_fields(self, query: str, fields: list[str]) -> None:
        """Field names are read before ``:`` or a range operator, never inside a quoted value."""
        assert kql_fields(query) == fields

    @pytest.mark.parametrize(("saved_object", "use"), field_uses(RESULTS_DATA_VIEW_ID))
    def test_results_objects_use_template_fields(self, saved_object: dict[str, Any], use: FieldUse) -> None:
        """Columns, sorts, breakdowns, queries, Lens columns, formats and labels of every object on the
        results data view name a field of the results index template (connector.results)."""
        assert use.field in RESULTS_FIELDS, f"{use.field} ({use.role}) is not in the results index template"

    @pytest.mark.parametrize(("saved_object", "use"), field_uses())
    def test_every_role_is_either_aggregating_or_shown(
        self, saved_object: dict[str, Any], use: FieldUse
    ) -> None:
        """A role neither list knows (a new kind of use) would escape the aggregation check below."""
        assert is_aggregating(use.role) or use.role in SHOWN_ROLES, use

    def test_the_aggregated_uses_are_sorts_breakdowns_and_lens_buckets(self) -> None:
        """The aggregation check below runs on every sort, breakdown and Lens bucket of the results views."""
        roles = {param.values[1].role for param in field_uses(RESULTS_DATA_VIEW_ID, aggregating=True)}
        assert roles == {"sort", "breakdown", "lens terms", "lens date_histogram", "lens range"}

    @pytest.mark.parametrize(("saved_object", "use"), field_uses(RESULTS_DATA_VIEW_ID, aggregating=True))
    def test_aggregated_fields_are_aggregatable(self, saved_object: dict[str, Any], use: FieldUse) -> None:
        """Lens buckets, sorts and breakdowns need doc values: no text field; each Lens operation gets a
        field type it can aggregate (terms: keyword/number, date_histogram: date, range: number)."""
        field_type = RESULTS_FIELDS.get(use.field)
        if use.role.startswith("lens "):
            assert field_type in OPERATION_FIELD_TYPES[use.role.removeprefix("lens ")], (use, field_type)
        else:
            assert field_type not in {None, "text"}, (use, field_type)

    @pytest.mark.parametrize(("saved_object", "use"), field_uses(EVENTS_DATA_VIEW_ID))
    def test_in_place_objects_use_only_outlier_and_event_fields(
        self, saved_object: dict[str, Any], use: FieldUse
    ) -> None:
        """Over source events (mapping not ours): outliers.*, tags, @timestamp, host.name, OsqueryFilter.*."""
        assert IN_PLACE_FIELDS.match(use.field), f"{use.field} ({use.role})"

    @pytest.mark.parametrize("saved_object", all_objects())
    def test_every_object_reads_a_known_data_view(self, saved_object: dict[str, Any]) -> None:
        """No object outside the two data views (so every field use above was checked)."""
        assert data_view_ids(saved_object) <= {RESULTS_DATA_VIEW_ID, EVENTS_DATA_VIEW_ID}


# ------------------------------------------------------------------------------------------ version lock


def lock() -> dict[str, Any]:
    return json.loads(LOCK_PATH.read_text(encoding="utf-8"))


class TestVersionLock:
    """versions.json: minimum Kibana version and a sha256 + version per object (a changed object needs a
    raised version)."""

    def test_lock_file_is_generated(self) -> None:
        """The file is exactly what the generator writes for the current definitions."""
        assert LOCK_PATH.read_text(encoding="utf-8") == render_version_lock(
            build_version_lock(saved_objects())
        )

    def test_minimum_kibana_version_is_recorded(self) -> None:
        """The minimum version is data; every migration version in the bundle is at or below it."""
        recorded = lock()
        assert recorded["minimum_kibana_version"] == MINIMUM_KIBANA_VERSION
        assert SEMVER.match(recorded["minimum_kibana_version"])
        assert recorded["minimum_kibana_version_reason"]
        assert recorded["core_migration_version"] == CORE_MIGRATION_VERSION
        for item in OBJECTS:
            assert recorded["type_migration_versions"][item["type"]] == item["typeMigrationVersion"]

    def test_lock_lists_exactly_the_bundle_objects(self) -> None:
        """One entry per ``type:id`` of the bundle, none stale."""
        assert set(lock()["objects"]) == set(BY_KEY)

    @pytest.mark.parametrize("saved_object", all_objects())
    def test_content_matches_its_locked_version(self, saved_object: dict[str, Any]) -> None:
        """The sha256 of the object's canonical JSON is the locked one: content changed without a version
        bump fails here (bump ``version`` in connector/kibana/saved_objects.py, then regenerate)."""
        entry = lock()["objects"][key_of(saved_object)]
        digest = hashlib.sha256(canonical_json(saved_object).encode("utf-8")).hexdigest()
        assert digest == entry["sha256"], (
            f"{key_of(saved_object)} changed without a version bump (locked version {entry['version']})"
        )
        declared = {item.key: item.version for item in saved_objects()}
        assert isinstance(entry["version"], int) and entry["version"] >= 1
        assert declared[key_of(saved_object)] == entry["version"]

    def test_changed_content_without_a_bump_is_refused(self) -> None:
        """build_version_lock refuses an object whose content differs from the lock at the same version."""
        objects = saved_objects()
        previous = build_version_lock(objects)
        first = objects[0]
        changed = dataclasses.replace(first, attributes={**first.attributes, "name": "changed"})
        with pytest.raises(
            VersionLockError,
            match=rf"{re.escape(first.key)}: content changed .* set version={first.version + 1}",
        ):
            build_version_lock([changed, *objects[1:]], previous)

    def test_changed_content_with_a_bump_is_locked(self) -> None:
        """With the version raised, the new sha256 and version are recorded."""
        objects = saved_objects()
        previous = build_version_lock(objects)
        first = objects[0]
        bumped = first.version + 1
        changed = dataclasses.replace(
            first, version=bumped, attributes={**first.attributes, "name": "changed"}
        )
        entry = build_version_lock([changed, *objects[1:]], previous)["objects"][first.key]
        assert entry["version"] == bumped
        assert entry["sha256"] == object_sha256(changed) != previous["objects"][first.key]["sha256"]

    def test_a_lower_version_is_refused(self) -> None:
        """Versions never go down, even for unchanged content."""
        objects = saved_objects()
        previous = copy.deepcopy(build_version_lock(objects))
        previous["objects"][objects[0].key]["version"] = 5
        with pytest.raises(VersionLockError, match="lower than the locked version 5"):
            build_version_lock(objects, previous)
