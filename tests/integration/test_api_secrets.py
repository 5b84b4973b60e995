"""Webhook secrets never leave the API: not in a response (success or error), not on a topic, not in
a log line (at DEBUG), not in MongoDB in clear. And the API refuses to start without the settings
that keep them safe."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from tests.support.api_harness import ApiUnderTest, api_env, start_api
from tests.support.kafka import TopicReader
from tests.support.processes import ServiceProcess
from tests.support.stack import LocalStack

ENDPOINTS = "/api/v1/webhook-endpoints"


def secret() -> str:
    return f"whsec_NEVER_SHOWN_{uuid.uuid4().hex}"


async def exercise_every_route_with_secrets(api: ApiUnderTest, secrets: list[str]) -> list[str]:
    """Register, rotate, fail, list, probe and delete endpoints; returns their ids."""

    def body(customer: str, url: str, the_secret: str, **extra: Any) -> dict[str, Any]:
        return {"endCustomerId": customer, "url": url, "events": ["*"], "secret": the_secret, **extra}

    ids: list[str] = []
    for index in range(3):
        secrets.append(secret())
        reply = await api.call(
            "POST", ENDPOINTS, json=body("c-secret", f"https://h.example/{index}", secrets[-1])
        )
        assert reply.status == 201
        ids.append(reply.json()["endpointId"])
    failures = [
        # a duplicate URL (409), a bad URL (422), a bad retry value (422), malformed JSON with a secret in it (400)
        await api.call("POST", ENDPOINTS, json=body("c-secret", "https://h.example/0", secrets[0])),
        await api.call("POST", ENDPOINTS, json=body("c-secret", "ftp://h.example/x", secrets[1])),
        await api.call(
            "POST", ENDPOINTS, json=body("c-secret", "https://h.example/y", secrets[2], maxRetryAttempts=99)
        ),
        await api.call("POST", ENDPOINTS, data=f'{{"secret": "{secrets[0]}", '.encode()),
        await api.call("POST", ENDPOINTS, json={"secret": secrets[1], "unexpected": secrets[2]}),
    ]
    assert [reply.status for reply in failures] == [409, 422, 422, 400, 422]
    for endpoint_id in ids[:2]:
        secrets.append(secret())
        rotated = await api.call(
            "PATCH", f"{ENDPOINTS}/{endpoint_id}", json={"secret": secrets[-1], "events": ["*"]}
        )
        assert rotated.status == 200
        refused = await api.call(
            "PATCH", f"{ENDPOINTS}/{endpoint_id}", json={"secret": secrets[-1], "url": "x"}
        )
        assert refused.status == 422
    assert (await api.call("GET", ENDPOINTS, params={"endCustomerId": "c-secret"})).status == 200
    assert (await api.call("POST", f"{ENDPOINTS}/{ids[0]}/test")).status == 202
    assert (await api.call("DELETE", f"{ENDPOINTS}/{ids[2]}")).status == 204
    assert (await api.call("GET", "/api/v1/admin/event-definitions")).status == 200
    return ids


async def test_a_webhook_secret_never_appears_in_responses_topics_logs_or_stored_clear_text(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    secrets: list[str] = []
    async with start_api(local_stack, service_log_dir, {"AFORO_LOG_LEVEL": "DEBUG"}) as api:
        ids = await exercise_every_route_with_secrets(api, secrets)
        stored = await api.mongo.collection("webhook_endpoints").find({}, {"_id": 0}).to_list()
        published: list[bytes] = []
        for topic in (api.topics.config_changes, api.topics.dispatch_requests):
            async with TopicReader(local_stack.kafka_bootstrap, topic) as reader:
                await reader.until(lambda records: len(records) >= 1, timeout=10)
                await reader.settle(0.5)
                published += [
                    bytes(record.key or b"") + bytes(record.value or b"") for record in reader.records
                ]
        replies, process = api.replies, api.process

    log_text = process.log_text()
    assert "webhook_endpoint_registered" in log_text  # the log was written, at DEBUG
    assert '"level": "debug"' in log_text
    assert len(replies) >= 15
    assert len(secrets) == 5
    for the_secret in secrets:
        for reply in replies:
            assert the_secret.encode() not in reply.body
            assert all(the_secret not in value for value in reply.headers.values())
        assert not any(the_secret.encode() in record for record in published)
        assert the_secret not in log_text
        assert the_secret not in repr(stored)
    # The stored ciphertexts are not in any response either (they are not the API's to show).
    ciphertexts = [entry["ciphertext"] for document in stored for entry in document["secrets"]]
    assert len(ciphertexts) == 4  # 2 rotated endpoints x 2 secrets; the third was deleted
    for ciphertext in ciphertexts:
        assert not any(ciphertext.encode() in reply.body for reply in replies)
        assert not any(ciphertext.encode() in record for record in published)
    assert {document["endpointId"] for document in stored} == set(ids[:2])


async def start_misconfigured(local_stack: LocalStack, log_dir: Path, **overrides: str) -> tuple[int, str]:
    """Start the API with broken settings; (its exit code, its log)."""
    env = {**api_env(local_stack, "unused.", "unused", "unused"), **overrides}
    process = ServiceProcess("aforo.api", "AFORO_API_", env, log_dir).start()
    assert process.process is not None
    code = await asyncio.to_thread(process.process.wait, 30)
    process.close()
    return code, process.log_text()


async def test_the_api_refuses_to_start_without_usable_encryption_keys(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    missing = await start_misconfigured(local_stack, service_log_dir, AFORO_SECRETS_ENCRYPTION_KEYS="")
    malformed = await start_misconfigured(
        local_stack, service_log_dir, AFORO_SECRETS_ENCRYPTION_KEYS="not-a-fernet-key-SHOULD-NOT-BE-LOGGED"
    )

    for code, log_text in (missing, malformed):
        assert code == 2
        assert "settings_invalid" in log_text
        assert "AFORO_SECRETS_ENCRYPTION_KEYS" in log_text
    assert "is required" in missing[1]
    assert "SHOULD-NOT-BE-LOGGED" not in malformed[1]


async def test_the_api_refuses_to_start_without_a_usable_auth_setting(
    local_stack: LocalStack, service_log_dir: Path
) -> None:
    jwks_code, jwks_log = await start_misconfigured(local_stack, service_log_dir, AFORO_API_AUTH_MODE="jwks")
    short_code, short_log = await start_misconfigured(
        local_stack, service_log_dir, AFORO_API_JWT_HS256_SECRET="short-dev-secret"
    )

    assert (jwks_code, short_code) == (2, 2)
    assert "AFORO_API_JWKS_URL" in jwks_log
    assert "AFORO_API_JWT_HS256_SECRET" in short_log
    assert "short-dev-secret" not in short_log
