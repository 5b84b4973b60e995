"""Dispatcher settings: `AFORO_DISPATCHER_*`, falling back to `AFORO_*`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aforo.shared.settings import ServiceSettings


class DispatcherSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AFORO_DISPATCHER_", extra="ignore", frozen=True)
    service_name: ClassVar[str] = "dispatcher"

    http_port: int = Field(default=9103, ge=0, le=65535)

    consumer_group: str = "aforo-dispatcher"
    retry_consumer_group: str = "aforo-dispatcher-retry"
    attempt_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Whole-attempt bound per webhook POST."
    )
    max_retry_after_seconds: float = Field(
        default=3600.0, ge=0, description="Cap on a receiver's Retry-After."
    )
    outbound_allowlist: str = Field(
        default="", description="CIDRs admitted despite being non-public (e.g. 127.0.0.1/32 for local dev)."
    )
    previous_attempt_wait_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a retry whose previous attempt has no row yet (it is being made again after "
        "a crash) waits for it before going out anyway.",
    )
    log_each_delivery: bool = Field(
        default=False,
        description="Log a line per successful delivery (failures and retries are always logged).",
    )
    response_body_limit_bytes: int = Field(
        default=4096,
        ge=0,
        le=65536,
        description="How much of a receiver's response body a delivery-log row keeps; 0 keeps none.",
    )
    smtp_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Per SMTP step (connect, each command); the whole exchange gets 3x."
    )
    smtp_ehlo_hostname: str = Field(
        default="",
        max_length=253,
        pattern=r"^[A-Za-z0-9.\-\[\]:]*$",
        description="The name the dispatcher gives in SMTP EHLO; empty: this host's fully qualified name, "
        "looked up once at start (aiosmtplib would otherwise look it up again for every message).",
    )
    smtp_ca_file: str = Field(
        default="",
        description="A PEM bundle to verify SMTP servers' certificates with instead of the system store "
        "(a private CA, or the tests' own certificate); verification is never turned off.",
    )
    provider_connect_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="SMS and PagerDuty: connecting (a timeout here certainly sent nothing).",
    )
    provider_read_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="SMS and PagerDuty: waiting for the answer once the request is written (an SMS timeout "
        "here is ambiguous, retried at most once).",
    )
    per_endpoint_concurrency: int = Field(default=8, ge=1, description="Concurrent attempts per endpoint.")
    per_endpoint_backlog: int = Field(
        default=256,
        ge=1,
        description=(
            "Attempts waiting on one endpoint before new ones are deferred to a delay topic; keep it "
            "well under max_in_flight, so a slow endpoint cannot hold every slot of the consumer."
        ),
    )
    max_in_flight: int = Field(
        default=1024,
        ge=1,
        description="Events being dispatched at once per consumer; also the outbound connection pool's size.",
    )
    lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a replay's or the reconciler's reservation (a PENDING row) holds before "
        "another replica may take the attempt over.",
    )
    log_batch_size: int = Field(default=500, ge=1)
    log_flush_interval_seconds: float = Field(default=0.1, gt=0)
    commit_interval_seconds: float = Field(default=0.5, gt=0)
    reconcile_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often the reconciler looks for stranded deliveries."
    )
    reconcile_min_overdue_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A delivery is stranded once its next attempt is overdue by 2 x its delay tier, and never "
        "less than this (docs/dispatch.md).",
    )
    commit_stall_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Readiness fails once a consumer's flushes or commits have failed for this long in a row.",
    )
    config_cache_seconds: float = Field(
        default=1.0,
        ge=0,
        description="How long endpoints, preferences and definitions read from MongoDB are reused while "
        "the config-changes feed is not current (and always, when the feed is off).",
    )
    config_feed_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How long they are reused while the config-changes feed is current (each change the "
        "API publishes drops the tenant's answers within a poll); bounds what an unpublished change "
        "leaves stale. 0 turns the feed off.",
    )
