"""The audit trail read through its pages (`aforo.shared.audit_trail`) on SecantusDB, against the
trail computed the obvious way: a customer's stored rows, sorted newest first by `(createdAt, _id)`.

The pages are written the ways production writes them and worse: batches of any size spanning
windows, a batch's pages written twice (a flush retried), pages for rows never stored (a flush that
failed after its pages), reservations replaced by their outcome at a later time (a stale entry), rows
that share a millisecond, legacy rows with ObjectIds, other customers and tenants.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from bson import ObjectId
from pymongo import IndexModel

from aforo.dispatcher import audit_backfill
from aforo.dispatcher.audit_backfill import LEGACY_ROW_INDEX, LEGACY_ROW_ORDER, backfill_pages
from aforo.dispatcher.delivery_log import DeliveryLogRow
from aforo.dispatcher.log_writer import DeliveryLogWriter
from aforo.shared.audit_trail import AuditTrail, TrailWindow, page_documents, position_key
from aforo.shared.collections import DELIVERY_LOG_PAGES, DELIVERY_LOGS
from aforo.shared.delivery import Channel, SkipReason
from aforo.shared.mongo import Document, MongoStore
from tests.support.database import own_database
from tests.support.envelopes import make_envelope
from tests.support.stack import LocalStack

pytestmark = pytest.mark.asyncio(loop_scope="session")

BASE = datetime(2026, 5, 1, tzinfo=UTC)
STATUSES = ("DELIVERED", "FAILED", "RETRYING", "SKIPPED")


@pytest_asyncio.fixture(loop_scope="session")
async def mongo(local_stack: LocalStack) -> AsyncIterator[MongoStore]:
    async with own_database(local_stack.mongo_uri, [DELIVERY_LOGS, DELIVERY_LOG_PAGES]) as store:
        yield store


def trail(mongo: MongoStore) -> AuditTrail:
    return AuditTrail(
        mongo.collection(DELIVERY_LOG_PAGES.collection), mongo.collection(DELIVERY_LOGS.collection)
    )


def a_row(chance: random.Random, tenant: str, customer: str, created_at: datetime) -> Document:
    row_id: Any = ObjectId() if chance.random() < 0.1 else str(uuid.UUID(int=chance.getrandbits(128)))
    return {
        "_id": row_id,
        "tenantId": tenant,
        "endCustomerId": customer,
        "eventId": f"e{chance.randrange(40)}",
        "status": chance.choice(STATUSES),
        "createdAt": created_at,
    }


def newest_first(rows: list[Document]) -> list[Any]:
    return [
        row["_id"]
        for row in sorted(rows, key=lambda row: position_key(row["createdAt"], row["_id"]), reverse=True)
    ]


async def store_like_the_dispatcher(mongo: MongoStore, chance: random.Random, count: int) -> list[Document]:
    """Rows of customer c1 of t1 (and noise), written in batches with every irregularity above;
    returns the rows of t1/c1 as finally stored."""
    pages = mongo.collection(DELIVERY_LOG_PAGES.collection)
    rows = mongo.collection(DELIVERY_LOGS.collection)
    stored: dict[Any, Document] = {}
    pending: list[Document] = []
    for _ in range(count):
        # Minutes apart at times (batches span windows), the same millisecond at others.
        moment = BASE + timedelta(
            milliseconds=chance.choice((0, 1, 7, 999, 45_000, 61_000)) * chance.randrange(60)
        )
        owner = chance.choices((("t1", "c1"), ("t1", "c2"), ("t2", "c1")), weights=(6, 2, 2))[0]
        pending.append(a_row(chance, *owner, moment))
        if chance.random() < 0.15:
            batch, pending = pending, []
            await pages.insert_many(page_documents(batch))
            if chance.random() < 0.2:
                await pages.insert_many(page_documents(batch))  # a flush retried after its pages
            if chance.random() < 0.1:
                continue  # its rows were never stored (their entries dangle)
            await rows.insert_many([dict(row) for row in batch])
            stored.update({row["_id"]: row for row in batch})
    # Reservations replaced by their outcome later: the old entries go stale, new ones are written.
    for row in chance.sample(list(stored.values()), k=min(15, len(stored))):
        moved = dict(
            row, createdAt=row["createdAt"] + timedelta(seconds=chance.randrange(1, 200)), status="DELIVERED"
        )
        await pages.insert_many(page_documents([moved]))
        await rows.replace_one({"_id": row["_id"]}, moved)
        stored[row["_id"]] = moved
    return [row for row in stored.values() if (row["tenantId"], row["endCustomerId"]) == ("t1", "c1")]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_paging_through_the_trail_lists_every_stored_row_once_newest_first(
    mongo: MongoStore, seed: int
) -> None:
    chance = random.Random(seed)
    await mongo.collection(DELIVERY_LOGS.collection).delete_many({})
    await mongo.collection(DELIVERY_LOG_PAGES.collection).delete_many({})
    expected = await store_like_the_dispatcher(mongo, chance, 400)

    for limit in (1, 7, 50):
        listed: list[Any] = []
        before = None
        while True:
            page = await trail(mongo).newest_first("t1", "c1", TrailWindow(before=before), limit=limit)
            listed += [row["_id"] for row in page]
            if len(page) < limit:
                break
            before = (page[-1]["createdAt"], page[-1]["_id"])
        assert listed == newest_first(expected), limit


@pytest.mark.parametrize("seed", [4, 5])
async def test_windows_and_filters_select_what_a_query_on_the_rows_would(
    mongo: MongoStore, seed: int
) -> None:
    chance = random.Random(seed)
    await mongo.collection(DELIVERY_LOGS.collection).delete_many({})
    await mongo.collection(DELIVERY_LOG_PAGES.collection).delete_many({})
    expected = await store_like_the_dispatcher(mongo, chance, 300)

    matched = reads = 0
    for _ in range(12):
        start = BASE + timedelta(milliseconds=chance.randrange(0, 3_600_000))
        end = start + timedelta(milliseconds=chance.randrange(1, 1_800_000))
        status = chance.choice(STATUSES)
        found = await trail(mongo).newest_first(
            "t1", "c1", TrailWindow(from_time=start, to_time=end), where={"status": status}
        )
        wanted = [row for row in expected if start <= row["createdAt"] < end and row["status"] == status]
        assert [row["_id"] for row in found] == newest_first(wanted)

        # A page of `limit` rows at a time (how the API reads it) with two conditions, in a window
        # from the trail's start (where most rows are), so that reads span several pages.
        events = sorted({row["eventId"] for row in expected})[::2]
        where = {"status": status, "eventId": {"$in": events}}
        wanted = [
            row
            for row in expected
            if row["createdAt"] < end and row["status"] == status and row["eventId"] in events
        ]
        limit = chance.choice((1, 3, 7))
        listed: list[Any] = []
        before = None
        while True:
            window = TrailWindow(from_time=BASE, to_time=end, before=before)
            page = await trail(mongo).newest_first("t1", "c1", window, where=where, limit=limit)
            listed += [row["_id"] for row in page]
            reads += 1
            if len(page) < limit:
                break
            before = (page[-1]["createdAt"], page[-1]["_id"])
        assert listed == newest_first(wanted)
        matched += len(wanted)
    assert matched > 100
    assert reads > 12 * 3
    assert await trail(mongo).newest_first("t1", "nobody", TrailWindow()) == []
    # A condition cannot widen the read past its tenant and customer.
    hijack = await trail(mongo).newest_first("t1", "c1", TrailWindow(), where={"tenantId": "t2"})
    assert [row["_id"] for row in hijack] == newest_first(expected)


async def test_the_log_writer_lists_each_row_it_stores(mongo: MongoStore) -> None:
    writer = DeliveryLogWriter(mongo, batch_size=10, flush_interval_seconds=60)
    customer = f"c-{uuid.uuid4().hex[:6]}"
    envelope = make_envelope(tenant="t9", customer=customer)
    now = datetime.now(UTC)
    rows = [
        DeliveryLogRow.skipped(
            envelope,
            Channel.WEBHOOK,
            SkipReason.ENDPOINT_FILTER,
            created_at=now + timedelta(seconds=index),
            endpoint_id=f"ep{index}",
        )
        for index in range(25)
    ]
    for row in rows:
        writer.add(row, envelope.to_json_bytes())
    await writer.flush()

    listed = await trail(mongo).newest_first("t9", customer, TrailWindow())

    assert [row["endpointId"] for row in listed] == [f"ep{index}" for index in reversed(range(25))]


async def with_the_legacy_index(store: MongoStore) -> None:
    await store.collection(DELIVERY_LOGS.collection).create_indexes(
        [IndexModel(LEGACY_ROW_ORDER, name=LEGACY_ROW_INDEX)]
    )


def legacy_rows(chance: random.Random, count: int) -> list[Document]:
    owners = (("t1", "c1"), ("t1", "c2"), ("t2", "c1"))
    return [
        a_row(chance, *chance.choice(owners), BASE + timedelta(seconds=chance.randrange(600)))
        for _ in range(count)
    ]


async def assert_every_row_listed_once(store: MongoStore, rows: list[Document]) -> None:
    for tenant, customer in {(row["tenantId"], row["endCustomerId"]) for row in rows}:
        listed = await trail(store).newest_first(tenant, customer, TrailWindow())
        theirs = [row for row in rows if (row["tenantId"], row["endCustomerId"]) == (tenant, customer)]
        assert [row["_id"] for row in listed] == newest_first(theirs)


async def test_the_backfill_pages_rows_the_old_index_listed_then_drops_it(local_stack: LocalStack) -> None:
    async with own_database(local_stack.mongo_uri, [DELIVERY_LOGS, DELIVERY_LOG_PAGES]) as store:
        rows = store.collection(DELIVERY_LOGS.collection)
        await with_the_legacy_index(store)
        legacy = legacy_rows(random.Random(9), 130)
        await rows.insert_many([dict(row) for row in legacy])

        assert await backfill_pages(store, batch_size=50) == 130
        assert await backfill_pages(store, batch_size=50) is None  # done: the old index is gone
        assert LEGACY_ROW_INDEX not in await rows.index_information()
        await assert_every_row_listed_once(store, legacy)
        # In the old index's order a customer's rows come together: one page per (customer, minute),
        # and at most one more where a batch ends (in `_id` order it would be one per batch and group).
        groups = {
            (row["tenantId"], row["endCustomerId"], row["createdAt"].replace(second=0)) for row in legacy
        }
        pages = await store.collection(DELIVERY_LOG_PAGES.collection).count_documents({})
        assert len(groups) <= pages <= len(groups) + 2


async def test_a_backfill_interrupted_then_run_again_over_new_rows_lists_every_row_once(
    local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with own_database(local_stack.mongo_uri, [DELIVERY_LOGS, DELIVERY_LOG_PAGES]) as store:
        rows = store.collection(DELIVERY_LOGS.collection)
        await with_the_legacy_index(store)
        chance = random.Random(11)
        first = legacy_rows(chance, 200)
        await rows.insert_many([dict(row) for row in first])

        # The first run stops (a restart) after two of its batches are paged.
        write_pages = audit_backfill._write_pages
        written = 0

        async def dies_after_two(pages: Any, batch: list[Document]) -> int:
            nonlocal written
            if written == 2:
                raise ConnectionError("dispatcher restarted")
            written += 1
            return await write_pages(pages, batch)

        monkeypatch.setattr(audit_backfill, "_write_pages", dies_after_two)
        with pytest.raises(ConnectionError):
            await backfill_pages(store, batch_size=40)
        monkeypatch.setattr(audit_backfill, "_write_pages", write_pages)
        assert LEGACY_ROW_INDEX in await rows.index_information()  # not dropped: the run did not finish

        # An old-version dispatcher goes on writing rows without pages; the next run pages them with
        # the rest, in batches that fall differently (pages of other contents beside the first run's).
        second = legacy_rows(chance, 90)
        await rows.insert_many([dict(row) for row in second])
        assert await backfill_pages(store, batch_size=33) == 290
        await assert_every_row_listed_once(store, first + second)

        # Rows written after the index went (a rolling upgrade's old dispatcher): `--all` pages them.
        # `since` the upgrade began: only those rows are read again.
        upgrade = BASE + timedelta(minutes=20)
        late = [
            a_row(chance, "t1", "c1", upgrade + timedelta(seconds=chance.randrange(300))) for _ in range(25)
        ]
        await rows.insert_many([dict(row) for row in late])
        assert await backfill_pages(store) is None
        assert await backfill_pages(store, every_row=True, since=upgrade) == 25
        await assert_every_row_listed_once(store, first + second + late)
        assert await backfill_pages(store, every_row=True) == 315  # and all of them: still each once
        await assert_every_row_listed_once(store, first + second + late)


async def run_backfill_command(environment: dict[str, str], *arguments: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aforo.dispatcher.audit_backfill",
        *arguments,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_backfill_command_pages_rows_with_the_dispatcher_s_settings(
    local_stack: LocalStack,
) -> None:
    async with own_database(local_stack.mongo_uri, [DELIVERY_LOGS, DELIVERY_LOG_PAGES]) as store:
        late = legacy_rows(random.Random(13), 40)
        await store.collection(DELIVERY_LOGS.collection).insert_many([dict(row) for row in late])
        environment = {key: value for key, value in os.environ.items() if not key.startswith("AFORO_")}
        environment.update(AFORO_MONGO_URI=local_stack.mongo_uri, AFORO_MONGO_DATABASE=store.database.name)

        code, out, err = await run_backfill_command(environment, "--all", "--since", "2026-05-01T00:00:00Z")
        assert code == 0, err
        assert out.splitlines()[-1] == "paged 40 rows"  # after the log lines
        await assert_every_row_listed_once(store, late)

        code, out, _ = await run_backfill_command(environment)
        assert code == 0
        assert out.splitlines()[-1].startswith("the old index is gone")

        # Settings that cannot work: exit 2 naming the setting, not a traceback; a bad time: usage.
        code, out, err = await run_backfill_command({**environment, "AFORO_TOPIC_PARTITIONS": "0"}, "--all")
        assert code == 2
        assert "settings_invalid" in out
        assert "topic_partitions" in out
        assert "Traceback" not in out + err
        code, _, err = await run_backfill_command(environment, "--all", "--since", "2026-05-01T00:00:00")
        assert code == 2
        assert "time zone" in err
