"""The walking skeleton: five services start, become ready and stop cleanly on the real stack;
the shared MongoDB helper writes and reads back; a producer record comes out as an envelope."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import aiohttp
import pytest
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError, OperationFailure

from aforo.shared.mongo import CollectionIndexes, MongoStore, bulk_insert_outcomes
from tests.support.kafka import TopicReader, create_topics, produce, unique_prefix
from tests.support.processes import ServiceProcess
from tests.support.prometheus import PrometheusServer, promtool_problems
from tests.support.stack import LocalStack, service_env

SERVICES = [
    ("aforo.bridge", "AFORO_BRIDGE_"),
    ("aforo.trigger", "AFORO_TRIGGER_"),
    ("aforo.dispatcher", "AFORO_DISPATCHER_"),
    ("aforo.api", "AFORO_API_"),
    ("aforo.sse_gateway", "AFORO_SSE_GATEWAY_"),
]


def stack_env(stack: LocalStack, prefix: str, database: str) -> dict[str, str]:
    return service_env(stack, prefix, database)


async def test_five_services_become_ready_serve_metrics_and_stop_on_sigterm(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    prefix = unique_prefix()
    env = stack_env(local_stack, prefix, f"db_{uuid.uuid4().hex[:8]}")
    env["AFORO_BRIDGE_SOURCE_TOPIC_PREFIX"] = prefix
    processes = [
        ServiceProcess(module, env_prefix, env, service_log_dir).start() for module, env_prefix in SERVICES
    ]
    try:
        await asyncio.gather(*(process.wait_ready(timeout=90) for process in processes))
        async with aiohttp.ClientSession() as session:
            for process in processes:
                async with session.get(f"{process.url}/healthz") as response:
                    assert response.status == 200, process.module
                async with session.get(f"{process.url}/readyz") as response:
                    body = await response.json()
                    assert response.status == 200
                    assert body["status"] == "ready"
                    assert body["checks"]["kafka"] is True
                async with session.get(f"{process.url}/metrics") as response:
                    text = await response.text()
                    assert response.status == 200
                    assert "aforo_service_ready" in text
                    assert "python_info" in text
                    assert promtool_problems(text) == "", process.module
        # A real Prometheus scrapes all five: the format is what dashboards will read.
        prometheus = PrometheusServer(
            [f"127.0.0.1:{process.port}" for process in processes], service_log_dir / f"prometheus-{prefix}"
        ).start()
        try:
            up = await prometheus.wait_all_up()
            assert len(up) == len(SERVICES)
            ready = await prometheus.query("aforo_service_ready")
            assert sorted(sample["metric"]["service"] for sample in ready) == sorted(
                ["bridge", "trigger", "dispatcher", "api", "sse_gateway"]
            )
        finally:
            prometheus.stop()
    finally:
        codes = await asyncio.gather(*(asyncio.to_thread(process.terminate, 30) for process in processes))
    assert codes == [0] * len(SERVICES), {p.module: c for p, c in zip(processes, codes, strict=True)}
    for process in processes:
        assert "service_stopped" in process.log_text(), process.module


async def test_mongo_helper_creates_indexes_and_reads_back(local_stack: LocalStack) -> None:
    database = f"db_{uuid.uuid4().hex[:8]}"
    store = MongoStore(local_stack.mongo_uri, database, app_name="aforo-test")
    spec = CollectionIndexes(
        "things",
        (IndexModel([("tenantId", ASCENDING), ("name", ASCENDING)], unique=True, name="tenant_name"),),
    )
    await store.start([spec])
    try:
        assert await store.answers(2.0)
        things = store.collection("things")
        await things.insert_one({"tenantId": "t1", "name": "a", "amount": 2**62, "nested": {"x": [1, 2.5]}})
        found = await things.find_one({"tenantId": "t1", "name": "a"}, {"_id": 0})
        assert found == {"tenantId": "t1", "name": "a", "amount": 2**62, "nested": {"x": [1, 2.5]}}
        assert "tenant_name" in await things.index_information()
        with pytest.raises(DuplicateKeyError):
            await things.insert_one({"tenantId": "t1", "name": "a"})
        await store.start([spec])  # a second start (restart) must not fail on existing indexes
        # An index a later version retires is dropped at the next start, and a start without it
        # (a fresh database, or one already upgraded) does not fail.
        upgraded = CollectionIndexes("things", (), retired=("tenant_name", "never_created"))
        await store.start([upgraded])
        assert "tenant_name" not in await things.index_information()
        await store.start([upgraded])
    finally:
        await store.client.drop_database(database)
        await store.close()


def test_bulk_insert_outcomes_tell_duplicates_from_other_errors() -> None:
    outcomes = bulk_insert_outcomes(
        4,
        [
            {"index": 1, "code": 11000, "errmsg": "E11000 duplicate key"},
            {"index": 3, "code": 121, "errmsg": "Document failed validation"},
        ],
    )
    assert outcomes[:3] == [True, False, True]
    assert isinstance(outcomes[3], OperationFailure)
    assert outcomes[3].code == 121


async def test_bridge_turns_a_producer_record_into_an_envelope(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    prefix = unique_prefix()
    env = stack_env(local_stack, prefix, "unused")
    env["AFORO_BRIDGE_SOURCE_TOPIC_PREFIX"] = prefix
    source_topic = f"{prefix}billing.invoice.finalized"
    await create_topics(local_stack.kafka_bootstrap, [source_topic])
    bridge = ServiceProcess("aforo.bridge", "AFORO_BRIDGE_", env, service_log_dir).start()
    try:
        await bridge.wait_ready()
        payload = {"tenantId": "t1", "customerId": "c1", "invoiceId": "inv-1", "amountDue": 12000}
        await produce(local_stack.kafka_bootstrap, source_topic, [json.dumps(payload).encode()])
        async with TopicReader(local_stack.kafka_bootstrap, f"{prefix}events.system") as reader:
            records = await reader.until(lambda got: len(got) >= 1)
        envelope = json.loads(records[0].value)
        assert envelope["eventType"] == "INVOICE_GENERATED"
        assert envelope["payload"] == payload
        assert records[0].key == b"t1:c1"
    finally:
        assert bridge.terminate() == 0
