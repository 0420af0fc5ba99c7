"""``python -m bench``: every benchmark against a local Cosmos DB API server of its own; prints
the figures and rewrites docs/performance.md. ``python -m bench ru``: only the request-unit
part, against the account the app's settings name (see bench/ru.py), printed only.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from acr_webhook.config import ConfigurationError, load_settings
from bench import report
from bench.cold_start import measure_cold_start, profile_imports
from bench.cpu import measure_cpu
from bench.local import local_cosmos_server
from bench.machine import describe_machine
from bench.ru import measure_write_costs
from bench.runtime import runtime_interpreter
from bench.throughput import measure_throughput
from tests.conftest import fresh_settings
from tests.support.cosmos_server import REPO_ROOT

DOCUMENT = REPO_ROOT / "docs" / "performance.md"
T = TypeVar("T")


def _step(title: str, measure: Callable[[], T]) -> T:
    print(f"== {title} ...", flush=True)
    started = time.perf_counter()
    figures = measure()
    print(f"   done in {time.perf_counter() - started:.1f} s", flush=True)
    return figures


def run_all(args: argparse.Namespace) -> report.Figures:
    started = time.perf_counter()
    machine = describe_machine()
    with local_cosmos_server() as server:
        cold_settings = fresh_settings(server)
        interpreter = _step("runtime venv", runtime_interpreter)
        cold = _step(
            "cold start", lambda: measure_cold_start(cold_settings, interpreter, args.runs)
        )
        imports = _step("import profile", lambda: profile_imports(cold_settings, interpreter))
        cpu = _step("per-event CPU", measure_cpu)
        throughput = _step(
            "throughput",
            lambda: measure_throughput(server, args.events, args.concurrency, args.rounds),
        )
        costs = _step("request units", lambda: measure_write_costs(fresh_settings(server)))
    return report.Figures(
        machine, cold, imports, cpu, throughput, costs, time.perf_counter() - started
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("part", nargs="?", choices=("all", "ru"), default="all")
    parser.add_argument("--runs", type=int, default=9, help="cold starts of each kind")
    parser.add_argument("--events", type=int, default=2000, help="events per throughput run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="throughput runs of each kind")
    parser.add_argument("--output", type=Path, default=DOCUMENT, help="the report to rewrite")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    if args.part == "ru":
        try:
            settings = load_settings()
        except ConfigurationError as error:
            parser.error(str(error))
        print(
            f"Writing to {settings.cosmos_endpoint} {settings.cosmos_database}/"
            f"{settings.cosmos_container} ...",
            flush=True,
        )
        print(report.ru_table(measure_write_costs(settings)))
        return 0

    figures = run_all(args)
    text = report.render(figures)
    print("\n" + text)
    if not args.no_write:
        args.output.write_text(text, encoding="utf-8")
        print(f"Wrote {args.output}")
    return 0
