"""The long-term credential mechanism of STUN as TURN uses it (RFC 8489 9.2, RFC 8656 7.1): sans-IO.

The first request goes without credentials; the server's 401 (or a later 438) names the REALM and a
NONCE. A NONCE that starts with the cookie "obMatJos2" carries the server's security features (RFC 8489
9.2): with "password algorithms" the client picks the first algorithm of PASSWORD-ALGORITHMS it knows
(MD5 or SHA-256) and echoes the list; with "username anonymity" it sends USERHASH instead of USERNAME.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from ..stun.attributes import Attr, PasswordAlgorithm
from ..stun.message import Message, long_term_key, userhash
from .errors import TurnError, TurnServerError, TurnUnsupported

__all__ = ["NONCE_COOKIE", "LongTermCredential", "security_features"]

NONCE_COOKIE = "obMatJos2"
"""A NONCE starting with this is followed by 4 base64 characters of security feature bits (RFC 8489 9.2)."""
FEATURE_PASSWORD_ALGORITHMS = 0x800000
"""Bit 0 (the most significant of 24): the server supports PASSWORD-ALGORITHMS (RFC 8489 18.1)."""
FEATURE_USER_ANONYMITY = 0x400000
"""Bit 1: the server accepts USERHASH (RFC 8489 18.1)."""


def security_features(nonce: str) -> int:
    """The 24 security feature bits of a NONCE with the RFC 8489 9.2 cookie, else 0."""
    if not nonce.startswith(NONCE_COOKIE) or len(nonce) < len(NONCE_COOKIE) + 4:
        return 0
    try:
        bits = base64.b64decode(nonce[len(NONCE_COOKIE) : len(NONCE_COOKIE) + 4], validate=True)
    except ValueError:
        return 0
    return int.from_bytes(bits, "big")


class LongTermCredential:
    """Username, password and what the server told us: realm, nonce, algorithm (RFC 8489 9.2)."""

    def __init__(self, username: str, password: str, *, server_name: str = "the TURN server") -> None:
        self.username = username
        self._password = password
        self.server_name = server_name
        self.realm: str | None = None
        self.nonce: str | None = None
        #: The HMAC key of MESSAGE-INTEGRITY(-SHA256) (RFC 8489 9.2.2); None until the first challenge.
        self.key: bytes | None = None
        self.algorithms: list[tuple[int, bytes]] | None = None
        self.algorithm: tuple[int, bytes] | None = None
        self.anonymous = False

    @property
    def ready(self) -> bool:
        """A challenge was received: requests can be signed."""
        return self.key is not None

    @property
    def integrity(self) -> Literal["sha1", "sha256"]:
        """MESSAGE-INTEGRITY-SHA256 once a password algorithm was negotiated, else MESSAGE-INTEGRITY."""
        return "sha256" if self.algorithm is not None else "sha1"

    def learn(self, msg: Message) -> TurnError | None:
        """Take REALM, NONCE and PASSWORD-ALGORITHMS from a 401 or 438 (RFC 8489 9.2.5); an error if unusable."""
        realm = msg.get(Attr.REALM) or self.realm
        nonce = msg.get(Attr.NONCE)
        if realm is None or nonce is None:
            return TurnServerError(
                f"{self.server_name} asked for credentials without REALM and NONCE (RFC 8489 9.2.4): "
                "it is not a TURN server using long-term credentials"
            )
        features = security_features(nonce)
        algorithm: tuple[int, bytes] | None = None
        algorithms: list[tuple[int, bytes]] | None = None
        if features & FEATURE_PASSWORD_ALGORITHMS:
            offered = msg.get(Attr.PASSWORD_ALGORITHMS)
            if offered:
                algorithms = list(offered)
                for alg, params in algorithms:
                    if alg in (PasswordAlgorithm.MD5, PasswordAlgorithm.SHA256):
                        algorithm = (alg, params)
                        break
                if algorithm is None:
                    return TurnUnsupported(
                        f"{self.server_name} offers only password algorithms {[a for a, _ in algorithms]}; "
                        "iceagent knows MD5 (1) and SHA-256 (2) (RFC 8489 18.5)"
                    )
        self.realm, self.nonce = realm, nonce
        self.algorithms, self.algorithm = algorithms, algorithm
        self.anonymous = bool(features & FEATURE_USER_ANONYMITY)
        self.key = long_term_key(self.username, realm, self._password, algorithm[0] if algorithm else "md5")
        return None

    def attributes(self) -> list[tuple[Attr | int, Any]]:
        """USERNAME (or USERHASH), REALM, NONCE and the algorithm attributes for a request (RFC 8489 9.2.4)."""
        if self.key is None or self.realm is None or self.nonce is None:
            return []
        out: list[tuple[Attr | int, Any]] = []
        if self.anonymous:
            out.append((Attr.USERHASH, userhash(self.username, self.realm)))
        else:
            out.append((Attr.USERNAME, self.username))
        out.append((Attr.REALM, self.realm))
        out.append((Attr.NONCE, self.nonce))
        if self.algorithm is not None and self.algorithms is not None:
            out.append((Attr.PASSWORD_ALGORITHMS, self.algorithms))
            out.append((Attr.PASSWORD_ALGORITHM, self.algorithm))
        return out
