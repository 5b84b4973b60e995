"""Pure tests of the shared library: envelope wire form, settings precedence, serde, lifecycle."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from aforo.shared.envelope import EventEnvelope, format_utc, parse_utc
from aforo.shared.kafka import TopicNames
from aforo.shared.lifecycle import Service, ServiceRunner
from aforo.shared.serde import dumps_json, loads_json
from aforo.shared.settings import ServiceSettings

WIRE = {
    "eventId": "e1",
    "eventType": "INVOICE_GENERATED",
    "category": "Billing",
    "severity": "INFO",
    "tenantId": "t1",
    "customerId": "c1",
    "occurredAt": "2026-11-23T09:00:00.250Z",
    "payload": {
        "amountDue": 123456789012345678901234567890,
        "rate": 0.1,
        "name": "Zoë 🚀",
        "n": {"a": [1, 2.5]},
    },
}


def test_envelope_round_trips_the_wire_form_exactly() -> None:
    raw = dumps_json(WIRE)
    envelope = EventEnvelope.from_json_bytes(raw)
    assert envelope.to_json_bytes() == raw
    assert envelope.model_dump(by_alias=True, mode="json") == WIRE
    assert envelope.occurred_at == datetime(2026, 11, 23, 9, 0, 0, 250000, tzinfo=UTC)


def test_envelope_names_the_missing_field() -> None:
    broken = {key: value for key, value in WIRE.items() if key != "tenantId"}
    with pytest.raises(ValidationError, match="tenantId"):
        EventEnvelope.model_validate(broken)


def test_envelope_refuses_naive_timestamps() -> None:
    with pytest.raises(ValidationError, match="occurredAt"):
        EventEnvelope.model_validate({**WIRE, "occurredAt": "2026-11-23T09:00:00"})


def test_timestamps_normalise_to_utc() -> None:
    assert format_utc(parse_utc("2026-01-01T02:00:00+02:00")) == "2026-01-01T00:00:00.000Z"
    assert (
        format_utc(datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5)))) == "2026-01-01T05:00:00.000Z"
    )
    assert format_utc(parse_utc(0)) == "1970-01-01T00:00:00.000Z"
    with pytest.raises(ValueError, match="occurredAt"):
        parse_utc(True)


def test_serde_keeps_numbers_and_unicode_and_refuses_nan() -> None:
    value = {"big": 2**100, "float": 1e-300, "neg": -0.5, "text": "日本"}
    raw = dumps_json(value)
    assert "日本".encode() in raw
    assert loads_json(raw) == value
    with pytest.raises(ValueError, match="Out of range float"):
        dumps_json({"x": float("nan")})
    with pytest.raises(ValueError, match="NaN is not valid JSON"):
        loads_json(b'{"x": NaN}')


def test_topic_names_share_one_prefix() -> None:
    topics = TopicNames("acme.")
    assert topics.system_events == "acme.events.system"
    assert topics.widget_events == "acme.events.widget"
    assert topics.bridge_dead_letter == "acme.dlq.bridge"
    assert topics.dispatch_requests == "acme.dispatch.requests"


class ExampleSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AFORO_EXAMPLE_", extra="ignore", frozen=True)
    http_port: int = 9999


def test_service_prefix_wins_over_common_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFORO_KAFKA_BOOTSTRAP_SERVERS", "common:9092")
    monkeypatch.setenv("AFORO_MONGO_URI", "mongodb://common")
    monkeypatch.setenv("AFORO_EXAMPLE_MONGO_URI", "mongodb://mine")
    settings = ExampleSettings()
    assert settings.kafka_bootstrap_servers == "common:9092"
    assert settings.mongo_uri == "mongodb://mine"
    assert settings.http_port == 9999
    monkeypatch.setenv("AFORO_EXAMPLE_HTTP_PORT", "not-a-port")
    with pytest.raises(ValidationError, match="http_port"):
        ExampleSettings()


class RecordingService(Service):
    """A service whose drain takes `drain_seconds`, recording the lifecycle calls it gets."""

    name = "recording"

    def __init__(self, drain_seconds: float) -> None:
        self.calls: list[str] = []
        self.drain_seconds = drain_seconds

    async def start(self) -> None:
        self.calls.append("start")

    async def readiness_checks(self) -> dict[str, bool]:
        return {"dependency": True}

    async def drain(self) -> None:
        self.calls.append("drain")
        await asyncio.sleep(self.drain_seconds)
        self.calls.append("drained")

    async def stop(self) -> None:
        self.calls.append("stop")


@pytest.mark.parametrize(("drain_seconds", "finished"), [(0.0, True), (5.0, False)])
async def test_runner_drains_within_grace_then_stops_and_exits_zero_only_if_drained(
    drain_seconds: float, finished: bool
) -> None:
    service = RecordingService(drain_seconds)
    settings = ExampleSettings(http_port=0, shutdown_grace_seconds=0.3)
    runner = ServiceRunner(service, settings)
    run = asyncio.create_task(runner.run())
    while not runner.started:
        await asyncio.sleep(0.01)
    assert await runner._readiness() == {"dependency": True}
    runner.request_stop()
    assert await asyncio.wait_for(run, 5) == (0 if finished else 1)
    expected = ["start", "drain", "drained", "stop"] if finished else ["start", "drain", "stop"]
    assert service.calls == expected


def test_log_lines_are_json_with_service_and_bound_ids(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    import structlog

    from aforo.shared.logging import bind_event_context, configure_logging, get_logger

    root_handlers = logging.getLogger().handlers[:]
    configure_logging("bridge", "INFO", json=True)
    try:
        with bind_event_context(tenant_id="t1", event_id="e1"):
            get_logger("x").info("hello", secret="s3cr3t")
        output = capsys.readouterr().out
    finally:
        # The configuration captured pytest's stdout: undo it so later tests do not log into a closed file.
        structlog.reset_defaults()
        logging.getLogger().handlers[:] = root_handlers
    line = json.loads(output.strip().splitlines()[-1])
    assert line["service"] == "bridge"
    assert line["tenant_id"] == "t1"
    assert line["event_id"] == "e1"
    assert line["secret"] == "[redacted]"


def test_bound_ids_nest_and_end_with_their_block_and_a_call_s_own_key_wins() -> None:
    from aforo.shared.logging import bind_event_context, merge_event_ids

    with bind_event_context(tenant_id="t1", event_id="e1", endpoint_id=None):
        with bind_event_context(event_id="e2", attempt=3):
            assert merge_event_ids(None, "info", {"attempt": 9}) == {
                "tenant_id": "t1",
                "event_id": "e2",
                "attempt": 9,
            }
        assert merge_event_ids(None, "info", {}) == {"tenant_id": "t1", "event_id": "e1"}
    assert merge_event_ids(None, "info", {}) == {}


def test_the_envelope_encoder_writes_what_dumps_json_would() -> None:
    # Quoting of every kind of character, even those the model refuses in identifiers (set past it).
    envelope = EventEnvelope.model_validate(WIRE).model_copy(
        update={"event_id": 'quo"te\\\n é 🚀 \u2028', "tenant_id": "t\x00"}
    )
    assert envelope.to_json_bytes() == dumps_json(envelope.to_wire())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tenantId", "t\x00"),
        ("customerId", "c\ud800"),
        ("eventId", "e\u202e1"),
        ("eventType", "INVOICE\u200bGENERATED"),
        ("customerId", "line\nbreak"),
    ],
)
def test_envelope_identifiers_refuse_control_format_and_surrogate_characters(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        EventEnvelope.model_validate({**WIRE, field: value})
    assert refused.value.errors()[0]["loc"] == (field,)


def test_a_payload_with_a_lone_surrogate_encodes_to_valid_utf8_with_the_escape() -> None:
    envelope = EventEnvelope.model_validate({**WIRE, "payload": {"k\ud800": "v\udfff", "n": 2**70}})
    body = envelope.to_json_bytes()
    body.decode("utf-8")  # strict: valid UTF-8
    assert EventEnvelope.from_json_bytes(body).payload == {"k\ud800": "v\udfff", "n": 2**70}


def test_loads_json_refuses_nesting_past_its_limit_with_a_value_error() -> None:
    assert loads_json("[" * 512 + "]" * 512) is not None
    with pytest.raises(ValueError, match="nested deeper than 512"):
        loads_json("[" * 513 + "]" * 513)
    with pytest.raises(ValueError, match="nested deeper"):
        loads_json(b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    assert loads_json('["' + "[" * 5000 + '"]') == ["[" * 5000]  # brackets in strings do not nest


def test_loads_json_accepts_what_json_accepts_in_bytes() -> None:
    value = {"a": "é"}
    for raw in (dumps_json(value), b"\xef\xbb\xbf" + dumps_json(value), json.dumps(value).encode("utf-16")):
        assert loads_json(raw) == value


def _collector_after_tuning(gen0_threshold: int) -> list[int]:
    """Tune a fresh interpreter's collector (process-wide state: never this test process's)."""
    script = (
        "import gc, json; from aforo.shared.lifecycle import tune_garbage_collector; "
        f"tune_garbage_collector({gen0_threshold}); "
        "print(json.dumps([*gc.get_threshold(), gc.get_freeze_count()]))"
    )
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    values: list[int] = json.loads(output.stdout)
    return values


def test_a_started_service_freezes_its_start_up_objects_and_collects_less_often() -> None:
    gen0, gen1, gen2, frozen = _collector_after_tuning(10_000)
    defaults = gc.get_threshold()
    assert (gen0, gen1, gen2) == (10_000, defaults[1], defaults[2])
    assert frozen > 0  # the modules and objects built to start are out of every later collection


def test_a_zero_threshold_leaves_the_collector_alone() -> None:
    gen0, gen1, gen2, frozen = _collector_after_tuning(0)
    assert (gen0, gen1, gen2) == gc.get_threshold()
    assert frozen == 0
