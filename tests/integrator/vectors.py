"""The shared X-Aforo-Signature vectors and a Node process that answers them, for the verifier tests."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.stack import ROOT

VECTORS_PATH = ROOT / "clients" / "test-vectors" / "webhook-signatures.json"
NODE_DIR = Path(__file__).resolve().parent / "node"


def vectors() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    return document


class NodeVerifier:
    """`clients/node`'s verify in one long-lived node process, one JSON line per question."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            ["node", str(NODE_DIR / "verify_lines.js")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="surrogateescape",
        )

    def verify(
        self, body: str, header: str, secrets: str | list[str], tolerance_seconds: int, now: float
    ) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        question = {
            "body": body,
            "header": header,
            "secrets": secrets,
            "toleranceSeconds": tolerance_seconds,
            "now": now,
        }
        self.process.stdin.write(json.dumps(question) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"node exited with {self.process.wait(5)}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(10)
