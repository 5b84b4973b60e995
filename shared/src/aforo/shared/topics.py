"""The one table of the topics and consumer groups the suite owns.

Everything that names, creates or sizes a topic reads it from here: `TopicNames` and the retry-topic
helpers in the code, `ensure_topics` in local runs, and `deploy/k8s/generate.py`, which writes the
Strimzi `KafkaTopic` resources and the KEDA lag triggers (a test fails when the committed YAML differs
from what it would write). Producer topics (`billing.*`) belong to the billing platform, not here.

Partitions here are the production sizing; local runs and tests create topics with the
`AFORO_TOPIC_PARTITIONS` default instead. Partitions bound how many replicas of a consumer do work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

DAY_MS: Final = 86_400_000


class Cleanup(StrEnum):
    """Kafka's `cleanup.policy`."""

    DELETE = "delete"
    COMPACT = "compact"


@dataclass(frozen=True)
class OwnedTopic:
    """One topic the suite owns, named `<prefix><suffix>`."""

    key: str
    suffix: str
    purpose: str
    partitions: int
    cleanup: Cleanup = Cleanup.DELETE
    retention_ms: int | None = 7 * DAY_MS
    extra_config: Mapping[str, str] = field(default_factory=dict)
    dead_letter: bool = False
    delay_seconds: int | None = None
    """For a delay tier: how long a retry waits on it."""

    def name(self, prefix: str) -> str:
        return f"{prefix}{self.suffix}"

    def kafka_config(self) -> dict[str, str]:
        """The topic-level configuration, as Kafka spells it (for the admin client and the CR)."""
        config = {"cleanup.policy": self.cleanup.value}
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        config.update(self.extra_config)
        return config


SYSTEM_EVENTS: Final = OwnedTopic(
    "system_events", "events.system", "Bridge → trigger, dispatcher: canonical SYSTEM event envelopes.", 12
)
CUSTOM_EVENTS: Final = OwnedTopic(
    "custom_events", "events.custom", "Trigger and API manual emit → dispatcher: CUSTOM event envelopes.", 12
)
WIDGET_EVENTS: Final = OwnedTopic(
    "widget_events",
    "events.widget",
    "Bridge → SSE gateway: widget (browser) events; resumes replay from memory, so a day is plenty.",
    12,
    retention_ms=DAY_MS,
)
CONFIG_CHANGES: Final = OwnedTopic(
    "config_changes",
    "config.changes",
    "API → trigger, dispatcher: compacted configuration changes for their caches.",
    1,
    cleanup=Cleanup.COMPACT,
    retention_ms=None,
    # A change stays readable for a minute before compaction may replace it with a newer one.
    extra_config={"min.compaction.lag.ms": "60000"},
)
DISPATCH_REQUESTS: Final = OwnedTopic(
    "dispatch_requests",
    "dispatch.requests",
    "API → dispatcher: replays, recoveries and webhook.test probes aimed at one endpoint.",
    12,
)
BRIDGE_DEAD_LETTER: Final = OwnedTopic(
    "bridge_dead_letter",
    "dlq.bridge",
    "Producer records the bridge could not turn into an envelope, bytes untouched.",
    3,
    retention_ms=30 * DAY_MS,
    dead_letter=True,
)
TRIGGER_DEAD_LETTER: Final = OwnedTopic(
    "trigger_dead_letter",
    "dlq.trigger",
    "SYSTEM-event records the trigger agent could not parse.",
    3,
    retention_ms=30 * DAY_MS,
    dead_letter=True,
)
DISPATCH_DEAD_LETTER: Final = OwnedTopic(
    "dispatch_dead_letter",
    "dlq.dispatch",
    "Deliveries that exhausted their retries.",
    3,
    retention_ms=30 * DAY_MS,
    dead_letter=True,
)

DELAY_TIERS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 300, 900, 3600)
"""Delay topics `<prefix>dispatch.retry.<n>s`, in seconds."""

RETRY_TOPIC_PARTITIONS: Final = 12


def retry_topic_suffix(tier: int) -> str:
    return f"dispatch.retry.{tier}s"


def delay_tier_topic(tier: int) -> OwnedTopic:
    """The delay topic of one tier. Retention is a week whatever the tier, so a retry outlives an outage."""
    return OwnedTopic(
        f"dispatch_retry_{tier}s",
        retry_topic_suffix(tier),
        f"Dispatcher retries that wait {tier} s before their next attempt.",
        RETRY_TOPIC_PARTITIONS,
        delay_seconds=tier,
    )


OWNED_TOPICS: Final[tuple[OwnedTopic, ...]] = (
    SYSTEM_EVENTS,
    CUSTOM_EVENTS,
    WIDGET_EVENTS,
    CONFIG_CHANGES,
    DISPATCH_REQUESTS,
    BRIDGE_DEAD_LETTER,
    TRIGGER_DEAD_LETTER,
    DISPATCH_DEAD_LETTER,
    *(delay_tier_topic(tier) for tier in DELAY_TIERS),
)


@dataclass(frozen=True)
class ConsumerGroup:
    """A consumer group whose lag scales a Deployment (KEDA) and is watched by the alerts.

    `topics` are keys of owned topics; empty means the group reads topics the suite does not own
    (the bridge reads the billing platform's topics), and then `max_replicas` is an assumption about
    their partitions that a deployment overrides in its overlay.
    """

    service: str
    group_id: str
    topics: tuple[str, ...]
    lag_threshold: int
    external_partitions: int | None = None

    @property
    def max_replicas(self) -> int:
        """More consumers than the smallest topic's partitions would sit idle for it."""
        if not self.topics:
            if self.external_partitions is None:
                raise ValueError(f"{self.group_id}: a group of external topics needs external_partitions")
            return self.external_partitions
        return min(topic_by_key(key).partitions for key in self.topics)


CONSUMER_GROUPS: Final[tuple[ConsumerGroup, ...]] = (
    ConsumerGroup("bridge", "aforo-bridge", (), lag_threshold=1000, external_partitions=12),
    # faust names its group after the app id, which carries the topic prefix.
    ConsumerGroup("trigger", "{prefix}aforo-trigger", ("system_events",), lag_threshold=1000),
    ConsumerGroup(
        "dispatcher",
        "aforo-dispatcher",
        ("system_events", "custom_events", "dispatch_requests"),
        lag_threshold=500,
    ),
    ConsumerGroup(
        "dispatcher",
        "aforo-dispatcher-retry",
        tuple(delay_tier_topic(tier).key for tier in DELAY_TIERS),
        lag_threshold=2000,
    ),
)


def topic_by_key(key: str) -> OwnedTopic:
    for topic in OWNED_TOPICS:
        if topic.key == key:
            return topic
    raise KeyError(f"topic: no owned topic with key {key!r}")


__all__ = [
    "BRIDGE_DEAD_LETTER",
    "CONFIG_CHANGES",
    "CONSUMER_GROUPS",
    "CUSTOM_EVENTS",
    "DELAY_TIERS",
    "DISPATCH_DEAD_LETTER",
    "DISPATCH_REQUESTS",
    "OWNED_TOPICS",
    "SYSTEM_EVENTS",
    "TRIGGER_DEAD_LETTER",
    "WIDGET_EVENTS",
    "Cleanup",
    "ConsumerGroup",
    "OwnedTopic",
    "delay_tier_topic",
    "retry_topic_suffix",
    "topic_by_key",
]
