"""Starts a real Kafka broker and SecantusDB for the test session through deploy/local/stack.sh.

Each session gets its own stack directory and free ports, so `make test` never collides with a
`make up` stack. Set AFORO_TEST_KAFKA_BOOTSTRAP and AFORO_TEST_MONGO_URI to use running ones instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STACK_SCRIPT = ROOT / "deploy" / "local" / "stack.sh"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalStack:
    kafka_bootstrap: str
    mongo_uri: str
    env: dict[str, str] | None = None
    directory: Path | None = None

    @classmethod
    def from_environment(cls) -> LocalStack | None:
        bootstrap = os.environ.get("AFORO_TEST_KAFKA_BOOTSTRAP")
        mongo_uri = os.environ.get("AFORO_TEST_MONGO_URI")
        if bootstrap and mongo_uri:
            return cls(bootstrap, mongo_uri)
        return None

    @classmethod
    def start(cls) -> LocalStack:
        directory = ROOT / ".local" / f"test-stack-{os.getpid()}"
        shutil.rmtree(directory, ignore_errors=True)
        kafka_port, controller_port, mongo_port = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "AFORO_LOCAL_DIR": str(directory),
            "AFORO_KAFKA_PORT": str(kafka_port),
            "AFORO_KAFKA_CONTROLLER_PORT": str(controller_port),
            "AFORO_MONGO_PORT": str(mongo_port),
            "AFORO_KAFKA_HEAP": "768m",
        }
        # retryWrites=false as `make up` (deploy/local/stack.sh says why).
        mongo_uri = f"mongodb://127.0.0.1:{mongo_port}/?retryWrites=false"
        stack = cls(f"127.0.0.1:{kafka_port}", mongo_uri, env, directory)
        try:
            for command in ("start-kafka", "start-mongo"):
                subprocess.run([str(STACK_SCRIPT), command], env=env, check=True, timeout=240)
        except BaseException:
            stack.stop()
            raise
        return stack

    def stop(self) -> None:
        if self.env is None:
            return
        subprocess.run([str(STACK_SCRIPT), "down"], env=self.env, check=False, timeout=120)
        if self.directory is not None and not os.environ.get("AFORO_TEST_KEEP_STACK"):
            shutil.rmtree(self.directory, ignore_errors=True)


TEST_JWT_SECRET = "test-only-hs256-secret-of-at-least-32-bytes!"


def service_env(stack: LocalStack, prefix: str, database: str, **extra: str) -> dict[str, str]:
    """What every service process of a test needs: the stack, its own topics and database, dev secrets."""
    from aforo.shared.secret_box import generate_key

    return {
        "AFORO_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "AFORO_MONGO_URI": stack.mongo_uri,
        "AFORO_MONGO_DATABASE": database,
        "AFORO_TOPIC_PREFIX": prefix,
        "AFORO_SHUTDOWN_GRACE_SECONDS": "10",
        "AFORO_SECRETS_ENCRYPTION_KEYS": generate_key(),
        "AFORO_API_AUTH_MODE": "hs256",
        "AFORO_API_JWT_HS256_SECRET": TEST_JWT_SECRET,
        "AFORO_DISPATCHER_OUTBOUND_ALLOWLIST": "127.0.0.1/32",
        "AFORO_SSE_GATEWAY_SESSION_SECRET": "test-only-sse-session-secret-of-at-least-32-bytes",
        **extra,
    }
