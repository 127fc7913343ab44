"""The webhook service: a Flask app factory served by gunicorn (``connector.service:create_app()``).

The factory is imported on first use: gunicorn's master runs ``gunicorn_conf.py`` (which imports
``connector.service.logs``, and so this package) before its gevent workers monkey-patch ``ssl``, and
the Elasticsearch client's urllib3 keeps references to the unpatched ``ssl`` classes it imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.service.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from connector.service.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
