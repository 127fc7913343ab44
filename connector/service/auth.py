"""Service authentication: bearer tokens and/or HTTP basic credentials, compared in constant time.

Every failure raises the same :class:`~connector.errors.AuthenticationRequiredError`, whatever was
wrong (no header, unknown scheme, bad base64, wrong user, wrong password, wrong token), and nothing
here logs a credential.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from connector.errors import AuthenticationRequiredError
from connector.settings import Settings

REALM = "connector"
FAILURE_MESSAGE = (
    "authentication required: send 'Authorization: Bearer <token>' or HTTP basic credentials "
    "configured for this service"
)


def _digest(value: str) -> bytes:
    # Comparing fixed-length digests keeps compare_digest's time independent of the secret's length.
    return hashlib.sha256(value.encode("utf-8")).digest()


class Authenticator:
    """Checks ``Authorization`` headers against the configured credentials."""

    def __init__(self, settings: Settings) -> None:
        self._token_digests = tuple(_digest(token.reveal()) for token in settings.api_tokens)
        self._basic: tuple[bytes, bytes] | None = None
        if settings.basic_user is not None and settings.basic_password is not None:
            self._basic = (_digest(settings.basic_user), _digest(settings.basic_password.reveal()))
        self.anonymous = settings.allow_anonymous and not settings.has_service_credentials

    @property
    def challenge(self) -> str:
        """``WWW-Authenticate`` value naming the schemes this service accepts."""
        schemes = []
        if self._token_digests:
            schemes.append(f'Bearer realm="{REALM}"')
        if self._basic is not None:
            schemes.append(f'Basic realm="{REALM}"')
        return ", ".join(schemes) or f'Bearer realm="{REALM}"'

    def check(self, authorization: str | None) -> None:
        """Accept the request or raise.

        :raises AuthenticationRequiredError: (401) with one message for every kind of failure.
        """
        if self.anonymous:
            return
        if not authorization or not self._matches(authorization):
            raise AuthenticationRequiredError(FAILURE_MESSAGE)

    def _matches(self, authorization: str) -> bool:
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if not credentials:
            return False
        if scheme.lower() == "bearer":
            return self._token_matches(credentials)
        if scheme.lower() == "basic":
            return self._basic_matches(credentials)
        return False

    def _token_matches(self, token: str) -> bool:
        presented = _digest(token)
        matched = False
        # No early exit: every configured token is compared, so timing does not tell which one matched.
        for expected in self._token_digests:
            matched |= hmac.compare_digest(presented, expected)
        return matched

    def _basic_matches(self, encoded: str) -> bool:
        if self._basic is None:
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return False
        user, separator, password = decoded.partition(":")
        if not separator:
            return False
        expected_user, expected_password = self._basic
        # Both halves are always compared (no short-circuit), so timing does not tell which was wrong.
        user_ok = hmac.compare_digest(_digest(user), expected_user)
        password_ok = hmac.compare_digest(_digest(password), expected_password)
        return user_ok & password_ok
