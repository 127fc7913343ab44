"""INI use-case files (ee-outliers compatible) -> validated, typed, frozen settings.

A use-case file holds one or more ``[terms_*]`` sections plus optional ``[whitelist_literals]``
and ``[whitelist_regexps]`` sections that apply to every use case of that file. An optional
ee-outliers *global* file adds ``[general]`` defaults, ``[assets]`` and global whitelists.

Every problem becomes a :class:`~connector.errors.ConfigError` naming the file, the section and
the option, and saying which values are allowed.
"""

from __future__ import annotations

import configparser
import difflib
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from connector.errors import ConfigError, UnknownUseCaseError
from connector.knowledge import load_knowledge
from connector.profiles import PROFILE_OPTIONS, DataProfile, apply_profile, profile_named

log = logging.getLogger(__name__)

EnumT = TypeVar("EnumT", bound=StrEnum)

TERMS_PREFIX = "terms"
RARECHILD_PREFIX = "rarechild_"
WHITELIST_LITERALS = "whitelist_literals"
WHITELIST_REGEXPS = "whitelist_regexps"
DEFAULT_TIMESTAMP_FIELD = "@timestamp"
DEFAULT_HOST_FIELD = "host.name"

# Used when a use case leaves the outlier texts out (ee-outliers would refuse such a model).
DEFAULT_OUTLIER_TYPE = "rare term"
DEFAULT_OUTLIER_REASON = "rare term for aggregator"
DEFAULT_OUTLIER_SUMMARY = "rare {term} for {aggregator}"


class TargetCountMethod(StrEnum):
    WITHIN_AGGREGATOR = "within_aggregator"
    ACROSS_AGGREGATORS = "across_aggregators"


class TriggerOn(StrEnum):
    LOW = "low"
    HIGH = "high"


class TriggerMethod(StrEnum):
    PERCENTILE = "percentile"
    PCT_OF_MAX_VALUE = "pct_of_max_value"
    PCT_OF_MEDIAN_VALUE = "pct_of_median_value"
    PCT_OF_AVG_VALUE = "pct_of_avg_value"
    MAD = "mad"
    MADPOS = "madpos"
    STDEV = "stdev"
    FLOAT = "float"
    COEFF_OF_VARIATION = "coeff_of_variation"


# Options a terms use case understands. Any other option is copied into every outlier record,
# as ee-outliers does, so it also takes part in whitelisting.
KNOWN_OPTIONS = frozenset(
    {
        "es_query_filter",
        "es_dsl_filter",
        "timestamp_field",
        "history_window_days",
        "history_window_hours",
        "es_index",
        "aggregator",
        "target",
        "target_count_method",
        "trigger_on",
        "trigger_method",
        "trigger_sensitivity",
        "min_target_buckets",
        "outlier_type",
        "outlier_reason",
        "outlier_summary",
        "run_model",
        "test_model",
        "use_derived_fields",
        "process_documents_chronologically",
        "should_notify",
        # ours, not ee-outliers': the field whose distinct values an explanation counts
        "host_field",
        # ours: where the events' fields live (connector/profiles.py)
        "profile",
        # ours: the time an event reached Elasticsearch; a since_checkpoint span selects on it
        "ingest_time_field",
    }
)


@dataclass(frozen=True)
class LiteralEntry:
    """Whitelisted when *every* value equals some string of the candidate (case-sensitive)."""

    name: str
    values: frozenset[str]


@dataclass(frozen=True)
class RegexEntry:
    """Whitelisted when *each* pattern matches (at the start) some string of the candidate."""

    name: str
    patterns: tuple[re.Pattern[str], ...]


@dataclass(frozen=True)
class Whitelist:
    literals: tuple[LiteralEntry, ...] = ()
    regexps: tuple[RegexEntry, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.literals or self.regexps)

    def combined(self, other: Whitelist) -> Whitelist:
        return Whitelist(self.literals + other.literals, self.regexps + other.regexps)


@dataclass(frozen=True, kw_only=True)
class GlobalSettings:
    """What an ee-outliers global configuration file contributes to every use case."""

    timestamp_field: str = DEFAULT_TIMESTAMP_FIELD
    es_index_pattern: str | None = None
    history_window_days: int = 0
    history_window_hours: int = 0
    assets: tuple[tuple[str, str], ...] = ()
    whitelist: Whitelist = field(default_factory=Whitelist)


