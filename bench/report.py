"""docs/performance.md and the console summary, from the figures of one run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.cold_start import ColdStartFigures, ImportProfile
from bench.cpu import CpuFigures
from bench.ru import WriteCost
from bench.stats import ratio
from bench.throughput import ThroughputFigures

COLD_START_TARGET = 1.3
CPU_TARGET = 3.0
THROUGHPUT_TARGET = 0.8


@dataclass(frozen=True)
class Figures:
    machine: dict[str, str]
    cold_start: ColdStartFigures
    imports: ImportProfile
    cpu: CpuFigures
    throughput: ThroughputFigures
    write_costs: list[WriteCost]
    seconds: float


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} µs"


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "**MISS**"


def targets_section(figures: Figures) -> str:
    cold = figures.cold_start
    app, floor = cold.median("app"), cold.median("floor")
    handler_cpu, loads_cpu = figures.cpu.handler, figures.cpu.floor
    tp = figures.throughput
    handler_rate, floor_rate = tp.events_per_s("handler"), tp.events_per_s("floor")
    cold_ratio = cold.ratio()
    cpu_ratio = ratio(handler_cpu.seconds, loads_cpu.seconds)
    tp_ratio = tp.ratio()
    rows = [
        (
            "Cold start: new process → first answered event",
            _ms(app),
            _ms(floor),
            f"{cold_ratio:.2f}x",
            f"≤ {COLD_START_TARGET}x",
            _verdict(cold_ratio <= COLD_START_TARGET),
        ),
        (
            "Per-event CPU: validate and map one push",
            _us(handler_cpu.seconds),
            _us(loads_cpu.seconds),
            f"{cpu_ratio:.2f}x",
            f"≤ {CPU_TARGET}x",
            _verdict(cpu_ratio <= CPU_TARGET),
        ),
        (
            f"Throughput at concurrency {tp.concurrency}",
            f"{handler_rate:.0f} events/s",
            f"{floor_rate:.0f} events/s",
            f"{tp_ratio:.2f}x",
            f"≥ {THROUGHPUT_TARGET}x",
            _verdict(tp_ratio >= THROUGHPUT_TARGET),
        ),
    ]
    return "## Targets\n\n" + table(
        ("What", "Measured", "Floor", "Ratio", "Target", "Result"), rows
    )


def machine_section(machine: dict[str, str]) -> str:
    return "## Machine\n\n" + table(("", ""), list(machine.items()))


def cold_start_section(cold: ColdStartFigures, imports: ImportProfile) -> str:
    labels = {
        "app": "app: `import function_app`, call the registered function",
        "floor": "floor: imports, `CosmosClient`, one `create_item`",
    }
    rows = [
        (
            label,
            _ms(cold.median(mode)),
            _ms(cold.median(mode, "interpreter")),
            _ms(cold.median(mode, "imports")),
            _ms(cold.median(mode, "first_event")),
            _ms(cold.median(mode, "cpu")),
        )
        for mode, label in labels.items()
    ]
    runs = len(cold.runs["app"])
    cpu_ratio = cold.ratio("cpu")
    offenders = [
        (
            f"`{o.module}`",
            f"{o.self_us / 1000:.1f}",
            f"{o.cumulative_us / 1000:.1f}",
            f"`{o.via}`" if o.via else "",
        )
        for o in imports.offenders
    ]
    return "\n\n".join(
        [
            "## Cold start",
            "Each run is a new Python process (`bench/cold_child.py`), timed from the parent's "
            "spawn until the answer. *app* does what the Functions worker does once it runs: "
            "imports `function_app`, builds a `func.HttpRequest` for a push and calls the "
            "registered function, which reads the settings from the environment, creates the "
            "Cosmos client and writes the document (201). *floor* only imports azure-functions, "
            "azure-cosmos and pydantic, creates a `CosmosClient` with the app's client options "
            "and does one `create_item`. The worker's own start (gRPC, host handshake) is "
            "neither's and not measured. "
            f"Medians of {runs} interleaved runs each after a discarded warm-up (ratios: median "
            "of each round's app/floor ratio), against the "
            "local Cosmos DB API server (loopback TLS, keep-alive). Interpreter: "
            f"{cold.interpreter}.",
            table(("Run", "Total", "Interpreter start", "Imports", "First event", "CPU"), rows),
            f"CPU is the child's own CPU time up to the answer (ratio {cpu_ratio:.2f}x): it "
            "moves less than the wall-clock figures when other work shares the machine.",
            "`python -X importtime` of the same children (medians of 5 each; importtime itself "
            "slows imports down): all imports of the app's run take "
            f"**{imports.app_total_us / 1000:.1f} ms** (`import function_app` "
            f"{imports.function_app_us / 1000:.1f} ms, the rest on first use), those of the "
            f"floor's run {imports.floor_total_us / 1000:.1f} ms. Modules in `function_app`'s "
            "import tree that the floor never imports take "
            f"{imports.beyond_floor_us / 1000:.1f} ms of self time; the top offenders among "
            "them, and the app module whose import brought each in:",
            table(("Module", "Self ms", "Cumulative ms", "Imported via"), offenders),
        ]
    )


def cpu_section(cpu: CpuFigures) -> str:
    floor = cpu.floor
    rows = [
        (
            f"`{f.name.strip()}`" if not f.detail else f"&nbsp;&nbsp;↳ `{f.name.strip()}`",
            _us(f.seconds),
            f"{ratio(f.seconds, floor.seconds):.2f}x",
        )
        for f in cpu.rows
    ]
    return "\n\n".join(
        [
            "## Per-event CPU",
            "CPU time per call (`time.process_time`), timeit-style: loop count sized to about "
            "0.2 s, 7 repeats, median; garbage collector off while timing. The payload is the "
            "documented push (`tests/support/payloads.py`, "
            f"{cpu.payload_bytes} bytes). "
            "The handler's figure is everything `handle_webhook` does for a push (size, UTF-8 "
            "and JSON checks, action dispatch, validation, mapping, receive time, result, log "
            "call at the default WARNING level) with a repository that stores nothing; the "
            "indented rows are its parts, and a variant with INFO logging on (to a discarded "
            "stream, as a host keeping INFO would format every line).",
            table(("Call", "CPU per call", "vs json.loads"), rows),
        ]
    )


def throughput_section(tp: ThroughputFigures) -> str:
    labels = {
        "handler": "`handle_webhook` + `CosmosEventRepository`",
        "floor": "direct `container.create_item`",
    }
    rows = [
        (
            label,
            f"{tp.events_per_s(kind):.0f}",
            _ms(tp.latency(kind, 0.5)),
            _ms(tp.latency(kind, 0.99)),
        )
        for kind, label in labels.items()
    ]
    return "\n\n".join(
        [
            "## Throughput and latency",
            f"{tp.events} push events at concurrency {tp.concurrency} (a `ThreadPoolExecutor`), "
            f"{tp.rounds} rounds of each kind, alternating, against the local Cosmos DB API "
            "server. Each run has a fresh container and its own client, built with the app's "
            "`create_cosmos_client` (same options in both), warmed with one write per thread "
            "before the clock starts. The floor writes the very documents the handler produces "
            "from the same payloads. Events/s: median of the rounds; ratio: median of each "
            "round's handler/floor ratio; p50/p99: over every event of all rounds, from call to "
            "return.",
            table(("Path", "Events/s", "p50", "p99"), rows),
        ]
    )


def ru_table(costs: list[WriteCost]) -> str:
    rows = [(f"`{c.kind}`", f"{c.request_units:g}", c.bytes_sent, c.bytes_stored) for c in costs]
    return table(("Event kind", "Write RU", "Bytes sent", "Bytes stored"), rows)


def ru_section(costs: list[WriteCost]) -> str:
    return "\n\n".join(
        [
            "## Request units and document size",
            "One write per recorded event kind: the request charge the write reports "
            "(`x-ms-request-charge`), the document as sent and as stored (read back, with the "
            "system properties). **The local Cosmos DB API server reports 1 RU for every "
            "request**, so the RU column below says nothing about the indexing policy; run "
            "this part against a real account to read it:",
            "```sh\n"
            "# the app's own settings: environment (or local.settings.json) - key or Entra ID\n"
            "COSMOS_ENDPOINT=https://<account>.documents.azure.com:443/ \\\n"
            "COSMOS_DATABASE=acr COSMOS_CONTAINER=events ./scripts/bench ru\n"
            "```",
            "Without COSMOS_KEY it signs in with Microsoft Entra ID (`az login`; the identity "
            "needs the Cosmos DB Built-in Data Contributor role). It writes one document per "
            "kind, with fresh ids, into that existing container, so its deployed indexing "
            "policy applies, reads each back and deletes it (a few RU more). It prints the "
            "table and leaves this file alone.",
            ru_table(costs),
        ]
    )


def render(figures: Figures) -> str:
    sections = [
        "# Performance",
        "ACR waits 5 s for an answer and never retries, so start-up time and latency decide "
        "whether an event is recorded at all. Each figure stands next to its floor, measured "
        "in the same run: what the same work costs without this app's code.",
        f"> Generated by `./scripts/bench` (code in `bench/`) in {figures.seconds:.0f} s. "
        "Do not edit by hand: run the command again to refresh every figure "
        "(`./scripts/bench --no-write` only prints them). Other work on the machine skews "
        "them: run it on a quiet one.",
        targets_section(figures),
        machine_section(figures.machine),
        cold_start_section(figures.cold_start, figures.imports),
        cpu_section(figures.cpu),
        throughput_section(figures.throughput),
        ru_section(figures.write_costs),
    ]
    return "\n\n".join(sections) + "\n"
