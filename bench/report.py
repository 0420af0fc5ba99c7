"""docs/performance.md and the console summary, from the figures of one run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench import floors, ru
from bench.cold_start import APP, APP_TELEMETRY, FLOOR, ColdStartFigures, ImportProfile
from bench.http_host import HOST, HttpFigures
from bench.inprocess import (
    LABELS,
    TELEMETRY,
    EventGridFigures,
    PerEventFigures,
    Rows,
    ThroughputFigures,
)
from bench.local import KEEP_ALIVE_S
from bench.stats import Spread
from bench.worker import FUNCTION

CPU_TARGET = 1.1
TELEMETRY_CPU_TARGET = 1.2
THROUGHPUT_TARGET = 0.9
EVENTGRID_TARGET_S = 3.0  # a tenth of the 30 s Event Grid waits
COLD_START_TARGET = 1.3
HTTP_TARGET = 0.8


@dataclass(frozen=True)
class Figures:
    machine: dict[str, str]
    command: str  # the command line that produced them
    per_event: PerEventFigures
    throughput: ThroughputFigures
    eventgrid: EventGridFigures
    http: HttpFigures
    cold_start: ColdStartFigures
    imports: ImportProfile
    sizes: list[ru.WriteCost]
    telemetry_note: str
    async_note: str
    seconds: float
    quick: bool = False  # a smoke run: too few rounds for the figures to mean anything


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def _x(spread: Spread) -> str:
    return f"{spread.median:.2f}x ({spread.low:.2f}-{spread.high:.2f})"


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "**MISS**"


def _vs(rows: Rows, row: str, fastest: str) -> tuple[str, str]:
    """The row over the fastest floor and over the sync tuned floor, round by round."""
    tuned = floors.SYNC_TUNED
    return _x(rows.ratios(row, fastest)), _x(rows.ratios(row, tuned))


def targets_section(figures: Figures) -> str:
    pe, tp, http, cold = figures.per_event, figures.throughput, figures.http, figures.cold_start
    fastest = pe.fastest_floor()
    rows: list[tuple[str, ...]] = []

    def cpu_row(row: str, what: str, target: float) -> None:
        ratio = pe.rows.ratios(row, fastest)
        rows.append(
            (
                what,
                _us(pe.rows.median(row)),
                f"{_us(pe.rows.median(fastest))} ({fastest})",
                *_vs(pe.rows, row, fastest),
                f"≤ {target}x",
                _verdict(ratio.median <= target),
            )
        )

    cpu_row(FUNCTION, "Per-event CPU, function path, logging at INFO", CPU_TARGET)
    if TELEMETRY in pe.rows.per_round:
        cpu_row(TELEMETRY, "Per-event CPU, function path, telemetry on", TELEMETRY_CPU_TARGET)
    else:
        rows.append(
            (
                "Per-event CPU, function path, telemetry on",
                figures.telemetry_note,
                "",
                "",
                "",
                f"≤ {TELEMETRY_CPU_TARGET}x",
                "not measured",
            )
        )
    for name, figs, target in (
        (f"Throughput in-process at concurrency {tp.concurrency}", tp, THROUGHPUT_TARGET),
        (f"Through the local host over HTTP at concurrency {http.concurrency}", http, HTTP_TARGET),
    ):
        row = FUNCTION if figs is tp else HOST
        floor = figs.fastest_floor()
        rows.append(
            (
                name,
                f"{figs.rows.median(row):.0f} events/s",
                f"{figs.rows.median(floor):.0f} events/s ({floor})",
                *_vs(figs.rows, row, floor),
                f"≥ {target}x",
                _verdict(figs.rows.ratios(row, floor).median >= target),
            )
        )
    eg = figures.eventgrid
    rows.append(
        (
            f"Event Grid batch of {eg.events} events stored",
            f"{eg.median:.2f} s",
            "",
            "",
            "",
            f"< {EVENTGRID_TARGET_S:g} s",
            _verdict(eg.median < EVENTGRID_TARGET_S),
        )
    )
    for mode, what in (
        (APP, "Cold start: new process → first answered event"),
        (APP_TELEMETRY, "Cold start with APPLICATIONINSIGHTS_CONNECTION_STRING set"),
    ):
        ratio = cold.ratio(mode)
        rows.append(
            (
                what,
                _ms(cold.median(mode)),
                f"{_ms(cold.median(FLOOR))} (bare process)",
                _x(ratio),
                "",
                f"≤ {COLD_START_TARGET}x",
                _verdict(ratio.median <= COLD_START_TARGET),
            )
        )
    headers = (
        "What",
        "Measured",
        "Floor (fastest found)",
        "Ratio vs fastest floor (range)",
        "Ratio vs sync tuned floor (range)",
        "Target",
        "Result",
    )
    return "\n\n".join(
        [
            "## Targets",
            "Ratios are medians of each round's own ratio, with their range over the rounds in "
            "brackets. *Fastest floor*: of the floors below, the one with the best median in "
            "this run; *sync tuned floor*: `RequestsTransport(use_env_settings=False)`, the "
            "configuration the app's sync client is meant to match.",
            table(headers, rows),
        ]
    )


def machine_section(machine: dict[str, str], command: str) -> str:
    return "## Machine\n\n" + table(("", ""), [*machine.items(), ("Command", f"`{command}`")])


def floors_section(figures: Figures) -> str:
    items = [f"- *{name}*: {floors.LABELS[name]}." for name in floors.FLOORS]
    notes = [note for note in (figures.async_note,) if note]
    return "\n\n".join(
        [
            "## The floors",
            "Each figure stands next to the bare SDK doing the same write of the same "
            "document (the one the app makes from the same payload), measured in the same "
            "run and process, interleaved with the app's rounds. All floors get the app's "
            "client options (timeouts, no echo of the item on writes), so they differ in the "
            "transport alone. The local server keeps idle connections for "
            f"{KEEP_ALIVE_S} s (bench/local.py), so that none closes between rounds:",
            "\n".join(items),
            *notes,
        ]
    )


def _us_spread(figure: Spread) -> str:
    return f"{_us(figure.median)} ({_us(figure.low)}-{_us(figure.high)})"


def _latency_rows(rows: Rows, fastest: str, figure: str) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for row in rows.per_round:
        spread = rows.spread(row)
        value = (
            _us_spread(spread)
            if figure == "cpu"
            else f"{spread.median:.0f} ({spread.low:.0f}-{spread.high:.0f})"
        )
        mine, tuned = _vs(rows, row, fastest)
        out.append(
            (
                HOST if row == HOST else f"`{row}`: {LABELS[row]}",
                value,
                _ms(rows.latency(row, 0.5)),
                _ms(rows.latency(row, 0.99)),
                mine,
                tuned,
            )
        )
    return out


def per_event_section(figures: Figures) -> str:
    pe = figures.per_event
    headers = ("Row", "CPU per event (range)", "p50", "p99", "vs fastest floor", "vs sync tuned")
    telemetry = (
        f"Telemetry row: {figures.telemetry_note}."
        if TELEMETRY in pe.rows.per_round
        else f"Telemetry row {figures.telemetry_note}."
    )
    return "\n\n".join(
        [
            "## Per-event CPU and latency",
            f"{pe.rounds} interleaved rounds of {pe.events} new push events each, one after "
            "another, after a warm-up. The function path runs in a child process configured as "
            "the deployed app (settings from the environment, `bench/worker.py`) with the root "
            "logger at INFO through a stand-in for the Python worker's log handler (as in its "
            "dispatcher.py: each record formatted, its RpcLog fields built and queued for the "
            "worker's gRPC thread, whose sending, like that of each invocation's answer, is the "
            "worker's own and not measured); it calls the registered user function "
            "with a `func.HttpRequest` and reads the `func.HttpResponse`'s body. CPU is the "
            "process's own (`time.process_time`, all its threads) over the round, per event: "
            "the local Cosmos DB API server's CPU is not in it. Latency is per call, p50/p99 "
            "over every event of every round.",
            table(headers, _latency_rows(pe.rows, pe.fastest_floor(), "cpu")),
            f"The function path emitted {pe.log_records_per_event:.2f} log records per event "
            "at INFO, each formatted and queued. " + telemetry,
        ]
    )


def throughput_section(tp: ThroughputFigures) -> str:
    headers = (
        "Row",
        "Events/s (range)",
        "p50",
        "p99",
        "vs fastest floor",
        "vs sync tuned",
        "CPU per event (range)",
    )
    rates = _latency_rows(tp.rows, tp.fastest_floor(), "rate")
    rows = [
        (*row, _us_spread(tp.cpu.spread(name)))
        for name, row in zip(tp.rows.per_round, rates, strict=True)
    ]
    return "\n\n".join(
        [
            "## Throughput in-process",
            f"{tp.events} new push events at concurrency {tp.concurrency} "
            "(`config.HTTP_CONCURRENCY`: the deployed per-instance HTTP concurrency and worker "
            f"thread count), {tp.rounds} interleaved rounds, after one warm-up write per "
            "thread: the function path and the sync floors on that many threads, the async "
            "floor as that many tasks on one event loop. Latency from call to return. CPU per "
            "event is the process's (all threads) over the round: under this load the sync "
            "client's threads spend part of it contending for the GIL, which the per-event "
            "figures above, one event at a time, do not show.",
            table(headers, rows),
        ]
    )


def eventgrid_section(eg: EventGridFigures) -> str:
    runs = ", ".join(f"{s:.2f} s" for s in eg.seconds)
    return "\n\n".join(
        [
            "## Event Grid batch",
            f"One batch of {eg.events} new ACR push events in the Event Grid schema "
            f"({eg.body_bytes} bytes) through the registered `function_app.acr_eventgrid`, "
            "answered 200, every event then read back from the local server (off the clock). "
            f"Median {eg.median:.2f} s ({eg.events / eg.median:.0f} events/s) over "
            f"{len(eg.seconds)} batches ({runs}); target under {EVENTGRID_TARGET_S:g} s, a "
            "tenth of the 30 s Event Grid waits for an answer.",
        ]
    )


def http_section(http: HttpFigures) -> str:
    headers = ("Row", "Events/s (range)", "p50", "p99", "vs fastest floor", "vs sync tuned")
    return "\n\n".join(
        [
            "## Through the local host over HTTP",
            f"`python -m acr_webhook serve` as its own process; {http.concurrency} client "
            "threads, each with one keep-alive connection (opened with one warm-up request "
            f"off the clock), send {http.events} new pushes per round; {http.rounds} rounds "
            "alternating with direct `create_item` of the same documents at the same "
            "concurrency. The client runs on the same machine and its CPU counts against the "
            "host's. Latency from send to the end of the answer. Connection errors over all "
            f"rounds: **{http.connection_errors}**; answers other than 201: "
            f"**{http.unexpected_answers}**.",
            table(headers, _latency_rows(http.rows, http.fastest_floor(), "rate")),
        ]
    )


def cold_start_section(cold: ColdStartFigures, imports: ImportProfile) -> str:
    labels = {
        APP: "app: `import function_app`, call the registered function",
        APP_TELEMETRY: "app, APPLICATIONINSIGHTS_CONNECTION_STRING set (local sink)",
        FLOOR: "floor: imports, `CosmosClient` (sync tuned), one `create_item`",
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
    runs = len(cold.runs[APP])
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
            "Cosmos client and writes the document (201). *app with telemetry* is the same with "
            "APPLICATIONINSIGHTS_CONNECTION_STRING set, as deployed, its ingestion endpoint a "
            "local sink that accepts everything (`bench/sink.py`): whatever the app sets up "
            "when the setting is present counts. *floor* only imports azure-functions, "
            "azure-cosmos and pydantic, creates a `CosmosClient` with the app's client options "
            "on the sync tuned transport and does one `create_item`. The worker's own start "
            "(gRPC, host handshake) is no one's and not measured. "
            f"Medians of {runs} interleaved runs each after a discarded warm-up, against the "
            f"local Cosmos DB API server. Interpreter: {cold.interpreter}.",
            table(("Run", "Total", "Interpreter start", "Imports", "First event", "CPU"), rows),
            "CPU is the child's own CPU time up to the answer (ratio to the floor: "
            f"{_x(cold.ratio(APP, 'cpu'))} without telemetry, "
            f"{_x(cold.ratio(APP_TELEMETRY, 'cpu'))} with): it moves less than the wall-clock "
            "figures when other work shares the machine.",
            "`python -X importtime` of the plain app and floor children (importtime itself "
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


def ru_expected_table(costs: list[ru.WriteCost]) -> str:
    rows = []
    for name, policy in ru.POLICIES.items():
        paths = ", ".join(f"`{p['path'].removesuffix('/?')}`" for p in policy["includedPaths"])
        composites = len(policy["compositeIndexes"])
        terms = ru.indexed_terms(policy)
        largest = max(cost.bytes_sent for cost in costs)
        rows.append(
            (
                name,
                f"{paths}; {composites} composite",
                terms,
                f"{ru.BASE_RU_UP_TO_1_KB:g} + {ru.RU_PER_INDEXED_TERM:g} x {terms} = "
                f"**{ru.expected_write_ru(policy, largest):.1f} RU**",
            )
        )
    return table(("Policy", "Indexed paths", "Terms per item", "Expected RU per write"), rows)


def ru_measured_table(costs: list[ru.WriteCost]) -> str:
    rows = [
        (
            f"`{c.kind}`",
            c.bytes_sent,
            *(f"{c.request_units[p]:g}" if p in c.request_units else "-" for p in ru.POLICIES),
        )
        for c in costs
    ]
    return table(("Event kind", "Bytes sent", "Write RU, old policy", "Write RU, new policy"), rows)


def ru_section(costs: list[ru.WriteCost]) -> str:
    return "\n\n".join(
        [
            "## Request units per write",
            "Cosmos DB charges a create for the document's size and for each term it adds to "
            'the index: its published example is "a 1-KB document with 10 indexed terms: 5.0 '
            '(document size based) + 0.2 x 10 (indexing) = 7 RUs" '
            f"([Understand request units consumption]({ru.SOURCE})). Every explicitly included "
            "path adds a term for every item, defined or not, and `id` and `_ts` are always "
            "indexed ([Indexing policies]"
            "(https://learn.microsoft.com/azure/cosmos-db/index-policy)); a composite index is "
            "counted as one term per item (no published figure). Our documents are under 1 KB "
            "even as stored (the sizes below plus about 170 bytes of system properties), so "
            "the base is 5.0 RU whatever the kind:",
            ru_expected_table(costs),
            "The old policy is infra/modules/cosmos.bicep before this round; the new one indexes "
            "what the documented queries and the read endpoint filter or sort on. Measured on a "
            "real account (the local Cosmos DB API server reports 1 RU for everything, so this "
            "run cannot measure it):",
            "```sh\n"
            "# the app's own settings: environment (or local.settings.json) - key or Entra ID\n"
            "COSMOS_ENDPOINT=https://<account>.documents.azure.com:443/ \\\n"
            "COSMOS_DATABASE=acr ./scripts/bench ru\n"
            "```",
            "It creates a temporary container per policy in that database, writes one "
            "document of each kind into each, prints the charges and deletes both containers. "
            "Where the account refuses to create containers (Entra ID data-plane roles cannot; "
            "the deployed account has no keys), create the two yourself with the policies "
            "`./scripts/bench ru --print-policies` prints and add `--old-container NAME "
            "--new-container NAME`. This run's document sizes:",
            ru_measured_table(costs),
        ]
    )


# Written by hand from one-off profiles (cProfile and interleaved process_time loops against the
# local server), not measured by this run: the why behind the misses above.
WHERE_THE_TIME_GOES = """## Where the time goes

