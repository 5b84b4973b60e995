"""The identity provider's signing keys, fetched from its JWKS and refreshed when an unknown `kid` arrives."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import jwt

from aforo.api.auth.errors import SigningKeysUnavailableError, UnauthenticatedError
from aforo.shared.logging import get_logger
from aforo.shared.serde import loads_json

_log = get_logger(__name__)


def _usable_signing_keys(document: object) -> dict[str, jwt.PyJWK]:
    """RS256 signing keys by `kid`; encryption keys and other key types in the set are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("the JWKS document has no 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if (
            not isinstance(kid, str)
            or not kid
            or entry.get("kty") != "RSA"
            or entry.get("use", "sig") != "sig"
            or entry.get("alg", "RS256") != "RS256"
        ):
            continue
        try:
            keys[kid] = jwt.PyJWK(entry, algorithm="RS256")
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError):
            _log.warning("jwks key skipped", kid=kid, reason="unparseable RSA key")
    return keys


class JwksKeySet:
    """Keycloak's public keys, fetched with aiohttp (never blocking the loop) and cached.

    Keys are kept for `cache_seconds`. A token with an unknown `kid` (a rotated key) triggers one
    refresh, but fetches are at least `min_refresh_seconds` apart, so a flood of made-up `kid`s
    costs Keycloak at most one request per interval. When a fetch fails, the cached keys stay in use.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300.0,
        min_refresh_seconds: float = 10.0,
        timeout_seconds: float = 5.0,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._cache_seconds = cache_seconds
        self._min_refresh_seconds = min_refresh_seconds
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._lock = asyncio.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._last_attempt_at: float | None = None

    async def key_for(self, kid: str) -> jwt.PyJWK:
        now = self._clock()
        if self._is_fresh(now) and kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            # Another request may have refreshed while this one waited for the lock.
            now = self._clock()
            if not (self._is_fresh(now) and kid in self._keys) and self._may_fetch(now):
                await self._refresh(now)
            key = self._keys.get(kid)
            if key is not None:
                return key
            if self._fetched_at is None:
                raise SigningKeysUnavailableError("auth_unavailable", "the signing keys cannot be fetched")
            raise UnauthenticatedError("invalid_token", "the token is signed by an unknown key", "kid")

    def _is_fresh(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self._cache_seconds

    def _may_fetch(self, now: float) -> bool:
        return self._last_attempt_at is None or now - self._last_attempt_at >= self._min_refresh_seconds

    async def _refresh(self, now: float) -> None:
        self._last_attempt_at = now
        try:
            keys = await self._fetch()
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            _log.warning(
                "jwks fetch failed", url=self._url, error=type(error).__name__, cached_keys=len(self._keys)
            )
            return
        self._keys = keys
        self._fetched_at = now

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.get(self._url, timeout=self._timeout, allow_redirects=False) as response:
            if response.status != 200:
                raise ValueError(f"the JWKS endpoint answered {response.status}")
            return _usable_signing_keys(loads_json(await response.read()))

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
