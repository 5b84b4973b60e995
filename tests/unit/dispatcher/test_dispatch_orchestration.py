"""The dispatch orchestration against in-memory fakes (tests/support/fakes.py): what is sent, logged,
parked and dead-lettered for one event, without a broker or a database."""

from __future__ import annotations

import asyncio

import pytest

from aforo.dispatcher import dispatch
from aforo.dispatcher.delivery_log import AttemptKey
from aforo.dispatcher.dispatch import AttemptJob
from aforo.dispatcher.preferences import PreferenceView
from aforo.shared.delivery import Channel, DeliveryStatus, SkipReason
from tests.support.fakes import dispatcher_world, endpoint_view, invoice_envelope


async def test_an_event_is_sent_once_to_each_subscribed_endpoint_and_logged() -> None:
    world = dispatcher_world()
    world.config.endpoint_views += [
        endpoint_view("ep-all"),
        endpoint_view("ep-filtered", events=["PAYMENT_OVERDUE"]),
        endpoint_view("ep-other-customer", customer="c2"),
    ]
    envelope = invoice_envelope()

    await world.dispatcher.dispatch_event(envelope, envelope.to_json_bytes())

    assert world.sender.sends == [("evt-1", "ep-all", 1)]
    statuses = sorted((row.endpoint_id, row.status, row.skip_reason) for row in world.sink.rows)
    assert statuses == [
        ("ep-all", DeliveryStatus.DELIVERED, None),
        ("ep-filtered", DeliveryStatus.SKIPPED, SkipReason.ENDPOINT_FILTER),
    ]
    assert world.sink.state_updates == []  # delivered at once: nothing owed, nothing written but the row


async def test_a_redelivered_event_is_not_sent_again() -> None:
    world = dispatcher_world()
    world.config.endpoint_views.append(endpoint_view("ep"))
    envelope = invoice_envelope()
    for _ in range(3):
        await world.dispatcher.dispatch_event(envelope, envelope.to_json_bytes())
    assert world.sender.sends == [("evt-1", "ep", 1)]


async def test_a_retryable_failure_parks_the_next_attempt_then_the_last_is_failed_and_dead_lettered() -> None:
    world = dispatcher_world()
    world.config.endpoint_views.append(endpoint_view("ep"))
    world.sender.statuses = [500, 503, 500]
    envelope = invoice_envelope()
    body = envelope.to_json_bytes()

    await world.dispatcher.dispatch_event(envelope, body)
    [parked] = world.parked()
    assert (parked.endpoint_id, parked.attempt) == ("ep", 2)
    # The retry consumer brings the parked attempts back.
    await world.dispatcher.run_attempt(AttemptJob(envelope, body, "ep", 2))
    await world.dispatcher.run_attempt(AttemptJob(envelope, body, "ep", 3))

    assert [row.status for row in world.sink.rows] == [
        DeliveryStatus.RETRYING,
        DeliveryStatus.RETRYING,
        DeliveryStatus.FAILED,
    ]
    assert [p.attempt for p in world.parked()] == [2, 3]
    [dead] = world.producer.on(world.topics.dispatch_dead_letter)
    assert (dead.value, dead.header("aforo-dlq-reason")) == (body, "retries_exhausted")
    assert len(world.sink.state_updates) == 3  # RETRYING, RETRYING, FAILED: the reconciler's view


async def test_a_410_disables_the_endpoint_without_retrying() -> None:
    world = dispatcher_world()
    world.config.endpoint_views.append(endpoint_view("ep"))
    world.sender.statuses = [410]
    envelope = invoice_envelope()

    await world.dispatcher.dispatch_event(envelope, envelope.to_json_bytes())

    assert world.config.disabled == ["ep"]
    assert world.parked() == []
    [change] = world.producer.on(world.topics.config_changes)
    assert change.key is not None


async def test_an_unusable_endpoint_is_failed_and_dead_lettered_at_once() -> None:
    world = dispatcher_world()
    world.config.endpoint_views.append(endpoint_view("ep"))
    world.sender.statuses = ["endpoint has no valid signing secret"]
    envelope = invoice_envelope()

    await world.dispatcher.dispatch_event(envelope, envelope.to_json_bytes())

    [row] = world.sink.rows
    assert (row.status, row.error) == (DeliveryStatus.FAILED, "endpoint has no valid signing secret")
    [dead] = world.producer.on(world.topics.dispatch_dead_letter)
    assert dead.header("aforo-dlq-reason") == "endpoint_unavailable"


async def test_a_disabled_preference_skips_every_channel_with_its_gate() -> None:
    world = dispatcher_world()
    world.config.endpoint_views.append(endpoint_view("ep"))
    world.config.preferences[("t1", "c1", "INVOICE_GENERATED")] = PreferenceView(enabled=False)
    envelope = invoice_envelope()

    await world.dispatcher.dispatch_event(envelope, envelope.to_json_bytes())

    assert world.sender.sends == []
    assert {row.skip_reason for row in world.sink.rows} == {SkipReason.PREFERENCE_DISABLED}


