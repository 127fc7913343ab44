"""The Flask app factory. Nothing happens at import; gunicorn runs ``connector.service:create_app()``."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, request

from connector.service.api import api, public, service
from connector.service.auth import Authenticator
from connector.service.catalog import load_catalog
from connector.service.errors import register_error_handlers
from connector.service.logs import REQUEST_ID_HEADER, configure_logging, request_id_from
from connector.service.openapi import build_openapi
from connector.service.state import ServiceState
from connector.service.validation import load_schemas
from connector.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the service: settings, use cases, Elasticsearch client, validators, routes, error handlers.

    :param settings: ``None`` reads them from the environment (:meth:`Settings.from_env`).
    :raises ConfigError: for any misconfiguration (bad variable, unreadable or invalid use-case file),
        so the service refuses to start instead of failing on the first request.
    """
    if settings is None:
        settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    if settings.allow_anonymous and not settings.has_service_credentials:
        log.warning(
            "!!! AUTHENTICATION IS OFF (CONNECTOR_ALLOW_ANONYMOUS=true): anyone who can reach this "
            "service can run detections and write to %s. Set CONNECTOR_API_TOKENS or "
            "CONNECTOR_BASIC_USER/PASSWORD. !!!",
            settings.results_index,
        )
    if not settings.es_verify_certs:
        log.warning("TLS certificate verification of Elasticsearch is OFF (CONNECTOR_ES_VERIFY_CERTS=false)")

    catalog = load_catalog(settings.use_case_paths, settings.global_config_path)
    schemas = load_schemas()
    authenticator = Authenticator(settings)
    state = ServiceState(
        settings=settings,
        catalog=catalog,
        es_client=settings.es_client(),
        schemas=schemas,
        authenticator=authenticator,
        openapi=build_openapi(schemas.documents),
    )

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["connector"] = state

    @app.before_request
    def assign_request_id() -> None:
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "-")
        response.headers["Cache-Control"] = "no-store"
        return response

    app.register_blueprint(public)
    app.register_blueprint(service)
    app.register_blueprint(api)
    register_error_handlers(app, challenge=authenticator.challenge, max_body_bytes=settings.max_body_bytes)
    log.info(
        "service ready: %d use case(s) from %s, Elasticsearch %s, allowed indices %s",
        len(catalog.use_cases),
        ", ".join(settings.use_case_paths),
        ", ".join(settings.es_urls),
        ", ".join(settings.allowed_indices),
    )
    return app
