"""E-mail deliveries per second through the dispatcher to a local aiosmtpd, next to a bare aiosmtplib
loop sending the same messages with the same concurrency to the same server, in the same run.

One tenant, 20 customers with one EMAIL destination each; the provider is plaintext SMTP to
127.0.0.1 (allowlisted, local development) so the figure is the pipeline's, not TLS's.

- **Server**: aiosmtpd in a process of its own (`python -m bench.bench_email smtp-server`), which appends one line
  per accepted message (`X-Aforo-Event-Id`, receipt time) to a file.
- **Dispatcher**: N INVOICE_GENERATED envelopes are produced to `<prefix>events.system` before the
  dispatcher (`python -m aforo.dispatcher`) starts; the figure is N / (last receipt - first receipt).
- **Baseline** (`python -m bench.bench_email baseline-worker`, its own process): the same messages, built by the
  e-mail sender's own `build_message`, sent with `aiosmtplib.send` (one connection per message, as
  the sender does, with the EHLO name looked up once, as the sender does) at the dispatcher's nominal
  concurrency (per_endpoint_concurrency per destination).
  What is left is the dispatcher's work: Kafka, the gates, MongoDB claims and lookups, rendering, the
  delivery log. Target: at least 0.40 (a message costs more than a webhook POST on the server side,
  which both share, so the ratio runs closer to 1 than the webhook bench's).

    python -m bench.bench_email [--events N] [--rounds R] [--strict]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
from aiokafka import AIOKafkaProducer
from tests.support.dispatch_fixtures import DispatchWorld
from tests.support.envelopes import make_envelope
from tests.support.kafka import create_topics
from tests.support.stack import ROOT, LocalStack, free_port, service_env

from aforo.dispatcher.channels.attempts import render_content
from aforo.dispatcher.channels.configuration import DestinationRecord
from aforo.dispatcher.channels.delivery import ChannelDelivery
from aforo.dispatcher.channels.email import build_message
from aforo.shared.channels import ChannelProviderDocument, ContactDestinationDocument
from aforo.shared.delivery import Channel
from aforo.shared.envelope import EventEnvelope
from aforo.shared.mongo import MongoStore
from aforo.shared.secret_box import SecretBox, generate_key
from bench.common import ProfiledServiceProcess, WorkerProcess, bench_stack, summary

NAME = "email"
CUSTOMERS = 20
CONCURRENCY_PER_DESTINATION = 8
TARGET_RATIO = 0.40
LOG_DIR = ROOT / ".local" / "bench-logs"


# ----------------------------------------------------------------------------- the server process


def serve(port: int, receipts: Path) -> None:
    """aiosmtpd on 127.0.0.1:port; every accepted message appends `eventId time` to `receipts`."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope, Session

    out = receipts.open("a", buffering=1)

    class Handler:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
            content = bytes(envelope.original_content or envelope.content or b"")
            event_id = ""
            for line in content.split(b"\r\n"):
                if line.lower().startswith(b"x-aforo-event-id:"):
                    event_id = line.split(b":", 1)[1].strip().decode()
                    break
                if not line:
                    break
            out.write(f"{event_id} {time.time():.6f}\n")
            return "250 2.0.0 Ok: queued"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port, server_hostname="localhost")
    controller.start()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


def start_server(receipts: Path) -> tuple[WorkerProcess, int]:
    port = free_port()
    server = WorkerProcess(
        "bench.bench_email",
        "smtp-server",
        ["--port", str(port), "--receipts", str(receipts)],
        LOG_DIR / f"email-smtp-{port}.log",
    )
    return server, port


def receipt_lines(receipts: Path) -> list[str]:
    return receipts.read_text().splitlines() if receipts.exists() else []


async def wait_for_receipts(receipts: Path, count: int, timeout: float) -> list[float]:
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = await asyncio.to_thread(receipt_lines, receipts)
        if len(lines) >= count:
            return [float(line.split()[1]) for line in lines]
        await asyncio.sleep(0.2)
    raise RuntimeError(f"only {len(lines)} of {count} messages arrived")


# ----------------------------------------------------------------------------- the messages


def envelopes(count: int) -> list[EventEnvelope]:
    issued = datetime.now(UTC)
    return [
        make_envelope(
            customer=f"c{sequence % CUSTOMERS}",
            occurred_at=issued,
            payload={"invoiceNumber": f"INV-{sequence:07d}", "currency": "USD", "amountDue": 1000 + sequence},
        )
        for sequence in range(count)
    ]


def provider_document(port: int) -> ChannelProviderDocument:
    now = datetime.now(UTC)
    return ChannelProviderDocument.model_validate(
        {
            "tenantId": "t1",
            "channel": "EMAIL",
            "email": {
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "fromAddress": "n@bench.example.com",
            },
            "createdAt": now,
            "updatedAt": now,
        }
    )


# ----------------------------------------------------------------------------- the two sides


