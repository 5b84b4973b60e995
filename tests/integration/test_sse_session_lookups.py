"""The gateway's session lookups on the real SecantusDB: a burst of stream connects shares `$in`
queries, and every caller still gets exactly its own tenant's session (or None)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest_asyncio

from aforo.shared.collections import EMBED_SESSIONS
from aforo.shared.embed import EmbedSessionDocument
from aforo.shared.mongo import MongoStore
from aforo.shared.secret_box import SecretBox, generate_key
from aforo.sse_gateway.embed_store import SESSION_LOOKUP_BATCH, EmbedStore
from tests.support.database import own_database
from tests.support.stack import LocalStack


def session_document(
    tenant_id: str, session_id: str, customer_id: str, now: datetime
) -> EmbedSessionDocument:
    return EmbedSessionDocument(
        tenant_id=tenant_id,
        session_id=session_id,
        customer_id=customer_id,
        embed_key_id="ek_lookup",
        signing_key_id="bsk_lookup",
        origin="https://app.acme.test",
        created_at=now,
        expires_at=now + timedelta(minutes=15),
        ends_at=now + timedelta(hours=12),
        purge_at=now + timedelta(days=1),
    )


@pytest_asyncio.fixture
async def mongo(local_stack: LocalStack) -> AsyncIterator[MongoStore]:
    """A database of this test's own with the sessions collection and its indexes; dropped after."""
    async with own_database(local_stack.mongo_uri, [EMBED_SESSIONS], prefix="sse_lookups") as store:
        yield store


async def test_a_burst_of_session_lookups_answers_each_caller_with_its_own_tenants_session(
    mongo: MongoStore,
) -> None:
    now = datetime.now(UTC)
    # More sessions than one query holds, in two tenants; the second reuses the first's ids.
    count = SESSION_LOOKUP_BATCH * 3 + 5
    documents = [session_document("t-a", f"es_{index}", f"a{index}", now) for index in range(count)]
    documents += [session_document("t-b", f"es_{index}", f"b{index}", now) for index in range(5)]
    await mongo.collection(EMBED_SESSIONS.collection).insert_many(
        [document.to_document() for document in documents]
    )
    store = EmbedStore(mongo, SecretBox([generate_key()]), cache_seconds=0)

    asked = [("t-a", f"es_{index}") for index in range(count)]
    asked += [("t-b", f"es_{index}") for index in range(count)]  # t-b holds only the first 5
    asked += [("t-a", "es_0"), ("t-a", "es_missing"), ("t-c", "es_1")]
    found = await asyncio.gather(*(store.session(tenant, session) for tenant, session in asked))

    answers = {
        (tenant, session): None if document is None else document.customer_id
        for (tenant, session), document in zip(asked, found, strict=True)
    }
    assert [answers[("t-a", f"es_{index}")] for index in range(count)] == [
        f"a{index}" for index in range(count)
    ]
    assert [answers[("t-b", f"es_{index}")] for index in range(count)] == [
        f"b{index}" if index < 5 else None for index in range(count)
    ]
    assert answers[("t-a", "es_missing")] is None
    assert answers[("t-c", "es_1")] is None  # another tenant's id is not this tenant's session
    assert found[-3] is not None
    assert found[-3].customer_id == "a0"

    # A lone lookup (nothing to batch with) is answered too, and a revoked session reads as such.
    await mongo.collection(EMBED_SESSIONS.collection).update_one(
        {"tenantId": "t-a", "sessionId": "es_3"}, {"$set": {"revokedAt": now}}
    )
    lone = await store.session("t-a", "es_3")
    assert lone is not None
    assert lone.revoked


async def test_a_caller_that_gives_up_does_not_disturb_the_others_of_its_batch(mongo: MongoStore) -> None:
    now = datetime.now(UTC)
    await mongo.collection(EMBED_SESSIONS.collection).insert_many(
        [session_document("t-a", f"es_{index}", f"a{index}", now).to_document() for index in range(4)]
    )
    store = EmbedStore(mongo, SecretBox([generate_key()]), cache_seconds=0)
    lookups = [asyncio.create_task(store.session("t-a", f"es_{index}")) for index in range(4)]
    await asyncio.sleep(0)  # the lookups are queued; the batch goes out on the next turn
    lookups[1].cancel()  # a browser that closed its connect while its session was looked up
    results = await asyncio.gather(*lookups, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert [getattr(result, "customer_id", None) for result in results] == ["a0", None, "a2", "a3"]
