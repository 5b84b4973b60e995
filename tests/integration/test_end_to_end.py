"""The product end to end, every process real: configuration through the API, a producer record
through the bridge, a CUSTOM event through the trigger, signed webhooks from the dispatcher to a
receiver process, and the audit trail back through the API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import stripe

from aforo.shared.serde import dumps_json
from aforo.shared.signing import verify_signature
from tests.support.api_harness import start_api
from tests.support.kafka import create_topics, produce
from tests.support.processes import ServiceProcess
from tests.support.receiver import Receiver
from tests.support.stack import LocalStack, service_env

CONFIG_BOUND_SECONDS = 2.0  # the documented bound for a configuration change to reach the pipeline


async def test_a_registered_endpoint_gets_system_custom_manual_and_probe_events(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    receiver = await Receiver(service_log_dir).start()
    processes: list[ServiceProcess] = []
    try:
        async with start_api(local_stack, service_log_dir) as api:
            env = service_env(
                local_stack,
                api.prefix,
                api.database,
                AFORO_SECRETS_ENCRYPTION_KEYS=api.encryption_key,
                AFORO_BRIDGE_SOURCE_TOPIC_PREFIX=api.prefix,
                AFORO_BRIDGE_METADATA_MAX_AGE_MS="1000",
            )
            source_topic = f"{api.prefix}billing.invoice.finalized"
            await create_topics(local_stack.kafka_bootstrap, [source_topic])
            processes = [
                ServiceProcess(module, env_prefix, env, service_log_dir).start()
                for module, env_prefix in (
                    ("aforo.bridge", "AFORO_BRIDGE_"),
                    ("aforo.trigger", "AFORO_TRIGGER_"),
                    ("aforo.dispatcher", "AFORO_DISPATCHER_"),
                )
            ]
            await asyncio.gather(*(process.wait_ready(timeout=90) for process in processes))

            # Register an endpoint and a CUSTOM event with a rule, through the API.
            registered = await api.call(
                "POST",
                "/api/v1/webhook-endpoints",
                json={
                    "endCustomerId": "c1",
                    "url": receiver.hook_url("e2e"),
                    "events": ["*"],
                    "secret": "whsec_e2e_first_secret",
                },
            )
            assert registered.status == 201, registered.body
            endpoint_id = registered.json()["endpointId"]
            defined = await api.call(
                "POST",
                "/api/v1/admin/event-definitions",
                json={
                    "eventType": "WHALE_CUSTOMER",
                    "displayName": "Whale customer",
                    "category": "Billing",
                    "severity": "WARNING",
                    "defaultChannels": ["WEBHOOK"],
                    "triggerRule": {
                        "sourceEvents": ["INVOICE_GENERATED"],
                        "match": {"field": "amountDue", "op": "gte", "value": 10000},
                    },
                },
            )
            assert defined.status == 201, defined.body
            await asyncio.sleep(CONFIG_BOUND_SECONDS)

            # A producer record, 2 s later: the SYSTEM event and the derived CUSTOM one arrive signed.
            invoice = {"tenantId": "t1", "customerId": "c1", "eventId": "inv-e2e-1", "amountDue": 12000}
            await produce(local_stack.kafka_bootstrap, source_topic, [dumps_json(invoice)])
            received = await receiver.wait_for("e2e", 2, timeout=30)
            by_type = {json.loads(r["body"])["eventType"]: r for r in received}
            assert set(by_type) == {"INVOICE_GENERATED", "WHALE_CUSTOMER"}
            assert json.loads(by_type["WHALE_CUSTOMER"]["body"])["eventId"] == "inv-e2e-1:WHALE_CUSTOMER"
            for request in received:
                assert json.loads(request["body"])["payload"] == invoice
                assert verify_signature(
                    request["body"].encode(),
                    request["headers"]["X-Aforo-Signature"],
                    "whsec_e2e_first_secret",
                )

            # Manual emit and the webhook.test probe take the same signed path.
            emitted = await api.call(
                "POST",
                "/api/v1/notification-event-definitions/WHALE_CUSTOMER/emit",
                json={"customerId": "c1", "payload": {"note": "manual", "amountDue": 1}},
            )
            assert emitted.status == 202
            assert emitted.body == b""
            probe = await api.call("POST", f"/api/v1/webhook-endpoints/{endpoint_id}/test")
            assert probe.status == 202
            received = await receiver.wait_for("e2e", 4, timeout=30)
            types = sorted(json.loads(r["body"])["eventType"] for r in received[2:])
            assert types == ["WHALE_CUSTOMER", "webhook.test"]

            # Rotate the secret: the next delivery carries both signatures.
            rotated = await api.call(
                "PATCH",
                f"/api/v1/webhook-endpoints/{endpoint_id}",
                json={"secret": "whsec_e2e_second_secret"},
            )
            assert rotated.status == 200, rotated.body
            await asyncio.sleep(CONFIG_BOUND_SECONDS)  # the dispatcher reuses configuration for up to 1 s
            await api.call("POST", f"/api/v1/webhook-endpoints/{endpoint_id}/test")
            [last] = (await receiver.wait_for("e2e", 5, timeout=30))[4:]
            header = last["headers"]["X-Aforo-Signature"]
            assert header.count("v1=") == 2
            for secret in ("whsec_e2e_first_secret", "whsec_e2e_second_secret"):
                stripe.WebhookSignature.verify_header(last["body"], header, secret, 300)

            # The audit trail, through the API.
            for _ in range(50):
                logs = await api.call(
                    "GET",
                    "/internal/v1/delivery-logs/by-customer",
                    params={"endCustomerId": "c1", "status": "DELIVERED"},
                )
                if len(logs.json()["items"]) >= 5:
                    break
                await asyncio.sleep(0.2)
            assert len(logs.json()["items"]) == 5
            assert all(item["endpointId"] == endpoint_id for item in logs.json()["items"])
    finally:
        codes = [await asyncio.to_thread(process.terminate, 30) for process in processes]
        receiver.stop()
    assert codes == [0] * len(processes)