Profiled on 2026-11-23 (2 cores), not by this run:

- **Per event** (CPU in situ, between real writes, `time.thread_time` around each part): the
  SDK's `create_item` ~885 µs, as on the sync tuned floor; then validation ~32 µs, the decision
  log record ~33 µs, the response (`func.HttpResponse`, JSON) ~15 µs, the document ~9 µs, the
  rest of the handler ~12 µs and the repository's wrapper ~6 µs: ~110-120 µs in all. Run alone
  the same parts take ~25 µs: what the write does not run itself is cold again after each wait
  for the server (pinning the local server to the other core or to the same one changed
  nothing), while `json.loads`, which the SDK keeps warm, costs ~4 µs in situ. Validating with
  pydantic-core costs ~30-45 µs in situ however it is called: from bytes or from `json.loads`'s
  dict, with the `python-re` engine, even with no patterns at all (at most ~10 µs less, within
  the noise of two runs of 11 and 15 rounds). Log records leave out the thread and process
  fields (~13 µs saved). Two cheap switches changed nothing (one run each, 9 and 11 rounds;
  the switched medians 0.007-0.016x above the app's own, within the spread): pydantic's
  `cache_strings` off or keys only, and log records without the caller's file and line
  (`logging._srcfile = None`, the HOWTO's other suggestion). Every decision is a log record by
  design (the audit trail in the host's logs), so 1.1x would leave ~85 µs for validating,
  documenting, logging and answering one event: not reached.
- **Telemetry** adds ~65-85 µs per event: routine decision records are exported at 5/s and
  unsampled writes are not traced (before: every record exported, ~150 µs, and every write
  traced to be dropped, ~110 µs); what remains is the store-latency histogram (~20 µs), the two
  sampling decisions (~6 µs each) and the handlers.
- **Throughput** at concurrency 16: the sync client's 16 threads contend for the GIL (the sync
  tuned floor spends ~1,250 µs of CPU per event at concurrency 16, ~880 µs one at a time); the
  async client on one event loop does ~1.4x its events/s, at ~0.7x its CPU per event under that
  load. The app is sync and reaches ~0.9x of the sync tuned floor. **The targets pull apart:**
  the async client is the fastest floor under load, but one event at a time (the per-event
  floor) it costs ~1.23x the sync tuned client's CPU, and a cold start on it takes ~1.2x as
  long (~55 ms more: aiohttp and the async client, fresh processes, requirements.txt plus
  aiohttp). A prototype of the webhook path on the async client (validation, document, write,
  decision record; not the product, one interleaved run) reached 0.89x of the async floor's
  throughput at 1.38x the sync tuned floor's per-event CPU. Neither client model meets the
  throughput and the per-event targets together. Sync keeps the two that decide whether a
  webhook is answered at all: ACR waits 5 s once, a registry's events mostly arrive one at
  a time, and the first after an idle spell meets an instance scaled to zero.
- **Through the local host** the serve process runs on one core (GIL): ~1,480 µs of CPU per
  event, of which the SDK write ~1,120, the function path ~135 and waitress, the adapter and the
  console ~225, against ~1,250 µs per event in the floor's process: 0.75x. 0.8x would need the
  non-SDK part at ~265 µs. The console's thread now writes held lines every 0.1 s (+1.5%);
  fewer server threads (8: +1.4%, within the noise) and other GIL switch intervals (20 ms: ±0,
  1 ms: -2%, 0.2 ms: -13%) did not help; the client's own CPU (~150 µs per event, another
  process) and the stdout pipe do not limit it (measured). Two prototypes, each in one
  interleaved run, did not help either: a host split like Azure's (waitress in one process,
  the functions in a worker process behind a Unix socket) reached 0.74x where the in-process
  host reached 0.72x, and cheroot in place of waitress reached 0.92x (0.89-0.94, 6 rounds) of
  waitress's own throughput."""


