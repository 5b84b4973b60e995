"""The headers of a dead-lettered record, one definition for the bridge, the trigger and the dispatcher.

A dead letter keeps the original bytes as its value and says why in headers an operator can read with
any Kafka tool: `aforo-dlq-reason` (a short code), `aforo-dlq-detail` (at most 1,000 characters of
explanation) and `aforo-dlq-truncated: true` when the value had to be cut to fit. Header text is
encoded so that it never fails: a detail quoting hostile input (a lone UTF-16 surrogate, say) is
escaped, not refused, because a dead letter that cannot be written would stop its consumer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

REASON_HEADER: Final = "aforo-dlq-reason"
DETAIL_HEADER: Final = "aforo-dlq-detail"
TRUNCATED_HEADER: Final = "aforo-dlq-truncated"
DETAIL_LIMIT: Final = 1000

KafkaHeaders = list[tuple[str, bytes]]


def header_bytes(text: str, limit: int | None = None) -> bytes:
    """A header value from text, never raising: lone surrogates are written as `\\udXXX` escapes."""
    return (text if limit is None else text[:limit]).encode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class DeadLetterHeaders:
    """Why a record was dead-lettered, plus context headers of the writer's (`extra`, in order)."""

    reason: str
    detail: str = ""
    truncated: bool = False
    extra: tuple[tuple[str, str], ...] = field(default=())

    def to_kafka(self, original: Iterable[tuple[str, bytes]] = ()) -> KafkaHeaders:
        """The record's headers: the original ones first (kept as they came), then ours."""
        headers: KafkaHeaders = list(original)
        headers.append((REASON_HEADER, header_bytes(self.reason, 128)))
        headers.append((DETAIL_HEADER, header_bytes(self.detail, DETAIL_LIMIT)))
        headers.extend((name, header_bytes(value, DETAIL_LIMIT)) for name, value in self.extra)
        if self.truncated:
            headers.append((TRUNCATED_HEADER, b"true"))
        return headers

    @classmethod
    def from_kafka(cls, headers: Sequence[tuple[str, bytes]]) -> DeadLetterHeaders:
        """Read a dead letter's headers back (operators' tools, tests); ValueError without a reason."""
        values = {name: value.decode("utf-8", "replace") for name, value in headers}
        if REASON_HEADER not in values:
            raise ValueError(f"{REASON_HEADER}: missing, not a dead letter")
        ours = {REASON_HEADER, DETAIL_HEADER, TRUNCATED_HEADER}
        return cls(
            reason=values[REASON_HEADER],
            detail=values.get(DETAIL_HEADER, ""),
            truncated=values.get(TRUNCATED_HEADER) == "true",
            extra=tuple(
                (name, value.decode("utf-8", "replace"))
                for name, value in headers
                if name.startswith("aforo-") and name not in ours
            ),
        )
