"""``python -m bench``: every benchmark against a local Cosmos DB API server of its own; prints
the figures and rewrites docs/performance.md. ``python -m bench ru``: only the request units
per write under the old and the new indexing policy, on the real account the app's settings
name (see bench/ru.py), printed only.

Every round count is a parameter: ``--quick`` is a smoke run that proves the harness works in
well under a minute (its figures are noise); the defaults are for a quiet machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from acr_webhook.config import HTTP_CONCURRENCY, ConfigurationError, load_settings
from bench import report, ru
from bench.cold_start import measure_cold_start, profile_imports
from bench.http_host import measure_http_host
from bench.inprocess import measure_eventgrid, measure_per_event, measure_throughput, workers
from bench.local import local_cosmos_server
from bench.machine import describe_machine
from bench.runtime import runtime_interpreter
from tests.conftest import fresh_settings
from tests.support.cosmos_server import REPO_ROOT

DOCUMENT = REPO_ROOT / "docs" / "performance.md"
T = TypeVar("T")

# (flag, default, --quick value, help)
ROUNDS: list[tuple[str, int, int, str]] = [
    ("--rounds", 7, 2, "interleaved rounds of per-event CPU and of throughput"),
    ("--events", 300, 30, "events per per-event round, written one after another"),
    ("--throughput-events", 2000, 200, "events per throughput round"),
    ("--concurrency", HTTP_CONCURRENCY, HTTP_CONCURRENCY, "throughput and HTTP concurrency"),
    ("--batch", 1000, 1000, "events in the Event Grid batch"),
    ("--batch-rounds", 3, 1, "Event Grid batches"),
    ("--http-events", 2000, 200, "events per round through the local host"),
    ("--http-rounds", 5, 1, "rounds through the local host"),
    ("--cold-runs", 9, 2, "cold starts of each kind"),
    ("--importtime-runs", 5, 1, "-X importtime cold starts of app and floor"),
]


def _step(title: str, measure: Callable[[], T]) -> T:
    print(f"== {title} ...", flush=True)
    started = time.perf_counter()
    figures = measure()
    print(f"   done in {time.perf_counter() - started:.1f} s", flush=True)
    return figures


def run_all(args: argparse.Namespace, command: str) -> report.Figures:
    started = time.perf_counter()
    machine = describe_machine()
    with local_cosmos_server() as server:
        interpreter = _step("runtime venv", runtime_interpreter)
        cold_settings = fresh_settings(server)
        cold = _step(
            "cold start", lambda: measure_cold_start(cold_settings, interpreter, args.cold_runs)
        )
        imports = _step(
            "import profile",
            lambda: profile_imports(cold_settings, interpreter, args.importtime_runs),
        )
        with workers(fresh_settings(server)) as pool:
            print(f"   telemetry: {pool.telemetry_note}", flush=True)
            if pool.async_note:
                print(f"   {pool.async_note}", flush=True)
            per_event = _step(
                "per-event CPU and latency",
                lambda: measure_per_event(pool, args.events, args.rounds),
            )
            throughput = _step(
                "throughput in-process",
                lambda: measure_throughput(
                    pool, args.throughput_events, args.concurrency, args.rounds
                ),
            )
            eventgrid = _step(
                "Event Grid batch", lambda: measure_eventgrid(pool, args.batch, args.batch_rounds)
            )
            http = _step(
                "local host over HTTP",
                lambda: measure_http_host(
                    fresh_settings(server),
                    pool,
                    args.http_events,
                    args.concurrency,
                    args.http_rounds,
                ),
            )
            telemetry_note, async_note = pool.telemetry_note, pool.async_note
            if pool.telemetry:
                telemetry_note += f"; the sink received {pool.sink.posts} export requests"
    return report.Figures(
        machine=machine,
        command=command,
        per_event=per_event,
        throughput=throughput,
        eventgrid=eventgrid,
        http=http,
        cold_start=cold,
        imports=imports,
        sizes=ru.document_sizes(),
        telemetry_note=telemetry_note,
        async_note=async_note,
        seconds=time.perf_counter() - started,
    )


def _ru(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.print_policies:
        print(json.dumps(ru.POLICIES, indent=2))
        return 0
    try:
        settings = load_settings()
    except ConfigurationError as error:
        parser.error(str(error))
    print(f"Writing to {settings.cosmos_endpoint} {settings.cosmos_database} ...", flush=True)
    costs = ru.measure_write_costs(settings, args.old_container, args.new_container)
    print(report.ru_expected_table(costs) + "\n\n" + report.ru_measured_table(costs))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("part", nargs="?", choices=("all", "ru"), default="all")
    for flag, default, _, help_text in ROUNDS:
        parser.add_argument(flag, type=int, default=default, help=f"{help_text} ({default})")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: few, small rounds; prints only"
    )
    parser.add_argument("--output", type=Path, default=DOCUMENT, help="the report to rewrite")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--print-policies", action="store_true", help="ru: print both policies")
    parser.add_argument("--old-container", help="ru: an existing container with the old policy")
    parser.add_argument("--new-container", help="ru: an existing container with the new policy")
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)

    if args.part == "ru":
        return _ru(parser, args)

    given = {item.split("=")[0] for item in raw}
    if args.quick:
        for flag, _, quick, _ in ROUNDS:
            if flag not in given:
                setattr(args, flag.lstrip("-").replace("-", "_"), quick)
        # A smoke run's figures are noise: they replace the document only when asked to.
        args.no_write = args.no_write or "--output" not in given
    command = shlex.join(["./scripts/bench", *raw])
    figures = run_all(args, command)
    if args.quick:
        figures = dataclasses.replace(figures, quick=True)
    text = report.render(figures)
    print("\n" + text)
    if not args.no_write:
        args.output.write_text(text, encoding="utf-8")
        print(f"Wrote {args.output}")
    return 0
