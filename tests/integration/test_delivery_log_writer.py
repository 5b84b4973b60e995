"""The delivery-log writer on SecantusDB: each flush tells how long its oldest row waited between its
attempt and being stored (`aforo_dispatcher_log_row_wait_seconds`), what an operator watches for
an audit trail that trails the deliveries (alert AforoAuditTrailBehind)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from pymongo.errors import PyMongoError

from aforo.dispatcher.delivery_log import DeliveryLogRow
from aforo.dispatcher.log_writer import DeliveryLogWriter
from aforo.shared.collections import DELIVERY_LOGS
from aforo.shared.delivery import Channel
from aforo.shared.mongo import MongoStore
from tests.support.database import own_database
from tests.support.envelopes import make_envelope
from tests.support.stack import LocalStack

pytestmark = pytest.mark.asyncio(loop_scope="session")

WAIT = "aforo_dispatcher_log_row_wait_seconds"


@pytest_asyncio.fixture(loop_scope="session")
async def mongo(local_stack: LocalStack) -> AsyncIterator[MongoStore]:
    async with own_database(local_stack.mongo_uri, [DELIVERY_LOGS]) as store:
        yield store


def observed() -> tuple[float, float]:
    """(count, sum) of the wait histogram so far."""
    return (
        REGISTRY.get_sample_value(f"{WAIT}_count") or 0.0,
        REGISTRY.get_sample_value(f"{WAIT}_sum") or 0.0,
    )


def row(created_at: datetime) -> tuple[DeliveryLogRow, bytes]:
    envelope = make_envelope("INVOICE_GENERATED")
    attempt = DeliveryLogRow.pending(
        envelope, endpoint_id="ep-1", attempt=1, created_at=created_at, channel=Channel.WEBHOOK
    )
    return attempt, envelope.to_json_bytes()


async def test_a_flush_records_how_long_its_oldest_row_waited(mongo: MongoStore) -> None:
    writer = DeliveryLogWriter(mongo, batch_size=100, flush_interval_seconds=60)
    now = datetime.now(UTC)
    writer.add(*row(now - timedelta(seconds=3)))  # e.g. kept through a MongoDB outage
    writer.add(*row(now))
    count, total = observed()

    await writer.flush()

    new_count, new_total = observed()
    assert new_count == count + 1  # one observation per flush: its oldest row
    assert 3.0 <= new_total - total < 30.0
    assert await mongo.collection(DELIVERY_LOGS.collection).count_documents({}) == 2


async def test_a_flush_with_nothing_to_write_records_nothing(mongo: MongoStore) -> None:
    writer = DeliveryLogWriter(mongo, batch_size=100, flush_interval_seconds=60)
    before = observed()
    await writer.flush()
    assert observed() == before


async def test_a_failed_flush_records_nothing() -> None:
    # Nothing listens on port 9: the database is away for the first flush.
    away = MongoStore("mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200", "db_away", app_name="test")
    writer = DeliveryLogWriter(away, batch_size=100, flush_interval_seconds=60)
    writer.add(*row(datetime.now(UTC) - timedelta(seconds=5)))
    before = observed()
    try:
        with pytest.raises(PyMongoError):
            await writer.flush()
    finally:
        await away.close()
    assert observed() == before
