"""Long-term credentials of the embedded TURN server (RFC 8489 9.2, RFC 8656 5): realm, users, nonces.

Sans-IO: `LongTermAuth.check(request, client, now)` says who sent a request, or which error to answer. Nonces
are stateless: they carry their expiry and an HMAC over it and the client's transport address, so a server
keeps no table and a nonce cannot be moved to another client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from ..stun.attributes import Attr, PasswordAlgorithm
from ..stun.message import Message, long_term_key, userhash

__all__ = ["NONCE_COOKIE", "AuthError", "Authenticated", "LongTermAuth"]

NONCE_COOKIE = "obMatJos2"
"""The first 9 characters of a nonce that carries STUN security feature bits (RFC 8489 9.2)."""

_FEATURE_PASSWORD_ALGORITHMS = 0x800000  # bit 0 of the 24-bit Security Feature Set (RFC 8489 18.1)
_FEATURE_USERNAME_ANONYMITY = 0x400000  # bit 1: USERHASH accepted
_ALGORITHMS = {"md5": PasswordAlgorithm.MD5, "sha256": PasswordAlgorithm.SHA256}

Address = tuple[str, int]


@attrs.frozen
class Authenticated:
    """A request whose MESSAGE-INTEGRITY checked out: who sent it and how to sign the response (RFC 8489 9.2.4)."""

    username: str
    key: bytes
    integrity: Literal["sha1", "sha256"]


@attrs.frozen
class AuthError:
    """The error to answer instead (401, 400 or 438), with the attributes the RFC asks for (RFC 8489 9.2.4)."""

    code: int
    reason: str
    attributes: tuple[tuple[Attr | int, Any], ...] = ()


class LongTermAuth:
    """The long-term credential mechanism on the server side (RFC 8489 9.2.4, RFC 8656 5)."""

    def __init__(
        self,
        realm: str,
        users: Mapping[str, str],
        *,
        nonce_lifetime: float = 600.0,
        password_algorithms: Sequence[str] = ("sha256", "md5"),
        secret: bytes | None = None,
    ) -> None:
        if not realm:
            raise ValueError("the TURN server needs a non-empty realm (RFC 8489 14.9)")
        for name in password_algorithms:
            if name not in _ALGORITHMS:
                raise ValueError(f"unknown password algorithm {name!r}: use 'md5' and/or 'sha256' (RFC 8489 18.5)")
        if password_algorithms and "md5" not in password_algorithms:
            # Clients that ignore PASSWORD-ALGORITHMS use MD5 (RFC 8489 9.2.4); refusing it locks them out.
            raise ValueError("password_algorithms must include 'md5' (clients without RFC 8489 support use it)")
        if nonce_lifetime <= 0:
            raise ValueError(f"nonce_lifetime must be positive, not {nonce_lifetime}")
        self.realm = realm
        self.nonce_lifetime = nonce_lifetime
        self._secret = secret if secret is not None else os.urandom(16)
        self._users: dict[str, str] = {}
        self._by_hash: dict[bytes, str] = {}
        self._keys: dict[tuple[str, int], bytes] = {}
        self._offered: list[tuple[int, bytes]] = [(int(_ALGORITHMS[a]), b"") for a in password_algorithms]
        features = (_FEATURE_PASSWORD_ALGORITHMS | _FEATURE_USERNAME_ANONYMITY) if self._offered else 0
        self._prefix = NONCE_COOKIE + base64.b64encode(features.to_bytes(3, "big")).decode() if features else "n"
        for name, password in users.items():
            self.set_user(name, password)

    def set_user(self, username: str, password: str) -> None:
        """Add a user or change a password (RFC 8489 9.2: the key is derived from username, realm, password)."""
        self._users[username] = password
        self._by_hash[userhash(username, self.realm)] = username
        for alg in list(self._keys):
            if alg[0] == username:
                del self._keys[alg]

    def remove_user(self, username: str) -> None:
        """Remove a user: its next request gets 401 (allocations already made stay until they end)."""
        self._users.pop(username, None)
        self._by_hash.pop(userhash(username, self.realm), None)
        for alg in list(self._keys):
            if alg[0] == username:
                del self._keys[alg]

    @property
    def usernames(self) -> list[str]:
        """The users who may authenticate."""
        return list(self._users)

    # ---- nonces ----

    def nonce(self, client: Address, transport: str, now: float) -> str:
        """A fresh nonce for `client`, valid for `nonce_lifetime` seconds (RFC 8489 9.2.1)."""
        expiry = int((now + self.nonce_lifetime) * 1000)
        return f"{self._prefix}{expiry:x}.{self._mac(expiry, client, transport)}"

    def nonce_valid(self, nonce: str, client: Address, transport: str, now: float) -> bool:
        """Whether `nonce` was issued by this server to `client` and has not expired (RFC 8489 9.2.4)."""
        if not nonce.startswith(self._prefix):
            return False
        expiry_text, dot, mac = nonce[len(self._prefix) :].partition(".")
        try:
            expiry = int(expiry_text, 16)
        except ValueError:
            return False
        if not dot or not hmac.compare_digest(mac, self._mac(expiry, client, transport)):
            return False
        return now * 1000 < expiry

    def _mac(self, expiry: int, client: Address, transport: str) -> str:
        text = f"{expiry:x}|{client[0]}|{client[1]}|{transport}".encode()
        return hmac.new(self._secret, text, hashlib.sha256).hexdigest()[:24]

    # ---- checking a request ----

    def challenge(self, client: Address, transport: str, now: float) -> tuple[tuple[Attr | int, Any], ...]:
        """REALM, a fresh NONCE and PASSWORD-ALGORITHMS: what 401 and 438 carry (RFC 8489 9.2.4)."""
        attributes: list[tuple[Attr | int, Any]] = [
            (Attr.REALM, self.realm),
            (Attr.NONCE, self.nonce(client, transport, now)),
        ]
        if self._offered:
            attributes.append((Attr.PASSWORD_ALGORITHMS, list(self._offered)))
        return tuple(attributes)

    def check(self, request: Message, client: Address, transport: str, now: float) -> Authenticated | AuthError:
        """Authenticate `request` in the order of RFC 8489 9.2.4: 401, 400, 401, 401, then 438."""
        if Attr.MESSAGE_INTEGRITY not in request and Attr.MESSAGE_INTEGRITY_SHA256 not in request:
            return self._error(
                401,
                "Unauthenticated: this TURN server needs long-term credentials; retry with USERNAME, this REALM "
                "and NONCE, and MESSAGE-INTEGRITY",
                client,
                transport,
                now,
            )
        username = request.get(Attr.USERNAME)
        hashed = request.get(Attr.USERHASH)
        realm = request.get(Attr.REALM)
        nonce = request.get(Attr.NONCE)
        if (username is None and hashed is None) or realm is None or nonce is None:
            missing = [
                name
                for name, value in (("USERNAME", username or hashed), ("REALM", realm), ("NONCE", nonce))
                if value is None
            ]
            return AuthError(400, f"Bad Request: MESSAGE-INTEGRITY without {', '.join(missing)} (RFC 8489 9.2.4)")
        algorithm = int(PasswordAlgorithm.MD5)
        if self._offered and nonce.startswith(self._prefix):
            offered = request.get(Attr.PASSWORD_ALGORITHMS)
            chosen = request.get(Attr.PASSWORD_ALGORITHM)
            if offered is not None or chosen is not None:
                if offered is None or chosen is None:
                    return AuthError(
                        400,
                        "Bad Request: PASSWORD-ALGORITHM and PASSWORD-ALGORITHMS must come together (RFC 8489 9.2.4)",
                    )
                if list(offered) != self._offered:
                    return AuthError(
                        400, "Bad Request: PASSWORD-ALGORITHMS differs from the list this server sent (RFC 8489 9.2.4)"
                    )
                if tuple(chosen) not in [tuple(a) for a in offered]:
                    return AuthError(
                        400, "Bad Request: PASSWORD-ALGORITHM is not one of PASSWORD-ALGORITHMS (RFC 8489 9.2.4)"
                    )
                algorithm = chosen[0]
        if username is None:
            assert hashed is not None
            username = self._by_hash.get(hashed)
            if username is None:
                return self._error(
                    401, "Unauthenticated: USERHASH matches no user of this realm", client, transport, now
                )
        if realm != self.realm:
            return self._error(
                401,
                f"Unauthenticated: REALM {realm!r} is not this server's realm {self.realm!r}",
                client,
                transport,
                now,
            )
        if username not in self._users:
            return self._error(401, f"Unauthenticated: unknown username {username!r}", client, transport, now)
        key = self._key(username, algorithm)
        if not request.verify_integrity(key):
            return self._error(
                401,
                f"Unauthenticated: MESSAGE-INTEGRITY does not match; check the password of {username!r}",
                client,
                transport,
                now,
            )
        if not self.nonce_valid(nonce, client, transport, now):
            return self._error(438, "Stale Nonce: retry with the NONCE given here", client, transport, now)
        integrity: Literal["sha1", "sha256"] = "sha256" if Attr.MESSAGE_INTEGRITY_SHA256 in request else "sha1"
        return Authenticated(username, key, integrity)

    def _key(self, username: str, algorithm: int) -> bytes:
        key = self._keys.get((username, algorithm))
        if key is None:
            key = long_term_key(username, self.realm, self._users[username], algorithm)
            self._keys[(username, algorithm)] = key
        return key

    def _error(self, code: int, reason: str, client: Address, transport: str, now: float) -> AuthError:
        return AuthError(code, reason, self.challenge(client, transport, now))
