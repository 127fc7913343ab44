"""The project's own error hierarchy.

Every error a user can cause or fix is a :class:`ConnectorError`. Each carries a stable
``code`` (for machines), an HTTP ``status`` and a CLI ``exit_code`` (for the edges that turn
errors into responses), and a message that says what is wrong and how to fix it.
"""

from __future__ import annotations

from pathlib import Path


class ConnectorError(Exception):
    """Base class: something the caller can understand and act on."""

    code = "connector_error"
    status = 500
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ConnectorError):
    """A use-case or global configuration file is invalid.

    The message always names the file, and the section and option when there is one, so
    a user can go straight to the line to fix.
    """

    code = "invalid_configuration"
    status = 500
    exit_code = 2

    def __init__(
        self,
        reason: str,
        *,
        path: str | Path | None = None,
        section: str | None = None,
        option: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.section = section
        self.option = option
        self.reason = reason
        where = []
        if self.path is not None:
            where.append(self.path)
        if section is not None:
            where.append(f"[{section}]")
        if option is not None:
            where.append(option)
        super().__init__(f"{' '.join(where)}: {reason}" if where else reason)


class UnknownUseCaseError(ConnectorError):
    """The requested use case is not in the loaded configuration."""

    code = "unknown_use_case"
    status = 404
    exit_code = 2


class InputError(ConnectorError):
    """An events file (or other input) cannot be read as documented."""

    code = "invalid_input"
    status = 400
    exit_code = 2

    def __init__(self, reason: str, *, path: str | Path | None = None, line: int | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.reason = reason
        where = self.path or "input"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {reason}")
