"""The receiver's memory: every delivery it took, in arrival order, and the answers it was told to give.

A delivery is appended before the receiver answers, so whatever the dispatcher saw acknowledged is
in the inbox while the harness runs (there is no await between the append and the answer's decision).
Streams wait on a condition and resume from a sequence number, so a page that reconnects with
`Last-Event-ID` misses nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from aforo.harness.verification import Verdict

ScriptedAnswer = Literal["500", "410", "slow"]
SCRIPTED_ANSWERS: Final[tuple[ScriptedAnswer, ...]] = ("500", "410", "slow")


@dataclass
class FailureScript:
    """'Answer 500 / 410 / slowly to the next N deliveries', then 200 again."""

    answer: ScriptedAnswer | None = None
    remaining: int = 0

    def set(self, answer: ScriptedAnswer, count: int) -> None:
        if answer not in SCRIPTED_ANSWERS:
            raise ValueError(f"answer: one of {', '.join(SCRIPTED_ANSWERS)}")
        if not 0 <= count <= 1000:
            raise ValueError("count: 0 to 1000")
        self.answer, self.remaining = (answer, count) if count else (None, 0)

    def take(self) -> ScriptedAnswer | None:
        """The answer for the delivery arriving now, consuming one from the script."""
        if self.answer is None or self.remaining <= 0:
            return None
        answer = self.answer
        self.remaining -= 1
        if self.remaining == 0:
            self.answer = None
        return answer

    def view(self) -> dict[str, Any]:
        return {"answer": self.answer, "remaining": self.remaining}


def answer_for(scripted: ScriptedAnswer | None, verdict: Verdict, slow_seconds: float) -> tuple[int, str]:
    """The receiver's status and the inbox's label for it: the script first, else what a receiver should say."""
    if scripted == "500":
        return 500, "500 (scripted)"
    if scripted == "410":
        return 410, "410 Gone (scripted)"
    if scripted == "slow":
        return 200, f"200 after {slow_seconds:g} s (scripted slow)"
    if verdict.verified:
        return 200, "200"
    # A receiver answers a delivery it cannot verify with a 4xx; the dispatcher retries it like any failure.
    return 400, f"400 {verdict.reason}"


@dataclass
class Inbox:
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    _by_event: dict[str, list[int]] = field(default_factory=dict)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def add(self, delivery: dict[str, Any]) -> dict[str, Any]:
        """Store a delivery with its sequence number and duplicate mark; the stored record."""
        sequence = len(self.deliveries) + 1
        event_id = str(delivery.get("eventId") or "")
        earlier = self._by_event.get(event_id, []) if event_id else []
        acknowledged = [seq for seq in earlier if 200 <= self.deliveries[seq - 1]["answer"]["status"] < 300]
        record = {
            **delivery,
            "seq": sequence,
            "duplicate": bool(acknowledged),
            "duplicateOf": acknowledged[0] if acknowledged else None,
            "repeatOf": earlier[-1] if earlier else None,
        }
        self.deliveries.append(record)
        if event_id:
            self._by_event.setdefault(event_id, []).append(sequence)
        return record

    async def announce(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def since(self, sequence: int) -> list[dict[str, Any]]:
        return self.deliveries[max(sequence, 0) :]

    async def wait_beyond(self, sequence: int, heartbeat_seconds: float) -> None:
        """Return once a delivery after `sequence` exists, or after `heartbeat_seconds`."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: len(self.deliveries) > sequence), heartbeat_seconds
                )
            except TimeoutError:
                return
