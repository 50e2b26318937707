"""Long-term credentials of the embedded TURN server (RFC 8489 9.2, RFC 8656 5): realm, users, nonces.

Sans-IO: `LongTermAuth.check(request, client, transport, now, unix_time)` says who sent a request, or which
error to answer. Nonces are stateless: they carry their expiry and an HMAC over it and the client's transport
address, so a server keeps no table and a nonce cannot be moved to another client. Users are static
(username -> password) and/or ephemeral: the TURN REST API scheme (coturn's use-auth-secret), where the
username is "<expiry unix time>[:<user>]" and the password base64(HMAC-SHA1(shared secret, username)).

Unauthenticated answers are small (no amplification, RFC 8489 9.2.4 lists what a 401 carries) and alike:
an unknown user, a wrong password, a foreign realm and an expired ephemeral username all get the same 401,
which differs only in its nonce (and transaction id).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from ...stun.attributes import Attr, PasswordAlgorithm
from ...stun.message import Message, long_term_key, userhash

__all__ = ["NONCE_COOKIE", "AuthError", "Authenticated", "LongTermAuth", "ephemeral_password"]

NONCE_COOKIE = "obMatJos2"
"""The first 9 characters of a nonce that carries STUN security feature bits (RFC 8489 9.2)."""

_FEATURE_PASSWORD_ALGORITHMS = 0x800000  # bit 0 of the 24-bit Security Feature Set (RFC 8489 18.1)
_FEATURE_USERNAME_ANONYMITY = 0x400000  # bit 1: USERHASH accepted
_ALGORITHMS = {"md5": PasswordAlgorithm.MD5, "sha256": PasswordAlgorithm.SHA256}
_NONCE_TICK = 16  # a nonce carries its expiry in 1/16 s ticks ...
_NONCE_WRAP = 1 << 24  # ... modulo 2**24 (12 days), which bounds nonce_lifetime to 6 days
_NONCE_MAC = 6  # bytes of HMAC-SHA256 in a nonce: 48 bits, checked online only
_EXPIRY_DIGITS = 15  # the longest "<expiry>" of an ephemeral username that is parsed

Address = tuple[str, int]


def ephemeral_password(secret: bytes, username: str) -> str:
    """The password of an ephemeral username in the TURN REST API scheme: base64(HMAC-SHA1(secret, username))."""
    return base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest()).decode()


def _ephemeral_expiry(username: str) -> int | None:
    """The expiry (unix time) of an ephemeral username "<expiry>" or "<expiry>:<user>", else None."""
    head = username.partition(":")[0]
    if not head or len(head) > _EXPIRY_DIGITS or not (head.isascii() and head.isdigit()):
        return None
    return int(head)


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
        auth_secrets: Sequence[bytes] = (),
    ) -> None:
        if not realm:
            raise ValueError("the TURN server needs a non-empty realm (RFC 8489 14.9)")
        for name in password_algorithms:
            if name not in _ALGORITHMS:
                raise ValueError(f"unknown password algorithm {name!r}: use 'md5' and/or 'sha256' (RFC 8489 18.5)")
        if password_algorithms and "md5" not in password_algorithms:
            # Clients that ignore PASSWORD-ALGORITHMS use MD5 (RFC 8489 9.2.4); refusing it locks them out.
            raise ValueError("password_algorithms must include 'md5' (clients without RFC 8489 support use it)")
        if not 0 < nonce_lifetime * _NONCE_TICK < _NONCE_WRAP // 2:
            limit = _NONCE_WRAP // 2 // _NONCE_TICK
            raise ValueError(f"nonce_lifetime must be positive and under {limit} s, not {nonce_lifetime}")
        if any(not s for s in auth_secrets):
            raise ValueError("an auth secret (TURN REST API shared secret) must not be empty")
        self.realm = realm
        self.nonce_lifetime = nonce_lifetime
        self._secret = secret if secret is not None else os.urandom(16)
        self._dummy_key = os.urandom(16)  # checked for unknown users, so they cost what a wrong password costs
        self._auth_secrets = tuple(auth_secrets)
        self._users: dict[str, str] = {}
        self._by_hash: dict[bytes, str] = {}
        self._keys: dict[tuple[str, int], bytes] = {}  # static users only: at most 2 x users
        self._offered: list[tuple[int, bytes]] = [(int(_ALGORITHMS[a]), b"") for a in password_algorithms]
        self._prefix = self._nonce_prefix()
        for name, password in users.items():
            self.set_user(name, password)

    def set_user(self, username: str, password: str) -> None:
        """Add a user or change a password (RFC 8489 9.2: the key is derived from username, realm, password)."""
        self._users[username] = password
        self._by_hash[userhash(username, self.realm)] = username
        self._forget_keys(username)

    def remove_user(self, username: str) -> None:
        """Remove a user: its next request gets 401 (allocations already made stay until they end)."""
        self._users.pop(username, None)
        self._by_hash.pop(userhash(username, self.realm), None)
        self._forget_keys(username)

    def set_auth_secrets(self, secrets: Sequence[bytes]) -> None:
        """Replace the shared secrets of ephemeral credentials (rotation: keep the old one until its
        usernames have expired). Each request is checked against every secret."""
        if any(not s for s in secrets):
            raise ValueError("an auth secret (TURN REST API shared secret) must not be empty")
        self._auth_secrets = tuple(secrets)
        self._prefix = self._nonce_prefix()  # nonces of the other prefix get 438 and a fresh one

    def _nonce_prefix(self) -> str:
        """The nonce cookie and feature bits (RFC 8489 9.2), "" without PASSWORD-ALGORITHMS. USERHASH is offered
        only without ephemeral credentials: their usernames cannot be found from a hash."""
        if not self._offered:
            return ""
        features = _FEATURE_PASSWORD_ALGORITHMS | (0 if self._auth_secrets else _FEATURE_USERNAME_ANONYMITY)
        return NONCE_COOKIE + base64.b64encode(features.to_bytes(3, "big")).decode()

    def _forget_keys(self, username: str) -> None:
        for alg in list(self._keys):
            if alg[0] == username:
                del self._keys[alg]

    @property
    def usernames(self) -> list[str]:
        """The static users who may authenticate."""
        return list(self._users)

    # ---- nonces ----

    def nonce(self, client: Address, transport: str, now: float) -> str:
        """A fresh nonce for `client`, valid for `nonce_lifetime` seconds (RFC 8489 9.2.1): the feature prefix,
        then base64url of 3 bytes of expiry (1/16 s ticks, modulo 2**24) and 6 bytes of HMAC; 25 characters."""
        expiry = math.ceil((now + self.nonce_lifetime) * _NONCE_TICK)
        body = (expiry % _NONCE_WRAP).to_bytes(3, "big") + self._mac(expiry, client, transport)
        return self._prefix + base64.urlsafe_b64encode(body).decode()

    def nonce_valid(self, nonce: str, client: Address, transport: str, now: float) -> bool:
        """Whether `nonce` was issued by this server to `client` and has not expired (RFC 8489 9.2.4)."""
        if not nonce.startswith(self._prefix) or len(nonce) != len(self._prefix) + 12:
            return False
        try:
            body = base64.b64decode(nonce[len(self._prefix) :], altchars=b"-_", validate=True)
        except ValueError:
            return False
        # The first expiry from now on with these low 24 bits; the MAC covers all its bits.
        tick = math.floor(now * _NONCE_TICK)
        expiry = tick + (int.from_bytes(body[:3], "big") - tick) % _NONCE_WRAP
        if expiry - tick > self.nonce_lifetime * _NONCE_TICK + 2:  # + the rounding of both
            return False
        return hmac.compare_digest(body[3:], self._mac(expiry, client, transport)) and now * _NONCE_TICK < expiry

    def _mac(self, expiry: int, client: Address, transport: str) -> bytes:
        text = f"{expiry}|{client[0]}|{client[1]}|{transport}".encode()
        return hmac.new(self._secret, text, hashlib.sha256).digest()[:_NONCE_MAC]

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

    def check(
        self, request: Message, client: Address, transport: str, now: float, unix_time: float | None = None
    ) -> Authenticated | AuthError:
        """Authenticate `request` in the order of RFC 8489 9.2.4: 401, 400, 401, 401, then 438.

        `unix_time` (wall-clock seconds) judges the expiry of ephemeral usernames; without it they are refused.
        Every 401 is the same apart from its nonce; reasons are the bare RFC phrases (nothing to amplify)."""
        if Attr.MESSAGE_INTEGRITY not in request and Attr.MESSAGE_INTEGRITY_SHA256 not in request:
            return self._unauthenticated(client, transport, now)
        username = request.get(Attr.USERNAME)
        hashed = request.get(Attr.USERHASH)
        realm = request.get(Attr.REALM)
        nonce = request.get(Attr.NONCE)
        if (username is None and hashed is None) or realm is None or nonce is None:
            return AuthError(400, "Bad Request")  # MESSAGE-INTEGRITY without USERNAME, REALM or NONCE
        algorithm = int(PasswordAlgorithm.MD5)
        if self._offered and nonce.startswith(self._prefix):
            offered = request.get(Attr.PASSWORD_ALGORITHMS)
            chosen = request.get(Attr.PASSWORD_ALGORITHM)
            if offered is not None or chosen is not None:
                # Both or neither; the list must be ours; the choice must be on it (RFC 8489 9.2.4).
                if offered is None or chosen is None or list(offered) != self._offered:
                    return AuthError(400, "Bad Request")
                if tuple(chosen) not in [tuple(a) for a in offered]:
                    return AuthError(400, "Bad Request")
                algorithm = chosen[0]
        if username is None:
            assert hashed is not None
            username = self._by_hash.get(hashed, "")
        keys, expired = self._candidate_keys(username, algorithm, unix_time)
        if realm != self.realm:
            keys = []
        # Unknown users are checked against a random key: the same work and the same answer as a bad password.
        matched = [key for key in keys or [self._dummy_key] if request.verify_integrity(key)]
        if not keys or not matched or expired:
            return self._unauthenticated(client, transport, now)
        if not self.nonce_valid(nonce, client, transport, now):
            return AuthError(438, "Stale Nonce", self.challenge(client, transport, now))
        integrity: Literal["sha1", "sha256"] = "sha256" if Attr.MESSAGE_INTEGRITY_SHA256 in request else "sha1"
        return Authenticated(username, matched[0], integrity)

    def _candidate_keys(self, username: str, algorithm: int, unix_time: float | None) -> tuple[list[bytes], bool]:
        """The keys `username` may sign with (one per shared secret for an ephemeral one), and whether it expired."""
        if username in self._users:
            key = self._keys.get((username, algorithm))
            if key is None:
                key = long_term_key(username, self.realm, self._users[username], algorithm)
                self._keys[(username, algorithm)] = key
            return [key], False
        expiry = _ephemeral_expiry(username) if self._auth_secrets else None
        if expiry is None:
            return [], False
        keys = [
            long_term_key(username, self.realm, ephemeral_password(secret, username), algorithm)
            for secret in self._auth_secrets
        ]
        return keys, unix_time is None or expiry <= unix_time

    def _unauthenticated(self, client: Address, transport: str, now: float) -> AuthError:
        return AuthError(401, "Unauthenticated", self.challenge(client, transport, now))
