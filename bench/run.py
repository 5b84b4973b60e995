"""`make bench`: every benchmark in turn against one local stack, then a table of PASS/FAIL per target.

A benchmark is a module under bench/ that measures itself next to a baseline run in the same process
tree, prints its figures, and ends with one summary line `<name>: ... ratio[:=] X ... PASS|FAIL`.
Scripts that need Kafka or MongoDB find the stack in AFORO_TEST_KAFKA_BOOTSTRAP/AFORO_TEST_MONGO_URI
(started here once, or taken from the environment). Machines are noisy, so a missed target is
reported, not fatal, unless `--strict`; a benchmark that crashes or prints no verdict always is.

    .venv/bin/python -m bench.run [--strict] [--only NAME] [--profile] [-- ARGS for the one script]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.stack import ROOT, LocalStack

BENCH_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Benchmark:
    name: str
    module: str  # bench.<module>, run as `python -m bench.<module>` from the repository root
    needs_stack: bool
    timeout_seconds: float = 600.0

    def present(self) -> bool:
        return (BENCH_DIR / f"{self.module}.py").exists()


# Adding a benchmark is adding a line; a module not written yet is reported as skipped.
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("bridge", "bench_bridge", needs_stack=True),
    Benchmark("dispatcher", "bench_dispatcher", needs_stack=True),
    Benchmark("email", "bench_email", needs_stack=True),
    Benchmark("rules", "bench_rules", needs_stack=False),
    Benchmark("api", "bench_api", needs_stack=True),
    # 19,000 streams connected twice (baseline, gateway) take minutes on a busy 2-core machine.
    Benchmark("sse", "bench_sse", needs_stack=True, timeout_seconds=1200.0),
)

RATIO = re.compile(r"\bratio\s*[:=]\s*([0-9]+(?:\.[0-9]+)?)")
TARGET = re.compile(r"\btarget\s*[:=]?\s*((?:[<>]=?)?\s*[0-9]+(?:\.[0-9]+)?)")
VERDICT = re.compile(r"\b(PASS|FAIL)\s*$")


@dataclass(frozen=True)
class Outcome:
    name: str
    verdict: str  # PASS, FAIL, ERROR or SKIP
    summary: str
    ratio: str = "-"
    target: str = "-"
    seconds: float = 0.0


def parse_summary(name: str, lines: list[str]) -> tuple[str, str, str, str] | None:
    """(verdict, summary, ratio, target) from the last `<name>: ... PASS|FAIL` line, if any."""
    for line in reversed(lines):
        text = line.strip()
        verdict = VERDICT.search(text)
        if text.startswith(f"{name}:") and verdict:
            ratio = RATIO.search(text)
            target = TARGET.search(text)
            return (
                verdict.group(1),
                text[len(name) + 1 :].strip(),
                ratio.group(1) if ratio else "-",
                target.group(1).replace(" ", "") if target else "-",
            )
    return None


def run_benchmark(
    benchmark: Benchmark, stack: LocalStack | None, script_args: list[str], profile: bool
) -> Outcome:
    """Run one module, echoing its output as it comes, and read its verdict from the summary line."""
    if not benchmark.present():
        return Outcome(benchmark.name, "SKIP", f"bench/{benchmark.module}.py not present")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if stack is not None:
        env["AFORO_TEST_KAFKA_BOOTSTRAP"] = stack.kafka_bootstrap
        env["AFORO_TEST_MONGO_URI"] = stack.mongo_uri
    if profile:
        env["AFORO_BENCH_PROFILE"] = "1"
    print(f"\n=== {benchmark.name} (python -m bench.{benchmark.module}) ===", flush=True)
    began = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", f"bench.{benchmark.module}", *script_args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    timer = threading.Timer(benchmark.timeout_seconds, process.kill)
    timer.start()
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
        code = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    seconds = time.monotonic() - began
    parsed = parse_summary(benchmark.name, lines)
    if parsed is None:
        why = f"killed after {benchmark.timeout_seconds:.0f} s" if code < 0 else f"exit code {code}"
        return Outcome(benchmark.name, "ERROR", f"no summary line ({why})", seconds=seconds)
    verdict, summary, ratio, target = parsed
    # The scripts exit non-zero on FAIL only when given --strict themselves, which run.py never passes.
    if code != 0:
        return Outcome(benchmark.name, "ERROR", f"exit code {code}: {summary}", ratio, target, seconds)
    return Outcome(benchmark.name, verdict, summary, ratio, target, seconds)


def print_table(outcomes: list[Outcome]) -> None:
    rows = [("benchmark", "result", "ratio", "target", "time", "figures")]
    rows += [
        (
            outcome.name,
            outcome.verdict,
            outcome.ratio,
            outcome.target,
            f"{outcome.seconds:.0f} s",
            outcome.summary,
        )
        for outcome in outcomes
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    print("\n=== summary ===")
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)) + "  " + row[5]
        )
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--only", choices=[benchmark.name for benchmark in BENCHMARKS], help="run one benchmark"
    )
    parser.add_argument(
        "--profile", action="store_true", help="benchmarks that support it add a cProfile run"
    )
    parser.add_argument("script_args", nargs="*", help="after `--`: arguments for the --only benchmark")
    args = parser.parse_args(argv)
    if args.script_args and args.only is None:
        parser.error("script arguments need --only NAME")
    selected = [benchmark for benchmark in BENCHMARKS if args.only in (None, benchmark.name)]

    stack: LocalStack | None = None
    started_here = False
    if any(benchmark.needs_stack and benchmark.present() for benchmark in selected):
        stack = LocalStack.from_environment()
        if stack is None:
            print("bench: starting a private Kafka broker and SecantusDB under .local/", flush=True)
            stack = LocalStack.start()
            started_here = True
        print(f"bench: Kafka {stack.kafka_bootstrap}, MongoDB {stack.mongo_uri}", flush=True)
    outcomes: list[Outcome] = []
    try:
        for benchmark in selected:
            outcomes.append(
                run_benchmark(
                    benchmark, stack if benchmark.needs_stack else None, args.script_args, args.profile
                )
            )
    finally:
        if started_here and stack is not None:
            print("bench: stopping the stack", flush=True)
            stack.stop()
    print_table(outcomes)
    if any(outcome.verdict == "ERROR" for outcome in outcomes):
        return 1
    if args.strict and any(outcome.verdict == "FAIL" for outcome in outcomes):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
