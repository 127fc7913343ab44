"""Reading a request body as strict JSON: the one place that turns bytes into the value validated.

Refused with a clear 4xx (never a 500): a body not declared as JSON (415), bytes beyond the limit even
when chunked (413), invalid UTF-8 or JSON syntax (400 with line and column), NaN/Infinity, numbers a
double cannot hold, integers too long to convert cheaply, duplicate keys and nesting too deep.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from connector.service.errors import MalformedJsonError, UnsupportedMediaTypeError


class _JsonProblem(ValueError):
    """Valid JSON syntax that we still refuse (NaN/Infinity, out-of-range numbers, duplicate keys)."""


#: Longer integers than this are refused before Python converts them (it refuses above 4300 digits
#: with a ValueError that is not a JSON error, and converting is quadratic in the digits).
MAX_INTEGER_DIGITS = 100


def _refuse_constant(name: str) -> Any:
    raise _JsonProblem(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise _JsonProblem(f"an integer has {digits} digits; at most {MAX_INTEGER_DIGITS} are read")
    return int(text)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _JsonProblem(f"the number {text[:40]!r} is too large for a double")
    return number


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JsonProblem(f"duplicate key {key!r} in an object")
        result[key] = value
    return result


def read_json_body() -> Any:
    """The request body parsed as strict JSON.

    :raises UnsupportedMediaTypeError: (415) unless ``Content-Type`` is ``application/json``.
    :raises MalformedJsonError: (400) naming line and column of the syntax error.
    :raises werkzeug.exceptions.RequestEntityTooLarge: (413) above ``MAX_CONTENT_LENGTH``.
    """
    if request.mimetype != "application/json":
        declared = (request.mimetype or "none")[:100]
        raise UnsupportedMediaTypeError(
            f"send the body as JSON with 'Content-Type: application/json' (got {declared!r})"
        )
    raw = request.get_data(cache=False)
    _refuse_cut_stream(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _malformed(f"request body is not UTF-8 text (invalid byte at offset {error.start})") from None
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            object_pairs_hook=_refuse_duplicates,
        )
    except json.JSONDecodeError as error:
        raise _malformed(
            f"request body is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    except _JsonProblem as error:
        raise _malformed(f"request body is not accepted: {error}") from None
    except RecursionError:
        raise _malformed("request body is nested too deeply") from None


def _refuse_cut_stream(raw: bytes) -> None:
    """413 for a body without Content-Length (chunked) that is longer than MAX_CONTENT_LENGTH.

    Werkzeug stops reading such a stream at the limit and returns what it has, as if the body ended
    there; one more byte from the server's input tells a body of exactly the limit from a longer one.
    """
    limit = request.max_content_length
    if limit is None or request.content_length is not None or len(raw) < limit:
        return
    if request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()


def _malformed(message: str) -> MalformedJsonError:
    return MalformedJsonError(message, details=[{"path": "$", "message": message}])