async def baseline(port: int, events: list[EventEnvelope], receipts: Path) -> float:
    """The bare loop: build each message with the sender's builder, send it with aiosmtplib."""
    provider = provider_document(port)
    now = datetime.now(UTC)
    limit = asyncio.Semaphore(CONCURRENCY_PER_DESTINATION * CUSTOMERS)
    ehlo = await asyncio.to_thread(socket.getfqdn)  # once, as the dispatcher's sender does

    async def send(envelope: EventEnvelope) -> None:
        destination = ContactDestinationDocument(
            tenant_id="t1",
            destination_id=f"cd_{envelope.customer_id}",
            end_customer_id=envelope.customer_id,
            channel=Channel.EMAIL,
            address=f"{envelope.customer_id}@customer.example.com",
            address_key=envelope.customer_id,
            masked_address="masked",
            created_at=now,
            updated_at=now,
        )
        record = DestinationRecord(destination, str(destination.address))
        content, _ = render_content(envelope, Channel.EMAIL, None, None)
        delivery = ChannelDelivery(
            envelope, content, record.destination_id, record.address, provider, None, 1
        )
        message = build_message(delivery, provider.email, datetime.now(UTC))  # type: ignore[arg-type]
        async with limit:
            await aiosmtplib.send(
                message, hostname="127.0.0.1", port=port, sender="n@bench.example.com", local_hostname=ehlo
            )

    await asyncio.gather(*(send(envelope) for envelope in events))
    times = await wait_for_receipts(receipts, len(events), 60)
    return len(events) / max(max(times) - min(times), 1e-6)


async def through_dispatcher(
    stack: LocalStack, port: int, events: list[EventEnvelope], receipts: Path, profile: Path | None = None
) -> float:
    prefix = f"b{uuid.uuid4().hex[:8]}."
    database = f"bench_{uuid.uuid4().hex[:8]}"
    key = generate_key()
    mongo = MongoStore(stack.mongo_uri, database, app_name="bench")
    await mongo.start()
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    dispatcher: ProfiledServiceProcess | None = None
    try:
        world = DispatchWorld(mongo, producer, SecretBox([key]), prefix)
        await world.email_provider("127.0.0.1", port)
        for customer in range(CUSTOMERS):
            await world.destination(
                Channel.EMAIL, f"c{customer}@customer.example.com", customer=f"c{customer}"
            )
            await world.preference("INVOICE_GENERATED", customer=f"c{customer}", channels=["EMAIL"])
        await create_topics(stack.kafka_bootstrap, [f"{prefix}events.system"])
        await world.publish_all(events)
        env = service_env(
            stack,
            prefix,
            database,
            AFORO_SECRETS_ENCRYPTION_KEYS=key,
            AFORO_DISPATCHER_PER_ENDPOINT_CONCURRENCY=str(CONCURRENCY_PER_DESTINATION),
            AFORO_LOG_LEVEL="WARNING",
        )
        dispatcher = ProfiledServiceProcess(
            "aforo.dispatcher", "AFORO_DISPATCHER_", env, LOG_DIR, None
        ).start()
        times = await wait_for_receipts(receipts, len(events), 300)
        return len(events) / max(max(times) - min(times), 1e-6)
    finally:
        if dispatcher is not None:
            dispatcher.terminate(30)
        await producer.stop()
        await mongo.client.drop_database(database)
        await mongo.close()


@dataclass
class Figures:
    dispatcher: float = 0.0
    baseline: float = 0.0


async def bench(stack: LocalStack, count: int, rounds: int) -> Figures:
    figures = Figures()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for round_number in range(rounds):
        for side in ("baseline", "dispatcher"):
            receipts = LOG_DIR / f"email-receipts-{uuid.uuid4().hex[:8]}.txt"
            server, port = start_server(receipts)
            try:
                await server.wait_listening(port)
                events = envelopes(count)
                if side == "baseline":
                    rate = await baseline(port, events, receipts)
                    figures.baseline = max(figures.baseline, rate)
                else:
                    rate = await through_dispatcher(stack, port, events, receipts)
                    figures.dispatcher = max(figures.dispatcher, rate)
                print(f"round {round_number + 1} {side}: {rate:.0f} e-mails/s", flush=True)
            finally:
                server.terminate(30)
                receipts.unlink(missing_ok=True)
    return figures


def main(argv: list[str]) -> int:
    if argv[:1] == ["smtp-server"]:
        parser = argparse.ArgumentParser(prog="python -m bench.bench_email smtp-server")
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--receipts", type=Path, required=True)
        args = parser.parse_args(argv[1:])
        serve(args.port, args.receipts)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args(argv)
    with bench_stack() as stack:
        figures = asyncio.run(bench(stack, args.events, args.rounds))
    ratio = figures.dispatcher / figures.baseline if figures.baseline else 0.0
    met = ratio >= TARGET_RATIO
    return summary(
        f"{NAME}: {figures.dispatcher:.0f} e-mails/s  baseline (bare aiosmtplib): {figures.baseline:.0f} e-mails/s  "
        f"ratio: {ratio:.2f}  target >= {TARGET_RATIO:.2f}  {'PASS' if met else 'FAIL'}",
        met,
        args.strict,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
