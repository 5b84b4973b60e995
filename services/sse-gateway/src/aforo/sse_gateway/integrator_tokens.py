"""How an integrator's server signs a bridge token: the reference implementation, and a dev CLI.

An integrator's own backend does this in its own language (docs/embed-sdk.md shows it); this module
is what the test suite, the benchmarks and a developer's shell use:

    python -m aforo.sse_gateway.integrator_tokens --kid bsk_... --secret ... --tenant t1 --customer c1
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time

import jwt

from aforo.shared.embed import BRIDGE_TOKEN_MAX_TTL_SECONDS
from aforo.sse_gateway.embed_tokens import ALGORITHM


def mint_bridge_token(
    *,
    kid: str,
    secret: str,
    tenant_id: str,
    customer_id: str,
    ttl_seconds: int = 120,
    issued_at: float | None = None,
    jti: str | None = None,
) -> str:
    """HS256, header `kid`, claims `tenant_id`, `customer_id`, `jti`, `iat`, `exp` (at most 300 s
    later). `jti` is random unless given: the gateway exchanges each token once, so a new exchange
    needs a new token."""
    issued = int(time.time() if issued_at is None else issued_at)
    claims = {
        "tenant_id": tenant_id,
        "customer_id": customer_id,
        "jti": secrets.token_urlsafe(16) if jti is None else jti,
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": kid})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kid", required=True, help="the signing key id (bsk_...)")
    parser.add_argument(
        "--secret",
        default=os.environ.get("AFORO_BRIDGE_SIGNING_SECRET"),
        help="or AFORO_BRIDGE_SIGNING_SECRET",
    )
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--customer", required=True)
    parser.add_argument(
        "--ttl", type=int, default=120, help=f"seconds, at most {BRIDGE_TOKEN_MAX_TTL_SECONDS}"
    )
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("--secret or AFORO_BRIDGE_SIGNING_SECRET is required")
    if not 0 < args.ttl <= BRIDGE_TOKEN_MAX_TTL_SECONDS:
        parser.error(f"--ttl must be between 1 and {BRIDGE_TOKEN_MAX_TTL_SECONDS}")
    print(
        mint_bridge_token(
            kid=args.kid,
            secret=args.secret,
            tenant_id=args.tenant,
            customer_id=args.customer,
            ttl_seconds=args.ttl,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
