"""Which open streams must end now: their session was revoked, their embed key was revoked, or the
session reached its absolute lifetime. Pure; the sweep in `app.py` feeds it what MongoDB says.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from aforo.sse_gateway.connections import CloseReason, StreamGrant


def streams_to_close(
    grants: Iterable[StreamGrant],
    *,
    revoked_sessions: frozenset[tuple[str, str]],
    revoked_embed_keys: frozenset[tuple[str, str]],
    now: datetime,
) -> list[tuple[StreamGrant, CloseReason]]:
    """Each grant that no longer holds, with why. Revocations are (tenant id, id) pairs: ids are only
    unique within a tenant."""
    closing: list[tuple[StreamGrant, CloseReason]] = []
    for grant in grants:
        if (grant.tenant_id, grant.session_id) in revoked_sessions or (
            grant.tenant_id,
            grant.embed_key_id,
        ) in revoked_embed_keys:
            closing.append((grant, CloseReason.REVOKED))
        elif grant.session_ends_at <= now:
            closing.append((grant, CloseReason.SESSION_ENDED))
    return closing