@dataclass(frozen=True, kw_only=True)
class UseCase:
    """One ``[terms_*]`` section, validated."""

    section: str
    source_path: str
    aggregator: tuple[str, ...]
    target: tuple[str, ...]
    target_count_method: TargetCountMethod
    trigger_on: TriggerOn
    trigger_method: TriggerMethod
    trigger_sensitivity: float
    min_target_buckets: int | None = None
    es_query_filter: str | None = None
    es_dsl_filter: tuple[Mapping[str, Any], ...] | None = None
    elasticsearch_filter: str = ""
    timestamp_field: str = DEFAULT_TIMESTAMP_FIELD
    history_window_days: int = 0
    history_window_hours: int = 0
    es_index: str | None = None
    outlier_type: str = DEFAULT_OUTLIER_TYPE
    outlier_reason: str = DEFAULT_OUTLIER_REASON
    outlier_summary: str = DEFAULT_OUTLIER_SUMMARY
    run_model: bool = False
    test_model: bool = False
    use_derived_fields: bool = False
    process_documents_chronologically: bool = True
    should_notify: bool = False
    host_field: str = DEFAULT_HOST_FIELD
    #: when the event reached Elasticsearch (ECS: event.ingested); None: spans select on timestamp_field
    ingest_time_field: str | None = None
    extra_options: tuple[tuple[str, str], ...] = ()
    assets: tuple[tuple[str, str], ...] = ()
    whitelist: Whitelist = field(default_factory=Whitelist)
    # The data profile (connector/profiles.py): named in the section, or None to detect it from the data;
    # the options the section left for the profile to fill; the profile's event conditions once applied.
    profile: str | None = None
    profile_options: frozenset[str] = frozenset()
    profile_conditions: tuple[tuple[str, str], ...] = ()

    @property
    def model_name(self) -> str:
        """ee-outliers' name: the section name without its first 6 characters (``terms_``)."""
        return self.section[6:]


# Options a rarechild use case understands; others are copied into its records as for terms.
RARECHILD_OPTIONS = frozenset(
    {
        "es_query_filter",
        "es_dsl_filter",
        "timestamp_field",
        "es_index",
        "aggregator",
        "target",
        "host_field",
        "ingest_time_field",
        "path_field",
        "knowledge",
        "score_threshold",
        "max_alerts",
        "smoothing",
        "outlier_type",
        "outlier_reason",
        "outlier_summary",
        "run_model",
        "test_model",
        "should_notify",
        "profile",
    }
)
DEFAULT_PATH_FIELD = "OsqueryFilter.path"
DEFAULT_SCORE_THRESHOLD = 10.0
DEFAULT_MAX_ALERTS = 20
DEFAULT_SMOOTHING = 10.0
DEFAULT_RARECHILD_TYPE = "process execution"
DEFAULT_RARECHILD_REASON = "rare and suspicious child process"
DEFAULT_RARECHILD_SUMMARY = "{aggregator} started {term}: {explanation}"


@dataclass(frozen=True, kw_only=True)
class RareChildUseCase:
    """One ``[rarechild_*]`` section, validated: the scored model (docs/rarechild.md).

    It shares the terms model's filters, field options, whitelists and texts; ``knowledge`` is the path
    of its prior-knowledge file (None: the shipped one).
    """

    section: str
    source_path: str
    aggregator: tuple[str, ...]
    target: tuple[str, ...]
    es_query_filter: str | None = None
    es_dsl_filter: tuple[Mapping[str, Any], ...] | None = None
    elasticsearch_filter: str = ""
    timestamp_field: str = DEFAULT_TIMESTAMP_FIELD
    es_index: str | None = None
    host_field: str = DEFAULT_HOST_FIELD
    ingest_time_field: str | None = None
    path_field: str = DEFAULT_PATH_FIELD
    knowledge: str | None = None
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    max_alerts: int = DEFAULT_MAX_ALERTS
    smoothing: float = DEFAULT_SMOOTHING
    outlier_type: str = DEFAULT_RARECHILD_TYPE
    outlier_reason: str = DEFAULT_RARECHILD_REASON
    outlier_summary: str = DEFAULT_RARECHILD_SUMMARY
    run_model: bool = True
    test_model: bool = False
    should_notify: bool = False
    extra_options: tuple[tuple[str, str], ...] = ()
    assets: tuple[tuple[str, str], ...] = ()
    whitelist: Whitelist = field(default_factory=Whitelist)
    profile: str | None = None
    profile_options: frozenset[str] = frozenset()
    profile_conditions: tuple[tuple[str, str], ...] = ()

    @property
    def model_name(self) -> str:
        """The section name without ``rarechild_``."""
        return self.section[len(RARECHILD_PREFIX) :]


