"""`python -m aforo.api.dev_tokens token --tenant t1 --role ADMIN [--customer c1] [--ttl 3600]`.

Mints a token the API accepts in local runs. It reads the API's own auth settings and refuses
(exit 2) unless they select HS256 with a secret: a production setup (Keycloak JWKS) has no secret
to sign with, and the tool must never look as if it could mint production tokens. Only the token
goes to stdout, so `TOKEN=$(python -m aforo.api.dev_tokens token ...)` works.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from aforo.api.auth import ADMIN_ROLES, CUSTOMER_ROLE, AuthConfig, AuthConfigError

EXIT_REFUSED = 2
KNOWN_ROLES = sorted(ADMIN_ROLES | {CUSTOMER_ROLE})
HS256_DEV_SETTING = (
    "dev tokens need the HS256 dev setting "
    "(AFORO_API_AUTH_MODE=hs256 and AFORO_API_JWT_HS256_SECRET of at least 32 bytes)"
)


class DevTokensRefusedError(Exception):
    """The settings do not allow locally minted tokens, or the request makes no usable token."""


def mint_dev_token(
    config: AuthConfig,
    *,
    tenant_id: str,
    roles: Sequence[str],
    customer_id: str | None = None,
    subject: str = "dev-user",
    ttl_seconds: int = 3600,
    now: datetime | None = None,
) -> str:
    """An HS256 token with the claims the API reads; issuer and audience match the configuration."""
    if config.mode != "hs256" or config.hs256_secret is None:
        raise DevTokensRefusedError(f"{HS256_DEV_SETTING}; the API is configured for {config.mode}")
    if not tenant_id:
        raise DevTokensRefusedError("--tenant must not be empty")
    if ttl_seconds <= 0:
        raise DevTokensRefusedError("--ttl must be a positive number of seconds")
    if ttl_seconds > config.max_token_lifetime_seconds:
        raise DevTokensRefusedError(
            f"--ttl must be at most {int(config.max_token_lifetime_seconds)} s "
            "(AFORO_API_MAX_TOKEN_LIFETIME_SECONDS): the API refuses longer-lived tokens"
        )
    if CUSTOMER_ROLE in roles and not customer_id:
        raise DevTokensRefusedError(
            "--role CUSTOMER needs --customer: portal routes take the customer from the token"
        )
    issued_at = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject,
        "tenant_id": tenant_id,
        "roles": sorted(set(roles)),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + timedelta(seconds=ttl_seconds),
    }
    if customer_id:
        claims["customer_id"] = customer_id
    if config.issuer is not None:
        claims["iss"] = config.issuer
    if config.audience is not None:
        claims["aud"] = config.audience
    return jwt.encode(claims, config.hs256_secret, algorithm="HS256")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aforo.api.dev_tokens",
        description="Mint local API tokens (only when the API runs with AFORO_API_AUTH_MODE=hs256).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="print a signed token on stdout")
    token.add_argument("--tenant", required=True, help="the tenant_id claim")
    token.add_argument(
        "--role",
        dest="roles",
        action="append",
        required=True,
        choices=KNOWN_ROLES,
        help="a role (repeat for several)",
    )
    token.add_argument("--customer", help="the customer_id claim (required with --role CUSTOMER)")
    token.add_argument("--subject", default="dev-user", help="the sub claim (default: dev-user)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default: 3600)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as stop:
        # argparse exits 2 on a usage error (its message is already on stderr) and 0 on --help.
        return stop.code if isinstance(stop.code, int) else EXIT_REFUSED
    try:
        config = AuthConfig.from_env()
        token = mint_dev_token(
            config,
            tenant_id=args.tenant,
            roles=args.roles,
            customer_id=args.customer,
            subject=args.subject,
            ttl_seconds=args.ttl,
        )
    except AuthConfigError as error:
        sys.stderr.write(
            f"dev_tokens: refused: {HS256_DEV_SETTING}; the API auth settings are unusable: {error}\n"
        )
        return EXIT_REFUSED
    except DevTokensRefusedError as refusal:
        sys.stderr.write(f"dev_tokens: refused: {refusal}\n")
        return EXIT_REFUSED
    sys.stdout.write(token + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
