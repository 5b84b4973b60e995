"""The dispatcher process: wires MongoDB, the outbound HTTP session and the two consumers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

import aiohttp
from pymongo.errors import PyMongoError

from aforo.dispatcher.audit_backfill import backfill_until_done
from aforo.dispatcher.channels import ChannelSenders
from aforo.dispatcher.channels.configuration import ChannelConfigurationReader
from aforo.dispatcher.channels.email import EmailSender
from aforo.dispatcher.channels.pagerduty import PagerDutySender
from aforo.dispatcher.channels.pipeline import ChannelDispatch
from aforo.dispatcher.channels.sms import SmsSender
from aforo.dispatcher.config_feed import ConfigFeed
from aforo.dispatcher.consequences import Consequences
from aforo.dispatcher.consumers import EventConsumer, RetryConsumer
from aforo.dispatcher.dispatch import Dispatcher
from aforo.dispatcher.log_writer import DeliveryLogWriter
from aforo.dispatcher.outbound import build_outbound_session, parse_cidr_allowlist
from aforo.dispatcher.partition_marks import MarkStore, PartitionMarkKeeper
from aforo.dispatcher.reconciler import Reconciler
from aforo.dispatcher.repositories import ConfigurationReader, CooldownStore, DeliveryLedger
from aforo.dispatcher.retry_schedule import all_retry_topics
from aforo.dispatcher.settings import DispatcherSettings
from aforo.dispatcher.webhook_sender import WebhookSender
from aforo.shared.collections import (
    DELIVERY_LOG_PAGES,
    DELIVERY_LOGS,
    DELIVERY_STATE,
    EVENT_DEFINITIONS,
    NOTIFICATION_COOLDOWNS,
    NOTIFICATION_PREFERENCES,
    PARTITION_MARKS,
    WEBHOOK_ENDPOINTS,
)
from aforo.shared.config_changes import CONFIG_TOPIC_SETTINGS
from aforo.shared.connected_service import ConnectedService
from aforo.shared.delivery import Channel
from aforo.shared.kafka import RenewingProducer, create_consumer, ensure_topics, topic_specs
from aforo.shared.logging import get_logger
from aforo.shared.secret_box import secret_box_from

log = get_logger(__name__)

FEED_START_WAIT_SECONDS = 5.0
"""How long a starting dispatcher waits for its configuration feed to be current (normally a few
hundred ms) before its consumers start: what they load first is then kept, not reread after 1 s."""


class DispatcherService(ConnectedService):
    name = "dispatcher"

    def __init__(self, settings: DispatcherSettings) -> None:
        # Only the collections the dispatcher reads or writes (the API owns the rest).
        super().__init__(
            settings,
            (
                DELIVERY_LOGS,
                DELIVERY_LOG_PAGES,
                DELIVERY_STATE,
                PARTITION_MARKS,
                NOTIFICATION_COOLDOWNS,
                WEBHOOK_ENDPOINTS,
                NOTIFICATION_PREFERENCES,
                EVENT_DEFINITIONS,
            ),
        )
        self.dispatcher_settings = settings
        self.secret_box = secret_box_from(
            settings.secrets_encryption_keys, "webhook secrets are decrypted with it to sign deliveries"
        )
        self.allowlist = parse_cidr_allowlist(settings.outbound_allowlist)
        self.session: aiohttp.ClientSession | None = None
        self.email_sender: EmailSender | None = None
        self.log_writer = DeliveryLogWriter(
            self.mongo, settings.log_batch_size, settings.log_flush_interval_seconds
        )
        self.events: EventConsumer | None = None
        self.retries: RetryConsumer | None = None
        self.reconciler: Reconciler | None = None
        self.renewing_producer: RenewingProducer | None = None
        self.backfill: asyncio.Task[None] | None = None
        self.config_feed: ConfigFeed | None = None

    async def start(self) -> None:
        settings = self.dispatcher_settings
        topics = self.topics
        retry_topics = list(all_retry_topics(settings.topic_prefix))
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            topic_specs(
                [
                    topics.system_events,
                    topics.custom_events,
                    topics.dispatch_requests,
                    topics.dispatch_dead_letter,
                    *retry_topics,
                ],
                settings,
            )
            + topic_specs([topics.config_changes], settings, **CONFIG_TOPIC_SETTINGS),
        )
        await super().start()
        self.session = build_outbound_session(
            self.allowlist,
            limit=settings.max_in_flight,
            limit_per_host=settings.per_endpoint_concurrency,
            total_timeout_seconds=settings.attempt_timeout_seconds,
        )
        config = ConfigurationReader(self.mongo, self.secret_box, settings.config_cache_seconds)
        channel_config = ChannelConfigurationReader(
            self.mongo, self.secret_box, settings.config_cache_seconds
        )
        if settings.config_feed_cache_seconds > 0 and settings.config_cache_seconds > 0:
            # Started before the consumers: answers loaded before it is current are not kept long.
            # (A cache of 0 s reads MongoDB for every event: nothing for a feed to vouch for.)
            self.config_feed = ConfigFeed(
                create_consumer(
                    settings,
                    topics.config_changes,
                    group_id=None,
                    auto_offset_reset="latest",
                    fetch_max_wait_ms=100,
                    metadata_max_age_ms=5_000,  # a partition added to the topic is followed soon
                ),
            )
            for cache in (config.cache, channel_config.cache):
                self.config_feed.keep(cache, settings.config_feed_cache_seconds)
            await self.config_feed.start()
            await self.config_feed.wait_current(FEED_START_WAIT_SECONDS)
        self.renewing_producer = RenewingProducer(self.producer, settings)
        consequences = Consequences(self.renewing_producer, config, topics)
        self.email_sender = EmailSender(
            self.allowlist,
            timeout_seconds=settings.smtp_timeout_seconds,
            tls_context=ssl.create_default_context(cafile=settings.smtp_ca_file or None),
            # Once, here: left to aiosmtplib, every message costs a reverse lookup in a thread.
            local_hostname=settings.smtp_ehlo_hostname or await asyncio.to_thread(socket.getfqdn),
        )
        provider_timeouts = {
            "connect_timeout_seconds": settings.provider_connect_timeout_seconds,
            "read_timeout_seconds": settings.provider_read_timeout_seconds,
        }
        channels = ChannelDispatch(
            channel_config,
            ChannelSenders(
                [
                    self.email_sender,
                    SmsSender(self.session, **provider_timeouts),
                    PagerDutySender(self.session, **provider_timeouts),
                ]
            ),
        )
        dispatcher = Dispatcher(
            settings=settings,
            config=config,
            cooldowns=CooldownStore(self.mongo),
            ledger=DeliveryLedger(self.mongo),
            log_sink=self.log_writer,
            consequences=consequences,
            senders={
                Channel.WEBHOOK: WebhookSender(
                    config,
                    self.session,
                    timeout_seconds=settings.attempt_timeout_seconds,
                    response_body_limit=settings.response_body_limit_bytes,
                ),
                **{
                    channel: channels.sender(channel)
                    for channel in (Channel.EMAIL, Channel.SMS, Channel.PAGERDUTY)
                },
            },
            channel_planner=channels,
        )
        self.log_writer.reject = consequences.dead_letter_row
        options = {
            "max_in_flight": settings.max_in_flight,
            "commit_interval_seconds": settings.commit_interval_seconds,
        }
        marks = PartitionMarkKeeper(MarkStore(self.mongo, settings.consumer_group))
        self.log_writer.marks = marks
        self.events = EventConsumer(
            dispatcher,
            self.log_writer,
            create_consumer(settings, group_id=settings.consumer_group),
            [topics.system_events, topics.custom_events, topics.dispatch_requests],
            dispatch_requests_topic=topics.dispatch_requests,
            marks=marks,
            **options,
        )
        self.retries = RetryConsumer(
            dispatcher,
            self.log_writer,
            create_consumer(settings, group_id=settings.retry_consumer_group),
            retry_topics,
            **options,
        )
        self.reconciler = Reconciler(
            dispatcher,
            self.mongo,
            interval_seconds=settings.reconcile_interval_seconds,
            minimum_overdue_seconds=settings.reconcile_min_overdue_seconds,
        )
        self.log_writer.start()
        # Once, in the background: pages for rows an earlier version indexed on the rows themselves.
        self.backfill = asyncio.create_task(backfill_until_done(self.mongo), name="audit-backfill")
        await self.events.start()
        await self.retries.start()
        self.reconciler.start()

    async def readiness_checks(self) -> dict[str, bool]:
        """The dependencies answer, and no consumer has been unable to commit for too long."""
        if self.renewing_producer is not None:
            self._producer = self.renewing_producer.current  # the producer in use, after a renewal
        checks = await super().readiness_checks()
        bound = self.dispatcher_settings.commit_stall_seconds
        for loop in (self.events, self.retries):
            if loop is not None:
                checks[f"commits:{loop.name}"] = loop.stalled_seconds() < bound
        return checks

    def is_alive(self) -> bool:
        loops_alive = all(loop.is_alive() for loop in (self.events, self.retries) if loop is not None)
        reconciler_alive = self.reconciler is None or self.reconciler.is_alive()
        feed_alive = self.config_feed is None or self.config_feed.is_alive()
        return loops_alive and reconciler_alive and feed_alive and self.log_writer.is_alive()

    async def drain(self) -> None:
        """Stop fetching; finish in-flight attempts (each bounded by its timeout); flush; commit."""
        if self.reconciler is not None:
            await self.reconciler.stop()
        loops = [loop for loop in (self.events, self.retries) if loop is not None]
        await asyncio.gather(*(loop.drain() for loop in loops))
        await self.log_writer.stop()

    async def stop(self) -> None:
        if self.backfill is not None:
            self.backfill.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # it logs its own failures
                await self.backfill
        for loop in (self.events, self.retries):
            if loop is not None:
                await loop.stop()
        try:
            # If the drain ran out of time, what was delivered still gets its rows (bounded wait).
            await asyncio.wait_for(self.log_writer.flush(), 5.0)
        except (TimeoutError, PyMongoError) as error:
            log.error("delivery_log_final_flush_failed", error=repr(error))
        if self.config_feed is not None:
            await self.config_feed.stop()
        if self.session is not None:
            await self.session.close()
        if self.email_sender is not None:
            await self.email_sender.close()
        await super().stop()