AnyUseCase = UseCase | RareChildUseCase


@dataclass(frozen=True)
class UseCaseFile:
    path: str
    use_cases: tuple[AnyUseCase, ...]

    def select(self, name: str | None = None) -> AnyUseCase:
        """The use case called ``name`` (section name, or model name without ``terms_``).

        Without a name: the first use case of the file.
        """
        if not self.use_cases:
            raise ConfigError("no [terms_*] or [rarechild_*] use case in this file", path=self.path)
        if name is None:
            return self.use_cases[0]
        for use_case in self.use_cases:
            if name in (use_case.section, use_case.model_name):
                return use_case
        known = ", ".join(u.section for u in self.use_cases)
        raise UnknownUseCaseError(f"unknown use case {name!r}; {self.path} defines: {known}")


def load_use_cases(path: str | Path, global_settings: GlobalSettings | None = None) -> UseCaseFile:
    """Read and validate a use-case file.

    :param global_settings: defaults and whitelists from an ee-outliers global file, if any.
    :raises ConfigError: naming the file, section and option of the first problem found.
    """
    settings = global_settings or GlobalSettings()
    # ee-outliers reads use-case files without interpolation, lower-cases option names and
    # refuses repeated sections and options.
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    _read(parser, path)
    file_whitelist = Whitelist(
        literals=_literal_entries(parser, path),
        regexps=_regex_entries(parser, path, invalid="error"),
    )
    whitelist = file_whitelist.combined(settings.whitelist)
    use_cases: list[AnyUseCase] = []
    for section in parser.sections():
        if section.startswith(TERMS_PREFIX):
            use_cases.append(_use_case(parser[section], path, settings, whitelist))
        elif section.startswith(RARECHILD_PREFIX):
            use_cases.append(_rarechild_use_case(parser[section], path, settings, whitelist))
        elif section not in (WHITELIST_LITERALS, WHITELIST_REGEXPS):
            log.warning("%s: [%s] is not a terms or rarechild use case; ignored", path, section)
    return UseCaseFile(str(path), tuple(use_cases))


def load_use_case(
    path: str | Path, name: str | None = None, *, global_config_path: str | Path | None = None
) -> AnyUseCase:
    """One use case of a file (see :meth:`UseCaseFile.select`), with an optional global file."""
    global_settings = load_global_settings(global_config_path) if global_config_path else None
    return load_use_cases(path, global_settings).select(name)


def load_global_settings(path: str | Path) -> GlobalSettings:
    """Read an ee-outliers global configuration file (the parts this service uses).

    As in ee-outliers, option names keep their case, a repeated option keeps its last value,
    and an invalid global regex is ignored (with a warning) rather than fatal.
    """
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    _read(parser, path)
    general = parser["general"] if parser.has_section("general") else {}
    assets = tuple(parser.items("assets")) if parser.has_section("assets") else ()
    return GlobalSettings(
        timestamp_field=general.get("timestamp_field", DEFAULT_TIMESTAMP_FIELD) or DEFAULT_TIMESTAMP_FIELD,
        es_index_pattern=general.get("es_index_pattern") or None,
        history_window_days=_int(general, "history_window_days", path, "general", default=0),
        history_window_hours=_int(general, "history_window_hours", path, "general", default=0),
        assets=assets,
        whitelist=Whitelist(
            literals=_literal_entries(parser, path),
            regexps=_regex_entries(parser, path, invalid="ignore"),
        ),
    )


def _read(parser: configparser.ConfigParser, path: str | Path) -> None:
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle, source=str(path))
    except FileNotFoundError:
        raise ConfigError("file not found; pass the path of an INI use-case file", path=path) from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"not UTF-8 text ({error.reason} at byte {error.start})", path=path) from None
    except configparser.DuplicateSectionError as error:
        raise ConfigError(
            f"section appears twice (line {error.lineno}); merge the two sections",
            path=path,
            section=error.section,
        ) from None
    except configparser.DuplicateOptionError as error:
        raise ConfigError(
            f"option appears twice in the section (line {error.lineno}); keep one",
            path=path,
            section=error.section,
            option=error.option,
        ) from None
    except configparser.MissingSectionHeaderError as error:
        raise ConfigError(
            f"line {error.lineno} comes before any [section] header: {error.line.strip()!r}", path=path
        ) from None
    except configparser.ParsingError as error:
        lines = ", ".join(f"line {lineno}: {line.strip()!r}" for lineno, line in _parse_errors(error))
        raise ConfigError(f"cannot parse as INI ({lines}); write 'option=value'", path=path) from None


