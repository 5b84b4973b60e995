"""Webhook secrets encrypted at rest: the API encrypts on write, the dispatcher decrypts to sign.

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under a key from settings. Several keys may
be configured, newest first: encryption uses the first, decryption tries each, so the at-rest key
can be rotated without a migration. The plaintext never leaves these two call sites.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from aforo.shared.settings import ConfigurationError


class SecretBoxError(ValueError):
    """A key is malformed or a ciphertext does not decrypt under any configured key."""


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretBoxError("secrets_encryption_keys: at least one Fernet key is required")
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        except (ValueError, TypeError) as error:
            raise SecretBoxError(
                "secrets_encryption_keys: each key must be 32 url-safe base64-encoded bytes "
                "(generate one with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
            ) from error

    @classmethod
    def from_setting(cls, value: str) -> SecretBox:
        """Keys from one comma-separated setting, newest first."""
        return cls([key.strip() for key in value.split(",") if key.strip()])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as error:
            raise SecretBoxError("a stored secret does not decrypt under any configured key") from error


def generate_key() -> str:
    return Fernet.generate_key().decode()


def secret_box_from(keys_setting: str | None, needed_for: str) -> SecretBox:
    """The SecretBox of `AFORO_SECRETS_ENCRYPTION_KEYS`, or a ConfigurationError saying what it is
    `needed_for` (every service that stores or reads a secret refuses to start without it)."""
    if not keys_setting or not keys_setting.strip():
        raise ConfigurationError(
            f"secrets_encryption_keys (AFORO_SECRETS_ENCRYPTION_KEYS) is required: {needed_for} "
            "(comma-separated Fernet keys, newest first)"
        )
    try:
        return SecretBox.from_setting(keys_setting)
    except SecretBoxError as error:
        raise ConfigurationError(f"{error} (AFORO_SECRETS_ENCRYPTION_KEYS)") from None
