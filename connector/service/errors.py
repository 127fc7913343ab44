"""Every error becomes one JSON envelope: ``{"error": {"code", "message", "details", "request_id"}}``.

Handlers are registered on :class:`~connector.errors.ConnectorError` (status and code come from the
exception), on werkzeug's ``HTTPException`` (routing, 405, 413, ...) and on ``Exception`` as the
catch-all: a 500 that logs the traceback under the request id and returns no exception text.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from connector.errors import ConnectorError, RequestValidationError
from connector.service.logs import current_request_id

log = logging.getLogger(__name__)


class UnsupportedMediaTypeError(ConnectorError):
    """The request body is not declared as JSON."""

    code = "unsupported_media_type"
    status = 415
    exit_code = 2


class UnsupportedTransferCodingError(ConnectorError):
    """The body is sent with a transfer coding other than chunked (gunicorn would pass it on undecoded)."""

    code = "unsupported_transfer_coding"
    status = 501
    exit_code = 2


class MalformedJsonError(RequestValidationError):
    """The request body is not parseable JSON (or not UTF-8)."""

    code = "malformed_json"


# Codes for werkzeug's own errors; anything else gets a code derived from its name.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The envelope, with the current request id, as a JSON response."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "details": details or [],
            "request_id": current_request_id(),
        }
    }
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register_error_handlers(app: Flask, *, challenge: str, max_body_bytes: int) -> None:
    """Install the three handlers on ``app``.

    :param challenge: ``WWW-Authenticate`` value sent with every 401.
    :param max_body_bytes: the body limit, named in 413 messages.
    """

    def handle_connector_error(error: ConnectorError) -> Response:
        headers: dict[str, str] = {}
        if error.status == 401:
            headers["WWW-Authenticate"] = challenge
        retry_after = getattr(error, "retry_after_seconds", None)
        if error.status == 503 and retry_after is not None:
            headers["Retry-After"] = str(int(retry_after))
        if error.status >= 500:
            log.error("%s %s failed: %s (%s)", request.method, request.path, error.code, error.message)
        else:
            log.info("%s %s refused: %s %s", request.method, request.path, error.status, error.code)
        return error_response(error.status, error.code, error.message, error.details, headers)

    def handle_http_exception(error: HTTPException) -> Response:
        status = error.code or 500
        code = _HTTP_CODES.get(status) or (error.name or "http_error").lower().replace(" ", "_")
        message = error.description or error.name
        if status == 404:
            message = f"no such endpoint: {request.method} {request.path}; GET /openapi.json lists the API"
        elif status == 405:
            allowed = ", ".join(sorted(getattr(error, "valid_methods", None) or ()))
            message = f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
        elif status == 413:
            message = (
                f"request body is larger than {max_body_bytes} bytes (CONNECTOR_MAX_BODY_BYTES); "
                "send a smaller body"
            )
        # Keep protocol headers werkzeug sets (e.g. Allow on 405), not its HTML content type.
        headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
        log.info("%s %s refused: %s %s", request.method, request.path, status, code)
        return error_response(status, code, message, None, headers)

    def handle_unexpected(error: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(
            500,
            "internal_error",
            "internal error; the service log has the details under this request id",
        )

    app.register_error_handler(ConnectorError, handle_connector_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