def _parse_errors(error: configparser.ParsingError) -> Iterable[tuple[int, str]]:
    for lineno, line in error.errors:
        yield lineno, str(line)


class _SectionReader:
    """Reads one section's options, turning every problem into a ConfigError naming file, section, option."""

    def __init__(self, section: configparser.SectionProxy, path: str | Path) -> None:
        self.section = section
        self.path = path

    def fail(self, option: str, reason: str) -> ConfigError:
        return ConfigError(reason, path=self.path, section=self.section.name, option=option)

    def required(self, option: str) -> str:
        if option not in self.section:
            raise self.fail(option, f"required option is missing; add a line '{option}=...' to this section")
        return self.section[option]

    def choice(self, option: str, enum: type[EnumT]) -> EnumT:
        value = self.required(option).strip()
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(member.value for member in enum)
            raise self.fail(option, f"unknown value {value!r}; allowed: {allowed}") from None

    def boolean(self, option: str, default: bool) -> bool:
        if option not in self.section:
            return default
        try:
            return self.section.getboolean(option)
        except ValueError:
            allowed = "use 1/0, yes/no, true/false or on/off"
            raise self.fail(option, f"{self.section[option]!r} is not a boolean; {allowed}") from None

    def profile(self) -> DataProfile | None:
        """The section's ``profile``, None when it leaves the choice to the data."""
        name = self.section.get("profile", "").strip()
        if not name:
            return None
        try:
            return profile_named(name)
        except KeyError as error:
            raise self.fail("profile", str(error.args[0])) from None

    def open_options(self, global_timestamp: str) -> frozenset[str]:
        """The field options this section leaves for a data profile to fill in."""
        left = {option for option in PROFILE_OPTIONS if not self.section.get(option, "").strip()}
        if global_timestamp != DEFAULT_TIMESTAMP_FIELD:
            left.discard("timestamp_field")  # the global file chose it
        return frozenset(left)

    def fields_or_profile(self, option: str, profile: DataProfile | None) -> str:
        """A required field option, which a named profile may fill in."""
        if profile is not None and not self.section.get(option, "").strip():
            return profile.parent_name if option == "aggregator" else profile.process_name
        return self.required(option)

    def filters(self) -> tuple[str | None, tuple[Mapping[str, Any], ...] | None, str]:
        """``es_query_filter``, ``es_dsl_filter`` and the one ee-outliers records (the last given)."""
        es_query_filter = self.section.get("es_query_filter")
        es_dsl_filter = None
        elasticsearch_filter = ""
        for option, value in self.section.items():
            if option == "es_query_filter":
                elasticsearch_filter = value
            elif option == "es_dsl_filter":
                es_dsl_filter = _dsl_filter(value, self.fail)
                elasticsearch_filter = value
        if es_query_filter is None and es_dsl_filter is None and "profile" not in self.section:
            raise self.fail(
                "es_query_filter", "required option is missing (or give es_dsl_filter, or name a profile)"
            )
        return es_query_filter, es_dsl_filter, elasticsearch_filter


