"""The bridge's sustained throughput next to a bare aiokafka consume-and-produce loop on the same data.

Both sides read the same pre-produced producer topic (each with its own consumer group, from the
earliest offset) and write the same number of records to the same number of output topics, with the
producer and consumer settings of `aforo.shared.kafka`; both run as their own process. The baseline
forwards each value untouched with `send`, one call per record (the plain loop); the bridge parses
it, builds envelopes and serialises them, and hands each output partition's records to the producer
as one batch (`send_batch`), so it can outrun the loop. The ratio bridge / baseline is what the
bridge's own work costs against that loop; each side also prints its CPU µs per input event, the
cost without the broker's pace. Target: at least 0.85.

    python -m bench.bench_bridge [--events N] [--rounds R] [--profile] [--strict]

Uses the broker named by AFORO_TEST_KAFKA_BOOTSTRAP (`python -m bench.run` sets it), else starts a private
stack. `--profile` (or AFORO_BENCH_PROFILE=1) adds one unmeasured run of each side under cProfile.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from tests.support.stack import ROOT, LocalStack

from aforo.bridge.routes import load_routes
from aforo.bridge.settings import BridgeSettings
from aforo.shared.kafka import TopicNames, TopicSpec, create_consumer, create_producer, ensure_topics
from aforo.shared.serde import dumps_json
from aforo.shared.settings import ServiceSettings
from bench.common import (
    MeasuredProcess,
    ProfiledServiceProcess,
    WorkerProcess,
    add_profile_option,
    bench_stack,
    cpu_seconds,
    delete_topics,
    invoice_fields,
    print_profile,
    run_profiled,
    stop_on_signals,
    summary,
)

NAME = "bridge"
TARGET_RATIO = 0.85  # issue #14: the bridge closer to its bare consume→produce loop
SOURCE_TOPIC = "billing.invoice.finalized"  # routed to events.system and events.widget: two outputs each
SOURCE_PARTITIONS = 3
DEFAULT_EVENTS = 50_000
DEFAULT_ROUNDS = 3
LOG_DIR = ROOT / ".local" / "bench-logs"
# The bridge's loop settings, which the baseline copies.
BATCH_MAX_RECORDS: int = BridgeSettings.model_fields["batch_max_records"].default
POLL_TIMEOUT_MS: int = BridgeSettings.model_fields["poll_timeout_ms"].default


@dataclass(frozen=True)
class Workload:
    """The pre-produced producer topic: where it is and how far each partition goes."""

    bootstrap: str
    source_prefix: str
    end_offsets: dict[TopicPartition, int]
    output_names: tuple[str, ...]  # output topics per input record, as the bridge's route says (suffixes)

    @property
    def source_topic(self) -> str:
        return f"{self.source_prefix}{SOURCE_TOPIC}"

    @property
    def events(self) -> int:
        return sum(self.end_offsets.values())


@dataclass(frozen=True)
class RunResult:
    side: str
    events: int
    outputs: int
    seconds: float
    cpu_share: float | None  # the process's CPU time / wall time while it worked; None off Linux

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def describe(self, round_number: int) -> str:
        cpu = (
            f", {self.cpu_share:.0%} of a core = {self.cpu_share * self.seconds / self.events * 1e6:.0f} "
            "CPU µs/event"
            if self.cpu_share is not None and self.events
            else ""
        )
        return (
            f"bridge: round {round_number} {self.side:<8} {self.events_per_second:,.0f} events/s "
            f"({self.events} events, {self.outputs} outputs in {self.seconds:.2f} s{cpu})"
        )


# ---------------------------------------------------------------------------------------------
# The data: invoice-finalized records as the billing platform sends them.


def invoice_record(rng: random.Random, sequence: int, issued: datetime) -> tuple[bytes, bytes]:
    """One invoice, about 400-600 bytes of JSON, keyed like the producer keys it (tenant:customer)."""
    tenant_id = f"tenant-{rng.randrange(40):03d}"
    customer_id = f"cus_{rng.randrange(20_000):06d}"
    payload: dict[str, Any] = {
        "tenantId": tenant_id,
        "customerId": customer_id,
        "invoiceId": f"inv_{uuid.UUID(int=rng.getrandbits(128)).hex[:20]}",
        "status": "finalized",
        "occurredAt": issued.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        **invoice_fields(rng, sequence, issued),
    }
    # Half the producers send their own eventId; the bridge derives one for the others.
    if sequence % 2 == 0:
        payload["eventId"] = str(uuid.UUID(int=rng.getrandbits(128)))
    return f"{tenant_id}:{customer_id}".encode(), dumps_json(payload)


async def produce_workload(bootstrap: str, source_prefix: str, events: int) -> Workload:
    """Create the producer topic and fill it; the end offsets tell every run when it is done."""
    source_topic = f"{source_prefix}{SOURCE_TOPIC}"
    await ensure_topics(bootstrap, [TopicSpec(source_topic, SOURCE_PARTITIONS)], client_id="aforo-bench")
    rng = random.Random(20_250_601)  # the same data every run
    started = datetime(2025, 6, 1, tzinfo=UTC)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024
    )
    await producer.start()
    end_offsets: dict[TopicPartition, int] = {}
    sizes = 0
    try:
        futures = []
        for sequence in range(events):
            key, value = invoice_record(rng, sequence, started + timedelta(seconds=sequence))
            sizes += len(value)
            futures.append(await producer.send(source_topic, value=value, key=key))
        for metadata in await asyncio.gather(*futures):
            partition = TopicPartition(metadata.topic, metadata.partition)
            end_offsets[partition] = max(end_offsets.get(partition, 0), metadata.offset + 1)
    finally:
        await producer.stop()
    route = load_routes(None, source_prefix)[source_topic]
    names = TopicNames("")
    output_names = tuple(
        name
        for name, wanted in (
            (names.system_events, route.system_event),
            (names.widget_events, route.widget_event),
        )
        if wanted is not None
    )
    print(
        f"bridge: produced {events} records to {source_topic} ({SOURCE_PARTITIONS} partitions, "
        f"{sizes / max(events, 1):.0f} bytes average), {len(output_names)} outputs each",
        flush=True,
    )
    return Workload(bootstrap, source_prefix, end_offsets, output_names)


# ---------------------------------------------------------------------------------------------
# The baseline: a bare aiokafka loop, run as its own process (`baseline-worker`) like the bridge.


async def baseline_loop(bootstrap: str, source_topic: str, group: str, outputs: list[str]) -> None:
    """Consume a batch, send each value to every output topic, await the acks, commit; until SIGTERM.

    The bridge's loop minus its work: same client factories, same batch size and poll timeout.
    Should the bridge ever override a client setting of its own (batch size, linger), mirror it here.
    """
    settings = ServiceSettings(kafka_bootstrap_servers=bootstrap)
    stop = stop_on_signals()
    producer = create_producer(settings)
    consumer = create_consumer(settings, source_topic, group_id=group)
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=BATCH_MAX_RECORDS)
            if not batch:
                continue
            pending = []
            offsets: dict[TopicPartition, int] = {}
            for partition, records in batch.items():
                for record in records:
                    for topic in outputs:
                        pending.append(await producer.send(topic, value=record.value, key=record.key))
                offsets[partition] = records[-1].offset + 1
            await asyncio.gather(*pending)
            await consumer.commit(offsets)
    finally:
        await consumer.stop()
        await producer.stop()


def baseline_worker(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_bridge baseline-worker")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source-topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--output-topic", action="append", required=True)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args(argv)
    return run_profiled(
        baseline_loop(args.bootstrap, args.source_topic, args.group, args.output_topic), args.profile
    )


class BaselineProcess(WorkerProcess):
    """The baseline worker as a child process, stopped with SIGTERM like the bridge."""

    def __init__(self, workload: Workload, group: str, outputs: list[str], profile: Path | None) -> None:
        arguments = [
            "--bootstrap",
            workload.bootstrap,
            "--source-topic",
            workload.source_topic,
            "--group",
            group,
            *(part for topic in outputs for part in ("--output-topic", topic)),
        ]
        if profile is not None:
            arguments += ["--profile", str(profile)]
        super().__init__(
            "bench.bench_bridge", "baseline-worker", arguments, LOG_DIR / f"baseline-{group}.log"
        )


class BridgeProcess(ProfiledServiceProcess):
    """The real bridge process (`python -m aforo.bridge`), optionally under cProfile."""

    def __init__(self, env: dict[str, str], profile: Path | None) -> None:
        super().__init__("aforo.bridge", "AFORO_BRIDGE_", env, LOG_DIR, profile)


# ---------------------------------------------------------------------------------------------
# Measuring: the same method for both sides.


async def create_output_topics(bootstrap: str, topics: list[str]) -> None:
    """Output topics stamped by the broker (LogAppendTime), so a run is timed on one clock.

    Created before the bridge starts: its own ensure_topics leaves existing topics as they are.
    """
    specs = [
        TopicSpec(name, SOURCE_PARTITIONS, 1, {"message.timestamp.type": "LogAppendTime"}) for name in topics
    ]
    await ensure_topics(bootstrap, specs, client_id="aforo-bench")


async def wait_until_committed(workload: Workload, group: str, process: MeasuredProcess) -> float | None:
    """Until the group's committed offsets reach the end of every source partition.

    A cheap admin request every 100 ms rather than a consumer reading the outputs: on a small
    machine an observer reading 100,000 records would take CPU from the process being measured.
    Returns the process's CPU share between its first and its last commit: near 100% means the
    side is bound by its own Python work, well below means it waits (acks, commits, batching).
    """
    deadline_seconds = max(60.0, workload.events / 500)
    first_progress: tuple[float, float | None] | None = None
    admin = AIOKafkaAdminClient(bootstrap_servers=workload.bootstrap, client_id="aforo-bench")
    await admin.start()
    deadline = time.monotonic() + deadline_seconds
    try:
        while True:
            problem = process.failure()
            if problem:
                raise RuntimeError(problem)
            try:
                committed = await admin.list_consumer_group_offsets(
                    group, partitions=list(workload.end_offsets)
                )
            except KafkaError as error:
                if not error.retriable:  # e.g. the coordinator still loading on a fresh broker
                    raise
                committed = {}
            done = sum(
                max(0, min(committed[tp].offset, end))
                for tp, end in workload.end_offsets.items()
                if tp in committed
            )
            if done and first_progress is None:
                first_progress = (time.monotonic(), cpu_seconds(process.pid))
            if done == workload.events:
                cpu_now = cpu_seconds(process.pid)
                if first_progress is None or first_progress[1] is None or cpu_now is None:
                    return None
                wall = time.monotonic() - first_progress[0]
                return (cpu_now - first_progress[1]) / wall if wall > 0.5 else None
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"group {group} committed {done}/{workload.events} in {deadline_seconds:.0f} s"
                )
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def output_span(bootstrap: str, topics: list[str]) -> tuple[int, int, int]:
    """(records, first append time ms, last append time ms) over every partition of `topics`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        # A consumer knows partitions only of topics it subscribed to; ask the cluster instead.
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(cluster.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        beginnings = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        count, first_ms, last_ms = 0, sys.maxsize, 0
        for partition in partitions:
            if ends[partition] <= beginnings[partition]:
                continue
            count += ends[partition] - beginnings[partition]
            for offset in (beginnings[partition], ends[partition] - 1):
                record = await _record_at(consumer, partition, offset)
                if record.timestamp_type != 1:
                    raise RuntimeError(
                        f"{partition.topic} is not LogAppendTime: timing would use client clocks"
                    )
                first_ms, last_ms = min(first_ms, record.timestamp), max(last_ms, record.timestamp)
        return count, first_ms, last_ms
    finally:
        await consumer.stop()


async def _record_at(consumer: AIOKafkaConsumer, partition: TopicPartition, offset: int) -> Any:
    consumer.seek(partition, offset)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        batch = await consumer.getmany(partition, timeout_ms=500, max_records=1)
        for record in batch.get(partition, []):
            if record.offset >= offset:
                return record
    raise RuntimeError(f"no record at {partition.topic}[{partition.partition}]@{offset}")


async def measure(
    workload: Workload, side: str, run_prefix: str, group: str, process: MeasuredProcess
) -> RunResult:
    """Wait for the run to finish, stop its process, and time it on its output topics.

    The figure is input events / (last output's append time - first output's append time): the
    sustained rate once the process is up, the same for both sides. It leaves out what differs
    between them and is not throughput: interpreter start, imports, the bridge's HTTP server and
    topic checks, pattern-subscription metadata and the group join.
    """
    try:
        cpu_share = await wait_until_committed(workload, group, process)
    finally:
        code = await asyncio.to_thread(process.terminate, 30)
    if code != 0:
        raise RuntimeError(f"{side} exited with {code} on SIGTERM; see {process.log_path}")
    outputs = [f"{run_prefix}{name}" for name in workload.output_names]
    count, first_ms, last_ms = await output_span(workload.bootstrap, outputs)
    expected = workload.events * len(outputs)
    if count < expected:
        raise RuntimeError(f"{side}: {count} output records, expected {expected}")
    if count > expected:
        # A publish retried after a broker refusal duplicates; the figure stays per input event.
        print(f"bridge: note: {side} wrote {count - expected} duplicate outputs", flush=True)
    return RunResult(side, workload.events, count, max(last_ms - first_ms, 1) / 1000, cpu_share)


async def run_baseline(workload: Workload, run_prefix: str, profile: Path | None = None) -> RunResult:
    outputs = [f"{run_prefix}{name}" for name in workload.output_names]
    await create_output_topics(workload.bootstrap, outputs)
    group = f"{run_prefix}baseline"
    process = BaselineProcess(workload, group, outputs, profile)
    return await measure(workload, "baseline", run_prefix, group, process)


async def run_bridge(
    workload: Workload, stack: LocalStack, run_prefix: str, profile: Path | None = None
) -> RunResult:
    await create_output_topics(workload.bootstrap, [f"{run_prefix}{name}" for name in workload.output_names])
    group = f"{run_prefix}bridge"
    env = {
        "AFORO_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "AFORO_MONGO_URI": stack.mongo_uri,
        "AFORO_TOPIC_PREFIX": run_prefix,
        "AFORO_BRIDGE_SOURCE_TOPIC_PREFIX": workload.source_prefix,
        "AFORO_BRIDGE_CONSUMER_GROUP": group,
        "AFORO_SHUTDOWN_GRACE_SECONDS": "10",
    }
    process = BridgeProcess(env, profile).start()
    try:
        await process.wait_ready()
    except BaseException:
        process.kill()
        raise
    result = await measure(workload, "bridge", run_prefix, group, process)
    dead_letters, _, _ = await output_span(workload.bootstrap, [TopicNames(run_prefix).bridge_dead_letter])
    if dead_letters:
        raise RuntimeError(f"bridge dead-lettered {dead_letters} bench records; see {process.log_path}")
    return result


async def bench(stack: LocalStack, events: int, rounds: int, profile: bool) -> tuple[float, float]:
    """(best bridge events/s, best baseline events/s), alternating the sides `rounds` times."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    try:
        workload = await produce_workload(stack.kafka_bootstrap, f"{prefix}src.", events)
        bridge_runs: list[RunResult] = []
        baseline_runs: list[RunResult] = []
        for round_number in range(1, rounds + 1):
            # Alternating spreads drift over both sides; the best run of each counts. On a freshly
            # started broker the first round is often well below the next (its JVM is still compiling
            # the fetch and produce paths), hence three rounds by default rather than a warm-up pass.
            baseline = await run_baseline(workload, f"{prefix}baseline{round_number}.")
            baseline_runs.append(baseline)
            print(baseline.describe(round_number), flush=True)
            bridge = await run_bridge(workload, stack, f"{prefix}bridge{round_number}.")
            bridge_runs.append(bridge)
            print(bridge.describe(round_number), flush=True)
        if profile:
            LOG_DIR.mkdir(parents=True, exist_ok=True)
            paths = {side: LOG_DIR / f"{prefix}{side}.prof" for side in ("baseline", "bridge")}
            profiled_baseline = await run_baseline(workload, f"{prefix}pbaseline.", paths["baseline"])
            profiled_bridge = await run_bridge(workload, stack, f"{prefix}pbridge.", paths["bridge"])
            print(
                f"bridge: under cProfile (not counted): baseline {profiled_baseline.events_per_second:,.0f} "
                f"events/s, bridge {profiled_bridge.events_per_second:,.0f} events/s",
                flush=True,
            )
            for side, path in paths.items():
                print_profile(NAME, f"{side} process", path)
        return (
            max(run.events_per_second for run in bridge_runs),
            max(run.events_per_second for run in baseline_runs),
        )
    finally:
        await delete_topics(NAME, stack.kafka_bootstrap, prefix)


def main(argv: list[str]) -> int:
    if argv[:1] == ["baseline-worker"]:
        return baseline_worker(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="producer records per run")
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help="baseline/bridge pairs; best counts"
    )
    add_profile_option(parser, "add one cProfile'd run of each side and print the top functions")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)

    with bench_stack() as stack:
        bridge_rate, baseline_rate = asyncio.run(bench(stack, args.events, args.rounds, args.profile))
    ratio = bridge_rate / baseline_rate if baseline_rate else 0.0
    met = ratio >= TARGET_RATIO
    return summary(
        f"{NAME}: {bridge_rate:.0f} events/s  baseline: {baseline_rate:.0f} events/s  "
        f"ratio: {ratio:.2f}  target >= {TARGET_RATIO:.2f}  {'PASS' if met else 'FAIL'}",
        met,
        args.strict,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
