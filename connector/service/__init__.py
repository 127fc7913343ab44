"""The webhook service: a Flask app factory served by gunicorn (``connector.service:create_app()``)."""

from connector.service.app import create_app

__all__ = ["create_app"]