def _use_case(
    section: configparser.SectionProxy,
    path: str | Path,
    settings: GlobalSettings,
    whitelist: Whitelist,
) -> UseCase:
    reader = _SectionReader(section, path)
    fail, required, choice, boolean = reader.fail, reader.required, reader.choice, reader.boolean
    name = section.name

    trigger_method = choice("trigger_method", TriggerMethod)
    trigger_sensitivity = _sensitivity(required("trigger_sensitivity"), trigger_method, fail)
    # ee-outliers records whichever of the two filters comes last in the section.
    es_query_filter, es_dsl_filter, elasticsearch_filter = reader.filters()
    profile = reader.profile()

    use_case = UseCase(
        section=name,
        source_path=str(path),
        aggregator=_field_list(reader.fields_or_profile("aggregator", profile), "aggregator", fail),
        target=_field_list(reader.fields_or_profile("target", profile), "target", fail),
        target_count_method=choice("target_count_method", TargetCountMethod),
        trigger_on=choice("trigger_on", TriggerOn),
        trigger_method=trigger_method,
        trigger_sensitivity=trigger_sensitivity,
        min_target_buckets=_optional_int(section, "min_target_buckets", fail, minimum=0),
        es_query_filter=es_query_filter,
        es_dsl_filter=es_dsl_filter,
        elasticsearch_filter=elasticsearch_filter,
        timestamp_field=section.get("timestamp_field") or settings.timestamp_field,
        # A zero or missing window falls back to the global one (ee-outliers' behaviour).
        history_window_days=_optional_int(section, "history_window_days", fail, minimum=0)
        or settings.history_window_days,
        history_window_hours=_optional_int(section, "history_window_hours", fail, minimum=0)
        or settings.history_window_hours,
        es_index=section.get("es_index") or settings.es_index_pattern,
        outlier_type=section.get("outlier_type", DEFAULT_OUTLIER_TYPE),
        outlier_reason=section.get("outlier_reason", DEFAULT_OUTLIER_REASON),
        outlier_summary=section.get("outlier_summary", DEFAULT_OUTLIER_SUMMARY),
        run_model=boolean("run_model", False),
        test_model=boolean("test_model", False),
        use_derived_fields=boolean("use_derived_fields", False),
        process_documents_chronologically=boolean("process_documents_chronologically", True),
        should_notify=boolean("should_notify", False),
        host_field=section.get("host_field") or DEFAULT_HOST_FIELD,
        ingest_time_field=section.get("ingest_time_field", "").strip() or None,
        extra_options=_extra_options(section, path, KNOWN_OPTIONS),
        assets=settings.assets,
        whitelist=whitelist,
        profile_options=reader.open_options(settings.timestamp_field),
    )
    return apply_profile(use_case, profile) if profile is not None else use_case


def _rarechild_use_case(
    section: configparser.SectionProxy,
    path: str | Path,
    settings: GlobalSettings,
    whitelist: Whitelist,
) -> RareChildUseCase:
    reader = _SectionReader(section, path)
    es_query_filter, es_dsl_filter, elasticsearch_filter = reader.filters()
    profile = reader.profile()

    def single_field(option: str) -> tuple[str, ...]:
        fields = _field_list(reader.fields_or_profile(option, profile), option, reader.fail)
        if len(fields) != 1:
            raise reader.fail(
                option,
                f"the rarechild model takes one field here, not {len(fields)}; e.g. process.parent.name",
            )
        return fields

    knowledge = section.get("knowledge", "").strip() or None
    if knowledge is not None:
        # Relative to the use-case file, so a file and its knowledge travel together.
        candidate = Path(knowledge)
        if not candidate.is_absolute():
            candidate = Path(path).parent / candidate
        knowledge = str(candidate)
    try:
        load_knowledge(knowledge)  # checked now: a broken file stops the service before it serves
    except ConfigError as error:
        raise reader.fail("knowledge", error.message) from None
    use_case = RareChildUseCase(
        section=section.name,
        source_path=str(path),
        aggregator=single_field("aggregator"),
        target=single_field("target"),
        es_query_filter=es_query_filter,
        es_dsl_filter=es_dsl_filter,
        elasticsearch_filter=elasticsearch_filter,
        timestamp_field=section.get("timestamp_field") or settings.timestamp_field,
        es_index=section.get("es_index") or settings.es_index_pattern,
        host_field=section.get("host_field") or DEFAULT_HOST_FIELD,
        ingest_time_field=section.get("ingest_time_field", "").strip() or None,
        path_field=section.get("path_field") or DEFAULT_PATH_FIELD,
        knowledge=knowledge,
        score_threshold=_number(section, "score_threshold", reader.fail, DEFAULT_SCORE_THRESHOLD, minimum=0),
        max_alerts=_optional_int(section, "max_alerts", reader.fail, minimum=1) or DEFAULT_MAX_ALERTS,
        smoothing=_number(section, "smoothing", reader.fail, DEFAULT_SMOOTHING, minimum=0),
        outlier_type=section.get("outlier_type", DEFAULT_RARECHILD_TYPE),
        outlier_reason=section.get("outlier_reason", DEFAULT_RARECHILD_REASON),
        outlier_summary=section.get("outlier_summary", DEFAULT_RARECHILD_SUMMARY),
        run_model=reader.boolean("run_model", True),
        test_model=reader.boolean("test_model", False),
        should_notify=reader.boolean("should_notify", False),
        extra_options=_extra_options(section, path, RARECHILD_OPTIONS),
        assets=settings.assets,
        whitelist=whitelist,
        profile_options=reader.open_options(settings.timestamp_field),
    )
    return apply_profile(use_case, profile) if profile is not None else use_case