def render(figures: Figures) -> str:
    sections = [
        "# Performance",
        "ACR waits 5 s for an answer and never retries, and Event Grid waits 30 s, so CPU per "
        "event, latency and start-up time decide whether an event is recorded at all. Each "
        "figure stands next to its floor, measured in the same run: the bare SDK doing the "
        "same write with the same libraries.",
        f"> Generated by `./scripts/bench` (code in `bench/`) in {figures.seconds:.0f} s. "
        "Do not edit by hand: run the command again to refresh every figure "
        "(`./scripts/bench --no-write` only prints them). Other work on the machine skews "
        "them: run it on a quiet one.",
        *(
            [
                "> **Smoke run (`--quick`)**: too few, too small rounds; these figures only "
                "show that the harness works. Run `./scripts/bench` on a quiet machine."
            ]
            if figures.quick
            else []
        ),
        targets_section(figures),
        machine_section(figures.machine, figures.command),
        floors_section(figures),
        per_event_section(figures),
        throughput_section(figures.throughput),
        eventgrid_section(figures.eventgrid),
        http_section(figures.http),
        cold_start_section(figures.cold_start, figures.imports),
        ru_section(figures.sizes),
        WHERE_THE_TIME_GOES,
    ]
    return "\n\n".join(sections) + "\n"