async def test_a_replay_of_a_failed_delivery_reserves_and_sends_the_next_attempt_with_a_fresh_budget() -> (
    None
):
    world = dispatcher_world()
    world.config.endpoint_views.append(endpoint_view("ep"))
    world.sender.statuses = [500, 500, 500, 500, 200]
    envelope = invoice_envelope()
    body = envelope.to_json_bytes()
    await world.dispatcher.dispatch_event(envelope, body)
    for attempt in (2, 3):
        await world.dispatcher.run_attempt(AttemptJob(envelope, body, "ep", attempt))
    assert world.sink.rows[-1].status is DeliveryStatus.FAILED

    await world.dispatcher.replay(envelope, body, "ep")
    await world.dispatcher.replay(envelope, body, "ep")  # a second request while the first runs on

    assert world.ledger.reserved == [AttemptKey("t1", "evt-1", Channel.WEBHOOK, "ep", 4)]
    assert world.sink.rows[-1].attempt == 4
    assert world.sink.rows[-1].status is DeliveryStatus.RETRYING  # attempt 1 of the new budget
    [*_, parked] = world.parked()
    assert (parked.attempt, parked.attempt_base) == (5, 3)
    await world.dispatcher.run_attempt(AttemptJob(envelope, body, "ep", 5, attempt_base=3))
    assert world.sink.rows[-1].status is DeliveryStatus.DELIVERED


async def test_the_same_attempt_in_flight_twice_in_one_process_is_sent_once() -> None:
    world = dispatcher_world()
    world.config.endpoint_views.append(endpoint_view("ep"))
    world.sender.gate = asyncio.Event()
    envelope = invoice_envelope()
    body = envelope.to_json_bytes()
    first = asyncio.create_task(world.dispatcher.run_attempt(AttemptJob(envelope, body, "ep", 1)))
    second = asyncio.create_task(world.dispatcher.run_attempt(AttemptJob(envelope, body, "ep", 1)))
    await asyncio.sleep(0.01)
    world.sender.gate.set()
    assert sorted(await asyncio.gather(first, second)) == [False, True]
    assert len(world.sender.sends) == 1


async def test_a_reconciled_attempt_is_taken_once_and_left_when_already_reserved() -> None:
    world = dispatcher_world()
    world.config.endpoint_views.append(endpoint_view("ep"))
    envelope = invoice_envelope()
    body = envelope.to_json_bytes()
    job = AttemptJob(envelope, body, "ep", 2, reconcile=True)
    assert await world.dispatcher.run_attempt(job) is True
    assert await world.dispatcher.run_attempt(job) is False
    assert world.sender.sends == [("evt-1", "ep", 2)]


async def test_a_channel_without_a_sender_is_logged_failed_not_dropped() -> None:
    world = dispatcher_world()
    world.config.add_custom("t1", "SMS_ONLY", frozenset({Channel.SMS}))
    envelope = invoice_envelope().model_copy(update={"event_type": "SMS_ONLY", "category": "Custom"})

    await world.dispatcher.dispatch_event(envelope, envelope.to_json_bytes())

    [row] = world.sink.rows
    assert (row.channel, row.status, row.error) == (
        Channel.SMS,
        DeliveryStatus.FAILED,
        "no SMS sender is configured",
    )


async def test_a_crash_before_the_row_is_flushed_never_delivers_twice() -> None:
    # Attempt 1 fails and parks attempt 2; the process dies before attempt 1's row is flushed.
    world = dispatcher_world()
    world.config.endpoint_views.append(endpoint_view("ep"))
    world.sender.statuses = [500, 200]
    envelope = invoice_envelope()
    body = envelope.to_json_bytes()
    await world.dispatcher.dispatch_event(envelope, body)
    [parked] = world.parked()
    world.sink.rows.clear()
    world.sink.keys.clear()  # lost with the process
    restarted = dispatcher_world()
    restarted.config.endpoint_views.append(endpoint_view("ep"))
    restarted.sender.statuses = [200]

    # The parked attempt 2 comes due before attempt 1's record is read again: it waits, parked.
    retry = AttemptJob(envelope, body, "ep", parked.attempt)
    assert await restarted.dispatcher.run_attempt(retry) is False
    [waiting] = restarted.parked()
    assert (waiting.attempt, waiting.waiting_since is not None) == (2, True)
    # Attempt 1 runs again (its record was never committed) and is delivered this time.
    await restarted.dispatcher.dispatch_event(envelope, body)
    # The parked attempt 2 comes back: the delivery is over, nothing goes out.
    later = AttemptJob(envelope, body, "ep", 2, waiting_since=waiting.waiting_since)
    assert await restarted.dispatcher.run_attempt(later) is False
    assert restarted.sender.sends == [("evt-1", "ep", 1)]
    assert [row.status for row in restarted.sink.rows] == [DeliveryStatus.DELIVERED]


