"""The Flask app factory. Nothing happens at import; gunicorn runs ``connector.service:create_app()``."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, request

from connector.service.api import PUBLIC_ENDPOINTS, api, public, service
from connector.service.auth import Authenticator
from connector.service.catalog import load_catalog
from connector.service.errors import UnsupportedTransferCodingError, register_error_handlers
from connector.service.logs import REQUEST_ID_HEADER, configure_logging, request_id_from
from connector.service.openapi import build_openapi
from connector.service.readiness import ReadinessLog, check_elasticsearch
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
        probe_client=settings.es_probe_client(),
        schemas=schemas,
        authenticator=authenticator,
        openapi=build_openapi(schemas.documents),
        readiness=ReadinessLog(
            f"{len(catalog.use_cases)} use case(s) from {', '.join(settings.use_case_paths)}, "
            f"allowed indices {', '.join(settings.allowed_indices)}"
        ),
    )

    # No static route: the service serves no files (Flask's default /static/<path> needs no endpoint).
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["connector"] = state
    # "//detect" is a 404 like any unknown path, not a redirect built from the caller's Host header (no
    # route ends in "/", so no other redirect exists).
    app.url_map.merge_slashes = False

    @app.before_request
    def assign_request_id() -> None:
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))

    @app.before_request
    def refuse_encoded_body() -> None:
        refuse_transfer_codings(request.headers.get("Transfer-Encoding"))

    @app.before_request
    def authenticate() -> None:
        # Before routing errors are raised: an unknown path or method is 401 without credentials, so
        # nothing but /healthz answers an anonymous caller with more than "authenticate".
        if request.endpoint not in PUBLIC_ENDPOINTS:
            authenticator.check(request.headers.get("Authorization"))

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "-")
        response.headers["Cache-Control"] = "no-store"
        return response

    app.register_blueprint(public)
    app.register_blueprint(service)
    app.register_blueprint(api)
    register_error_handlers(app, challenge=authenticator.challenge, max_body_bytes=settings.max_body_bytes)
    state.readiness.observe(check_elasticsearch(state.probe_client), es_url=", ".join(settings.es_urls))
    return app


def refuse_transfer_codings(header: str | None) -> None:
    """501 for a transfer coding other than ``chunked``: gunicorn removes the chunking only, so a body
    sent ``gzip, chunked`` would reach the app still compressed.

    :raises UnsupportedTransferCodingError: naming the coding and the fix.
    """
    codings = [part.strip().lower() for part in (header or "").split(",") if part.strip()]
    unsupported = [coding for coding in codings if coding != "chunked"]
    if unsupported:
        raise UnsupportedTransferCodingError(
            f"transfer coding {', '.join(unsupported)!r} is not supported; send the body uncompressed, "
            "with Content-Length or 'Transfer-Encoding: chunked' alone"
        )
