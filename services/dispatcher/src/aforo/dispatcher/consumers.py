"""The dispatcher's two Kafka consumers, over one shared loop.

- `EventConsumer` reads SYSTEM and CUSTOM events and the API's dispatch requests (group
  `aforo-dispatcher`) and runs attempt 1 of each delivery.
- `RetryConsumer` reads the delay topics (group `aforo-dispatcher-retry`). A partition whose head
  record is not yet due is paused and resumed when it is: no sleep holds the consumer, and nothing
  waits in process memory, so a crash loses no retry (the record is still on its topic).

Records are worked on concurrently (one slow receiver must not hold up the others), so each loop
commits only the contiguous prefix of finished records, after flushing their delivery-log rows. The
commit runs beside the fetch loop, not inside it: a slow flush must not stop records coming in.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError
from pymongo.errors import PyMongoError

from aforo.dispatcher.consequences import REPLAY_HEADER, Consequences
from aforo.dispatcher.dispatch import AttemptJob, Dispatcher
from aforo.dispatcher.log_writer import DeliveryLogWriter
from aforo.dispatcher.metrics import (
    COMMIT_FAILURES,
    COMMIT_STALLED_SECONDS,
    LOG_FLUSH_FAILURES,
    RECORD_FAILURES,
    RETRIES_DUE,
    REWINDS,
)
from aforo.dispatcher.offsets import OffsetTracker
from aforo.dispatcher.partition_marks import PartitionMarkKeeper
from aforo.dispatcher.retry_schedule import RetryRecordHeaders
from aforo.shared.background import BackgroundTasks
from aforo.shared.delivery import Channel
from aforo.shared.dispatch_requests import DispatchRequest, DispatchRequestKind
from aforo.shared.envelope import EventEnvelope
from aforo.shared.logging import get_logger

log = get_logger(__name__)

OUTAGES = (PyMongoError, KafkaError, OSError, TimeoutError)
"""What a dependency being away raises: retried for as long as it lasts, never dead-lettered."""

MAX_HANDLING_FAILURES = 3
"""How often a record may fail for any other reason (a bug it triggers) before it is dead-lettered."""


class _DrainOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions move to another replica, finish their work and commit it."""

    def __init__(self, loop: ConsumerLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._loop.rebalances += 1  # first: the fetch loop stops starting what it fetched before
        await self._loop.finish_in_flight()
        for partition in revoked:
            self._loop.tracker.forget(partition)
            if self._loop.marks is not None:
                self._loop.marks.forget(partition)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self._loop.marks is not None:
            await self._loop.marks.assigned(assigned, time.monotonic())


FETCH_RECORDS = 500
"""How many records one turn of a consumer loop fetches, from all its partitions together (at most
about: each partition asked gives up to its share, `FETCH_SHARE_MIN` at least)."""

FETCH_SHARE_MIN = 50
"""The fewest records a turn asks of one partition: the retry consumer owns a hundred partitions and
more, and a share of 500 split among all of them would fetch a busy one a few records at a time."""


def interleaved(
    batch: Mapping[TopicPartition, Sequence[ConsumerRecord[Any, Any]]],
) -> Iterator[tuple[TopicPartition, ConsumerRecord[Any, Any]]]:
    """The records of several partitions in turn (one of each, then the next of each), each
    partition's in its own order: what is started first is spread over all their customers."""
    queues = [(partition, iter(records)) for partition, records in batch.items() if records]
    while queues:
        remaining = []
        for partition, records in queues:
            record = next(records, None)
            if record is not None:
                yield partition, record
                remaining.append((partition, records))
        queues = remaining


class ConsumerLoop(ABC):
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topics: list[str],
        log_writer: DeliveryLogWriter,
        consequences: Consequences,
        *,
        max_in_flight: int,
        commit_interval_seconds: float,
        name: str,
        first_backoff_seconds: float = 1.0,
        marks: PartitionMarkKeeper | None = None,
    ) -> None:
        self.consumer = consumer
        self.topics = topics
        self.log_writer = log_writer
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self.consequences = consequences
        self.name = name
        self._capacity = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._commit_interval = commit_interval_seconds
        self._stopping = False
        self._loops = BackgroundTasks(name)
        self._commit_lock = asyncio.Lock()
        self._stalled_since: float | None = None
        self._bug_failures: dict[tuple[TopicPartition, int], int] = {}
        self._first_backoff = first_backoff_seconds
        self.marks = marks
        """Where records past every stored mark are known unseen (no idempotency lookup); None: always look."""
        self.rebalances = 0
        """How many times partitions were revoked (every rebalance revokes them all, then assigns)."""

    async def start(self) -> None:
        self.consumer.subscribe(self.topics, listener=_DrainOnRevoke(self))
        await self.consumer.start()
        self._loops.spawn("fetch", self._run())
        self._loops.spawn("commit", self._commit_periodically())

    def is_alive(self) -> bool:
        return self._stopping or self._loops.alive()

    async def drain(self) -> None:
        """Fetch nothing more; finish what is in flight; flush the log; commit."""
        self._stopping = True
        await self._loops.wait("fetch")
        await self._loops.cancel("commit")
        await self.finish_in_flight()

    async def stop(self) -> None:
        await self._loops.cancel_all()
        for task in list(self._tasks):
            task.cancel()
        await self.consumer.stop()

    async def finish_in_flight(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.commit()

    async def commit(self) -> None:
        """Flush the delivery log, then commit what has finished (one commit at a time)."""
        async with self._commit_lock:
            # Taken before the flush: every record finished by now has its rows in this flush.
            offsets = self.tracker.committable()
            try:
                await self.log_writer.flush()
            except Exception as error:
                # Rows are kept for the next flush (rows that can never be stored are dead-lettered
                # by the writer, so only an outage or a bug lands here): commit nothing until they are.
                LOG_FLUSH_FAILURES.inc()
                self._commit_failed("commit_deferred_log_not_flushed", error)
                return
            if not offsets:
                self._commit_succeeded()
                return
            try:
                await self.consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as error:
                # Offered again next time; if the partitions moved, their records are redelivered and
                # their attempts found already claimed.
                self._commit_failed("commit_failed", error)
                return
            self.tracker.committed(offsets)
            self._commit_succeeded()

    def _commit_failed(self, event: str, error: BaseException) -> None:
        COMMIT_FAILURES.labels(self.name).inc()
        if self._stalled_since is None:
            self._stalled_since = time.monotonic()
        COMMIT_STALLED_SECONDS.labels(self.name).set(self.stalled_seconds())
        log.warning(event, consumer=self.name, error=repr(error)[:500])

    def _commit_succeeded(self) -> None:
        self._stalled_since = None
        COMMIT_STALLED_SECONDS.labels(self.name).set(0)

    def stalled_seconds(self) -> float:
        """How long flushes or commits have been failing in a row (0 while they succeed): the
        readiness check fails past a bound, so an orchestrator restarts or alerts on a stuck loop."""
        return 0.0 if self._stalled_since is None else time.monotonic() - self._stalled_since

    async def _commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._commit_interval)
            try:
                await self.commit()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # A bug here must not end committing for good: the next interval tries again.
                log.exception("commit_crashed", consumer=self.name)
                self._commit_failed("commit_crashed", error)

    async def _run(self) -> None:
        while not self._stopping:
            self._apply_rewinds()
            await self._reload_unreadable_marks()
            batch = await self._fetch()
            rebalances = self.rebalances
            admitted = {
                partition: self.admit(partition, records)
                for partition, records in batch.items()
                # Fetched before a failure's rewind: read again once it is applied.
                if not self.tracker.rewind_pending(partition)
            }
            for partition, record in interleaved(admitted):
                if self.tracker.rewind_pending(partition):
                    continue  # (it stays pending until the next turn applies it)
                await self._capacity.acquire()
                if self.rebalances != rebalances:
                    # Partitions moved while this waited: the rest of the batch was fetched for the
                    # old assignment. A revoked partition's records are another replica's now, and
                    # the partitions still ours restart from their committed offsets (aiokafka
                    # resets every position on a new assignment), so they come again.
                    self._capacity.release()
                    break
                if self.tracker.rewind_pending(partition):
                    self._capacity.release()
                    continue
                self.tracker.start(partition, record.offset)
                unseen = self.marks is not None and self.marks.started(partition, record.offset)
                task = asyncio.create_task(self._handle_and_finish(partition, record, unseen))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _fetch(self) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        """The next records, up to `FETCH_RECORDS` shared among the assigned partitions that have some.

        aiokafka's `getmany` returns one partition's records until that partition's fetch is used up,
        and only then another's. Worked in that order, one partition's backlog would take the whole
        in-flight capacity for its own customers' endpoints (each takes only `per_endpoint_concurrency`
        at a time, the rest wait in memory) while the other partitions' customers got nothing."""
        assignment = self.consumer.assignment()
        share = max(FETCH_SHARE_MIN, FETCH_RECORDS // max(1, len(assignment)))
        batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = await self.consumer.getmany(
            timeout_ms=200, max_records=share
        )
        fetched = sum(len(records) for records in batch.values())
        others = self.consumer.assignment() - batch.keys()
        while batch and others and fetched < FETCH_RECORDS:
            more = await self.consumer.getmany(*others, timeout_ms=0, max_records=share)
            if not more:
                break
            batch.update(more)
            fetched += sum(len(records) for records in more.values())
            others -= more.keys()
        return batch

    def _apply_rewinds(self) -> None:
        """Seek each partition with a failed record back to its lowest failed offset (in this loop
        only: one owner of the fetch position, so two failures can never seek past each other)."""
        for partition, offset in self.tracker.take_rewinds(time.monotonic()).items():
            if partition not in self.consumer.assignment():
                continue
            self.consumer.seek(partition, offset)
            self.consumer.resume(partition)
            if self.marks is not None:
                self.marks.rewound(partition)
            self.rewound(partition)
            REWINDS.labels(self.name).inc()

    async def _reload_unreadable_marks(self) -> None:
        """Marks MongoDB could not give at assignment are asked for again (until then: lookups)."""
        if self.marks is None:
            return
        due = self.marks.due_for_reload(self.consumer.assignment(), time.monotonic())
        if due:
            await self.marks.assigned(due, time.monotonic())

    def rewound(self, partition: TopicPartition) -> None:  # noqa: B027 - optional hook
        """The partition was sought back and resumed; the retry consumer forgets its resume timer."""

    async def _handle_and_finish(
        self, partition: TopicPartition, record: ConsumerRecord[Any, Any], unseen: bool
    ) -> None:
        try:
            try:
                await self.handle(record, unseen)
            except asyncio.CancelledError:
                raise
            except OUTAGES as error:
                # An outage (MongoDB or the broker away): never commit the record as done. The
                # partition is read again from the lowest failed record (OffsetTracker.fail), after a
                # backoff; the idempotency record keeps the rework from sending twice.
                self._failed(partition, record, error)
                return
            except Exception as error:
                # A bug, or a record that makes one: retried like an outage a few times, then
                # dead-lettered so that one record cannot hold its partition up for good.
                key = (partition, record.offset)
                self._bug_failures[key] = self._bug_failures.get(key, 0) + 1
                if self._bug_failures[key] < MAX_HANDLING_FAILURES:
                    self._failed(partition, record, error)
                    return
                try:
                    await self.dead_letter_unhandled(record, error)
                except OUTAGES as dead_letter_error:
                    self._failed(partition, record, dead_letter_error)
                    return
                log.error("dispatch_record_dead_lettered", **self._record_fields(record, error))
        finally:
            self._capacity.release()
        self._bug_failures.pop((partition, record.offset), None)
        self.tracker.finish(partition, record.offset)

    def _record_fields(self, record: ConsumerRecord[Any, Any], error: BaseException) -> dict[str, Any]:
        """What a log line says about a record whose handling failed."""
        return {
            "consumer": self.name,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "error": repr(error)[:500],
        }

    def _failed(
        self, partition: TopicPartition, record: ConsumerRecord[Any, Any], error: BaseException
    ) -> None:
        log.warning(
            "dispatch_record_failed",
            **self._record_fields(record, error),
            exc_info=not isinstance(error, OUTAGES),
        )
        RECORD_FAILURES.labels(self.name).inc()
        self.tracker.fail(
            partition, record.offset, now=time.monotonic(), first_backoff_seconds=self._first_backoff
        )
        # Nothing more of this partition is fetched until the rewind is applied.
        if partition in self.consumer.assignment():
            self.consumer.pause(partition)

    async def dead_letter_unhandled(self, record: ConsumerRecord[Any, Any], error: Exception) -> None:
        """Put a record that failed `MAX_HANDLING_FAILURES` times (not for an outage) on the DLQ."""
        await self.consequences.dead_letter(
            record.value or b"", None, "handling_failed", f"{type(error).__name__}: {error}"[:1000], 0
        )

    def admit(
        self, partition: TopicPartition, records: list[ConsumerRecord[Any, Any]]
    ) -> list[ConsumerRecord[Any, Any]]:
        """The records to work on now; the retry consumer holds back those not yet due."""
        return records

    @abstractmethod
    async def handle(self, record: ConsumerRecord[Any, Any], unseen: bool) -> None:
        """Work on one record; `unseen`: no process has started it before (past its partition's mark)."""


class EventConsumer(ConsumerLoop):
    def __init__(
        self,
        dispatcher: Dispatcher,
        log_writer: DeliveryLogWriter,
        consumer: AIOKafkaConsumer,
        topics: list[str],
        *,
        dispatch_requests_topic: str,
        **options: Any,
    ) -> None:
        super().__init__(
            consumer, topics, log_writer, dispatcher.consequences, name="dispatch-events", **options
        )
        self.dispatcher = dispatcher
        self.dispatch_requests_topic = dispatch_requests_topic

    async def handle(self, record: ConsumerRecord[Any, Any], unseen: bool) -> None:
        raw: bytes = record.value or b""
        if record.topic == self.dispatch_requests_topic:
            await self._handle_request(raw)
            return
        try:
            envelope = EventEnvelope.from_json_bytes(raw)
        except (ValueError, ValidationError) as error:
            await self.dispatcher.consequences.dead_letter(raw, None, "invalid_envelope", str(error)[:500], 0)
            return
        await self.dispatcher.dispatch_event(envelope, raw, unseen=unseen)

    async def _handle_request(self, raw: bytes) -> None:
        """A replay/recovery or a webhook.test from the API (`aforo.shared.dispatch_requests`)."""
        try:
            request = DispatchRequest.from_json_bytes(raw)
        except (ValueError, ValidationError) as error:
            await self.dispatcher.consequences.dead_letter(raw, None, "invalid_request", str(error)[:500], 0)
            return
        body = request.envelope.to_json_bytes()
        if request.channel is not Channel.WEBHOOK:
            # A contact destination's notification.test (attempt 1 of a fresh event) or a replay.
            if request.kind is DispatchRequestKind.TEST:
                await self.dispatcher.run_attempt(
                    AttemptJob(request.envelope, body, request.endpoint_id, 1, channel=request.channel)
                )
            else:
                await self.dispatcher.replay(request.envelope, body, request.endpoint_id, request.channel)
        elif request.kind is DispatchRequestKind.TEST:
            await self.dispatcher.dispatch_event(
                request.envelope, body, target_endpoint_id=request.endpoint_id
            )
        else:
            await self.dispatcher.replay(request.envelope, body, request.endpoint_id)


class RetryConsumer(ConsumerLoop):
    def __init__(
        self,
        dispatcher: Dispatcher,
        log_writer: DeliveryLogWriter,
        consumer: AIOKafkaConsumer,
        topics: list[str],
        **options: Any,
    ) -> None:
        super().__init__(
            consumer, topics, log_writer, dispatcher.consequences, name="dispatch-retries", **options
        )
        self.dispatcher = dispatcher
        self._resume_handles: dict[TopicPartition, asyncio.TimerHandle] = {}

    def admit(
        self, partition: TopicPartition, records: list[ConsumerRecord[Any, Any]]
    ) -> list[ConsumerRecord[Any, Any]]:
        now = datetime.now(UTC)
        due: list[ConsumerRecord[Any, Any]] = []
        for record in records:
            try:
                headers = RetryRecordHeaders.from_kafka(record.headers or ())
            except ValueError:
                due.append(record)  # handle() dead-letters it
                continue
            wait = (headers.due_at - now).total_seconds()
            if wait > 0:
                # The head is not due: rewind to it and pause the partition until it is.
                self.consumer.seek(partition, record.offset)
                self.consumer.pause(partition)
                loop = asyncio.get_running_loop()
                previous = self._resume_handles.pop(partition, None)
                if previous is not None:
                    previous.cancel()
                self._resume_handles[partition] = loop.call_later(wait, self._resume, partition)
                break
            due.append(record)
        return due

    def rewound(self, partition: TopicPartition) -> None:
        handle = self._resume_handles.pop(partition, None)
        if handle is not None:
            handle.cancel()

    def _resume(self, partition: TopicPartition) -> None:
        self._resume_handles.pop(partition, None)
        if partition in self.consumer.assignment():
            self.consumer.resume(partition)

    async def handle(self, record: ConsumerRecord[Any, Any], unseen: bool) -> None:
        raw: bytes = record.value or b""
        try:
            headers = RetryRecordHeaders.from_kafka(record.headers or ())
            envelope = EventEnvelope.from_json_bytes(raw)
        except (ValueError, ValidationError) as error:
            await self.dispatcher.consequences.dead_letter(
                raw, None, "invalid_retry_record", str(error)[:500], 0
            )
            return
        RETRIES_DUE.inc()
        replay = any(name == REPLAY_HEADER for name, _ in record.headers or ())
        await self.dispatcher.run_attempt(
            AttemptJob(
                envelope,
                raw,
                headers.endpoint_id,
                0 if replay else headers.attempt,
                replay=replay,
                attempt_base=0 if replay else headers.attempt_base,
                channel=headers.channel,
                waiting_since=headers.waiting_since,
            )
        )

    async def stop(self) -> None:
        for handle in self._resume_handles.values():
            handle.cancel()
        await super().stop()
