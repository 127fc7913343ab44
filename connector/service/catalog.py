"""The use cases a service instance was started with, from one or more INI files."""

from __future__ import annotations

from dataclasses import dataclass

from connector.config import UseCase, UseCaseFile, load_global_settings, load_use_cases
from connector.errors import ConfigError, UnknownUseCaseError


@dataclass(frozen=True)
class UseCaseCatalog:
    """Use-case files in configuration order; the first use case of the first file is the default."""

    files: tuple[UseCaseFile, ...]

    @property
    def use_cases(self) -> tuple[UseCase, ...]:
        return tuple(use_case for use_case_file in self.files for use_case in use_case_file.use_cases)

    def select(self, name: str | None) -> UseCase:
        """The use case called ``name`` (section or model name); the default one for ``None``.

        :raises UnknownUseCaseError: (404) naming the use cases that exist.
        """
        if name is None:
            return self.files[0].select(None)
        for use_case_file in self.files:
            try:
                return use_case_file.select(name)
            except UnknownUseCaseError:
                continue
        known = ", ".join(use_case.section for use_case in self.use_cases)
        raise UnknownUseCaseError(
            f"unknown use case {name!r}; this service knows: {known} (GET /api/v1/use-cases lists them)"
        )


def load_catalog(use_case_paths: tuple[str, ...], global_config_path: str | None) -> UseCaseCatalog:
    """Load and check every use-case file, so that a bad file stops the service before it serves.

    :raises ConfigError: for an unreadable or invalid file, a file without any ``[terms_*]`` section,
        or a use case defined in two files.
    """
    global_settings = load_global_settings(global_config_path) if global_config_path else None
    files = tuple(load_use_cases(path, global_settings) for path in use_case_paths)
    seen: dict[str, str] = {}
    for use_case_file in files:
        if not use_case_file.use_cases:
            raise ConfigError(
                "no [terms_*] or [rarechild_*] use case in this file (CONNECTOR_USE_CASES)",
                path=use_case_file.path,
            )
        for use_case in use_case_file.use_cases:
            if use_case.section in seen:
                raise ConfigError(
                    f"use case [{use_case.section}] is also defined in {seen[use_case.section]}; "
                    "rename one of the sections (CONNECTOR_USE_CASES)",
                    path=use_case_file.path,
                )
            seen[use_case.section] = use_case_file.path
    return UseCaseCatalog(files)
