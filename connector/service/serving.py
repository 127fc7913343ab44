"""Checks of the process-level options shared by ``connector serve`` and the gunicorn config file."""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_BIND = "127.0.0.1:8080"
DEFAULT_WORKERS = 2
MAX_WORKERS = 64
APP_FACTORY = "connector.service:create_app()"
GUNICORN_CONF = Path(__file__).with_name("gunicorn_conf.py")

_BIND = re.compile(r"(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})|unix:/.+")


def parse_bind(value: str | None) -> str:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) or ``unix:/path``; empty means :data:`DEFAULT_BIND`.

    :raises ValueError: with a message naming the accepted forms.
    """
    text = (value or "").strip() or DEFAULT_BIND
    match = _BIND.fullmatch(text)
    if match is None or (match.group(1) is not None and not 1 <= int(match.group(1)) <= 65535):
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8080, port 1-65535) or unix:/PATH")
    return text


def parse_workers(value: str | int | None) -> int:
    """A worker count from 1 to :data:`MAX_WORKERS`; empty means :data:`DEFAULT_WORKERS`.

    :raises ValueError: with a message naming the accepted range.
    """
    text = str(value).strip() if value is not None else ""
    if not text:
        return DEFAULT_WORKERS
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise ValueError(f"{text!r} is not a whole number from 1 to {MAX_WORKERS}")
    return int(text)