def _number(
    section: configparser.SectionProxy, option: str, fail: Any, default: float, *, minimum: float
) -> float:
    if option not in section or section[option].strip() == "":
        return default
    value = section[option].strip()
    try:
        number = float(value)
    except ValueError:
        raise fail(option, f"{value!r} is not a number; write e.g. 10 or 7.5") from None
    if not math.isfinite(number) or number < minimum:
        raise fail(option, f"{value!r} must be a finite number of {minimum:g} or more")
    return number


def _extra_options(
    section: configparser.SectionProxy, path: str | Path, known: frozenset[str]
) -> tuple[tuple[str, str], ...]:
    """Options the model does not know, copied into records as ee-outliers does; near-misses are warned."""
    extras = tuple((option, value) for option, value in section.items() if option not in known)
    for option, _ in extras:
        close = difflib.get_close_matches(option, sorted(known), n=1, cutoff=0.85)
        if close:
            log.warning(
                "%s [%s] %s: unknown option, probably a typo of %s; it is copied into every outlier "
                "record as ee-outliers does, and does nothing else",
                path,
                section.name,
                option,
                close[0],
            )
    return extras


def _field_list(value: str, option: str, fail: Any) -> tuple[str, ...]:
    # ee-outliers removes every space, then splits on commas.
    fields = tuple(value.replace(" ", "").split(","))
    if any(not name for name in fields):
        raise fail(option, f"empty field name in {value!r}; write comma-separated paths such as host.name")
    return fields


def _sensitivity(value: str, method: TriggerMethod, fail: Any) -> float:
    try:
        sensitivity = float(value)
    except ValueError:
        raise fail("trigger_sensitivity", f"{value!r} is not a number; write e.g. 1 or 2.5") from None
    if not math.isfinite(sensitivity):
        raise fail("trigger_sensitivity", f"{value!r} is not a finite number")
    if method is TriggerMethod.PERCENTILE and not 0 <= sensitivity <= 100:
        raise fail("trigger_sensitivity", f"{value!r} is not a percentile; use a number from 0 to 100")
    return sensitivity


def _optional_int(section: configparser.SectionProxy, option: str, fail: Any, *, minimum: int) -> int | None:
    if option not in section or section[option].strip() == "":
        return None
    value = section[option].strip()
    try:
        number = int(value)
    except ValueError:
        raise fail(option, f"{value!r} is not a whole number") from None
    if number < minimum:
        raise fail(option, f"{value!r} must be {minimum} or more")
    return number


def _int(values: Mapping[str, str], option: str, path: str | Path, section: str, *, default: int) -> int:
    raw = values.get(option)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"{raw!r} is not a whole number", path=path, section=section, option=option
        ) from None


def _dsl_filter(value: str, fail: Any) -> tuple[Mapping[str, Any], ...]:
    hint = 'write a JSON object {"query": {...}} or a list of them'
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise fail("es_dsl_filter", f"not valid JSON ({error.msg} at column {error.colno}); {hint}") from None
    items = parsed if isinstance(parsed, list) else [parsed]
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("query"), dict):
            raise fail("es_dsl_filter", f"each filter must be an object with a 'query' object; {hint}")
    return tuple(items)


def _literal_entries(parser: configparser.ConfigParser, path: str | Path) -> tuple[LiteralEntry, ...]:
    if not parser.has_section(WHITELIST_LITERALS):
        return ()
    return tuple(
        LiteralEntry(name, frozenset(part.strip() for part in value.split(",")))
        for name, value in parser.items(WHITELIST_LITERALS)
    )


def _regex_entries(
    parser: configparser.ConfigParser, path: str | Path, *, invalid: str
) -> tuple[RegexEntry, ...]:
    if not parser.has_section(WHITELIST_REGEXPS):
        return ()
    entries = []
    for name, value in parser.items(WHITELIST_REGEXPS):
        # Entries are split on commas, like literals: a regex cannot contain a comma.
        try:
            patterns = tuple(re.compile(part.strip(), re.IGNORECASE) for part in value.split(","))
        except re.error as error:
            reason = (
                f"invalid regular expression {value!r}: {error}; fix it (Python re syntax, split on ',') "
                "or remove the entry"
            )
            if invalid == "error":
                raise ConfigError(reason, path=path, section=WHITELIST_REGEXPS, option=name) from None
            log.warning("%s [%s] %s: %s; entry ignored", path, WHITELIST_REGEXPS, name, reason)
            continue
        entries.append(RegexEntry(name, patterns))
    return tuple(entries)