async def test_two_copies_of_a_parked_retry_in_one_process_send_it_once() -> None:
    world = dispatcher_world()
    world.config.endpoint_views.append(endpoint_view("ep"))
    world.sender.statuses = [500, 200]
    envelope = invoice_envelope()
    body = envelope.to_json_bytes()
    await world.dispatcher.dispatch_event(envelope, body)  # attempt 1: 500, attempt 2 parked
    world.sender.gate = asyncio.Event()
    copies = [
        asyncio.create_task(world.dispatcher.run_attempt(AttemptJob(envelope, body, "ep", 2)))
        for _ in range(2)
    ]
    await asyncio.sleep(0.01)
    world.sender.gate.set()
    assert sorted(await asyncio.gather(*copies)) == [False, True]
    assert [attempt for _, _, attempt in world.sender.sends] == [1, 2]


async def test_an_unseen_event_is_sent_without_asking_the_ledger_and_a_seen_one_is_asked() -> None:
    world = dispatcher_world()
    world.config.endpoint_views.append(endpoint_view("ep"))
    unseen, seen = invoice_envelope("evt-unseen"), invoice_envelope("evt-seen")

    await world.dispatcher.dispatch_event(unseen, unseen.to_json_bytes(), unseen=True)
    await world.dispatcher.dispatch_event(seen, seen.to_json_bytes())

    assert [key.event_id for key in world.ledger.asked] == ["evt-seen"]
    assert world.sender.sends == [("evt-unseen", "ep", 1), ("evt-seen", "ep", 1)]


async def test_a_second_record_of_an_unseen_event_in_the_same_process_is_not_sent_again() -> None:
    # The producer published the event twice; both records are past their partition's mark.
    world = dispatcher_world()
    world.config.endpoint_views.append(endpoint_view("ep"))
    envelope = invoice_envelope()
    for _ in range(2):
        await world.dispatcher.dispatch_event(envelope, envelope.to_json_bytes(), unseen=True)
    assert world.sender.sends == [("evt-1", "ep", 1)]
    assert world.ledger.asked == []


async def test_a_slow_idempotency_lookup_does_not_hold_the_endpoints_slot() -> None:
    # One slot per endpoint: an attempt waiting on the database must not keep a ready one from sending.
    world = dispatcher_world(per_endpoint_concurrency=1)
    world.config.endpoint_views.append(endpoint_view("ep"))
    world.ledger.answer_after = asyncio.Event()
    seen, unseen = invoice_envelope("evt-seen"), invoice_envelope("evt-unseen")
    waiting = asyncio.create_task(
        world.dispatcher.run_attempt(AttemptJob(seen, seen.to_json_bytes(), "ep", 1))
    )
    await asyncio.sleep(0)
    assert await asyncio.wait_for(
        world.dispatcher.run_attempt(AttemptJob(unseen, unseen.to_json_bytes(), "ep", 1, unseen=True)), 5
    )
    assert world.sender.sends == [("evt-unseen", "ep", 1)]
    world.ledger.answer_after.set()
    assert await waiting
    assert world.sender.sends == [("evt-unseen", "ep", 1), ("evt-seen", "ep", 1)]


async def test_a_replay_reserves_its_attempt_only_once_it_holds_the_endpoints_slot() -> None:
    # A reservation's lease runs from its insert: waiting behind a slow receiver must not age it.
    world = dispatcher_world(per_endpoint_concurrency=1)
    world.config.endpoint_views.append(endpoint_view("ep"))
    world.sender.gate = asyncio.Event()
    busy, replayed = invoice_envelope("evt-busy"), invoice_envelope("evt-replayed")
    sending = asyncio.create_task(
        world.dispatcher.run_attempt(AttemptJob(busy, busy.to_json_bytes(), "ep", 1, unseen=True))
    )
    replaying = asyncio.create_task(world.dispatcher.replay(replayed, replayed.to_json_bytes(), "ep"))
    await asyncio.sleep(0.01)
    assert world.ledger.reserved == []  # the slot is taken: nothing reserved yet
    world.sender.gate.set()
    await asyncio.wait_for(asyncio.gather(sending, replaying), 5)
    assert [key.event_id for key in world.ledger.reserved] == ["evt-replayed"]
    assert [send[0] for send in world.sender.sends] == ["evt-busy", "evt-replayed"]


async def test_the_attempts_remembered_lately_are_the_newest_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "RECENTLY_FINISHED", 3)
    world = dispatcher_world()
    world.config.endpoint_views.append(endpoint_view("ep"))
    envelopes = [invoice_envelope(f"evt-{number}") for number in range(5)]
    for envelope in envelopes:
        await world.dispatcher.dispatch_event(envelope, envelope.to_json_bytes())

    remembered = [key.event_id for key in world.dispatcher._finished]
    assert remembered == ["evt-2", "evt-3", "evt-4"]  # the oldest forgotten first, one per new attempt
    # A forgotten one is still not sent twice: the ledger (its stored row) answers for it.
    await world.dispatcher.dispatch_event(envelopes[0], envelopes[0].to_json_bytes())
    assert [send[0] for send in world.sender.sends] == [f"evt-{number}" for number in range(5)]
