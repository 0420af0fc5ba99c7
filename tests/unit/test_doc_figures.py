"""The figures the README and docs/*.md give a platform engineer (answer budgets, size limits,
retry counts and intervals, queue and lease settings, page limits, Bicep defaults), each read
from its own sentence and compared with what it describes: the code's constant, host.json as
the runtime reads it, or the Bicep template. Changing one without the other fails here.

Each row reads every sentence of its pattern (white space folded, so a figure may wrap), so a
second place that gives another figure for the same thing fails too. What other modules keep
in step already is left to them: deploy.md's parameter tables (tests/infra/test_deploy_docs.py),
the alert queries word for word (tests/infra/test_alerts.py), the indexed paths
(tests/infra/test_main_template.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import pytest
from azure.cosmos import _constants as cosmos_constants
from pydantic import BaseModel

from acr_webhook import __main__ as cli
from acr_webhook import acr_history, identity, models, queries, reconcile, redrive, telemetry
from acr_webhook.config import (
    DEFAULT_REPLAY_MAX_DELAY_S,
    HTTP_CONCURRENCY,
    QUERY_BUDGET_S,
    ConfigurationError,
    load_settings,
)
from acr_webhook.eventgrid import (
    BATCH_BUDGET_S,
    MAX_BATCH_EVENTS,
    MAX_HANDSHAKE_BYTES,
    MAX_REPORTED_PROBLEMS,
)
from acr_webhook.fallback import QUEUE_BUDGET_S, QUEUE_TIMEOUTS, QUEUE_WAITS
from acr_webhook.handlers import MAX_BODY_BYTES
from acr_webhook.local import queues as local_queues
from acr_webhook.local.host import HOST_JSON, ServerLimits
from acr_webhook.local.queues import QueueOptions
from acr_webhook.models import AcrEvent
from acr_webhook.replay import REPLAY_FIRST_DELAY_S
from acr_webhook.repository import (
    CLIENT_TIMEOUTS,
    PARTITION_FULL,
    QUERY_TIMEOUTS,
    UNAVAILABLE_MEMORY_S,
)
from bench import report as bench_report
from bench import ru as bench_ru
from bench import run as bench_run
from tests.infra.bicep import param, resource, template, var
from tests.infra.test_alerts import alerts, rule
from tests.infra.test_main_template import app_settings, cosmos_container
from tests.infra.test_webhook_template import event_subscription
from tests.unit.test_docs_commands import DOCS
from tests.unit.test_public_corpus import load_corpus

MIB = 1024 * 1024
# ACR waits this long for an answer and never retries (docs/delivery.md; Microsoft's, not ours).
ACR_WAIT_S = 5
# Figures written as words ("one try", "the six log alert rules", "a sixth replay").
WORDS = {"a": 1, "one": 1, "four": 4, "five": 5, "six": 6, "sixth": 6}

Figures = tuple[Any, ...]


def read(text: str) -> Any:
    """A figure as the docs write it: ``1,000``, ``4.5``, ``six``; anything else (a SKU, a
    schedule) as written."""
    if text in WORDS:
        return WORDS[text]
    plain = text.replace(",", "")
    if re.fullmatch(r"\d+", plain):
        return int(plain)
    if re.fullmatch(r"\d+\.\d+", plain):
        return float(plain)
    return text


def folded(text: str) -> str:
    return " ".join(text.split())


def same(*values: Any) -> Any:
    """The one value several constants share, or all of them (which no single figure equals)."""
    return values[0] if len(set(values)) == 1 else values


def host_json() -> QueueOptions:
    return QueueOptions.from_host_json(HOST_JSON)


def blob_service() -> dict[str, Any]:
    """The storage account's blob service properties (soft delete)."""
    properties: dict[str, Any] = resource(template("modules/storage.bicep"), "blobService")[
        "properties"
    ]
    return properties


def limit_error() -> str:
    """What the read endpoint answers for a page size out of range."""
    with pytest.raises(queries.QueryError) as refused:
        queries.parse_event_query({"limit": "0"})
    problem = re.search(r"limit: ([^;]*)", str(refused.value))
    assert problem, refused.value
    return problem[1]


def schedule_minutes(schedule: str) -> int:
    """Minutes between runs of an NCRONTAB ``0 */N * * * *``."""
    every = re.fullmatch(r"0 \*/(\d+) \* \* \* \*", schedule)
    assert every, schedule
    return int(every[1])


def reconcile_minutes() -> int:
    return schedule_minutes(param(template("main.bicep"), "reconcileSchedule")["default"])


def event_grid_retry() -> dict[str, int]:
    policy: dict[str, int] = event_subscription()["properties"]["retryPolicy"]
    return policy


def expected_write_ru() -> tuple[int, float]:
    """Microsoft's formula (performance.md) for the container's indexing policy: terms and RU."""
    policy = cosmos_container()["indexingPolicy"]
    terms = (
        len(bench_ru.ALWAYS_INDEXED)
        + len(policy["includedPaths"])
        + len(policy["compositeIndexes"])
    )
    return terms, round(bench_ru.BASE_RU_UP_TO_1_KB + bench_ru.RU_PER_INDEXED_TERM * terms, 1)


def partition_gb() -> int:
    """The logical partition's size, as the app's own message about a full one names it."""
    (gb,) = re.findall(r"\((\d+) GB\)", PARTITION_FULL)
    return int(gb)


def about(documented: Any, exact: float, within: float = 0.1) -> bool:
    """``documented`` is ``exact`` to within ``within`` of it (the docs' "about")."""
    return bool(abs(documented - exact) <= within * exact)


def exactly(documented: Figures, source: Figures) -> bool:
    """The sentence's figures are the source's, in order (the groups of the pattern's other
    alternatives left out)."""
    return tuple(value for value in documented if value is not None) == source


@dataclass(frozen=True)
class Figure:
    """The sentences ``pattern`` finds in ``docs``, whose groups read as figures, against
    ``source()``: ``agrees(documented, source)``."""

    docs: Sequence[str]
    pattern: str
    source: Callable[[], Figures]
    agrees: Callable[[Figures, Figures], bool] = exactly
    # Sentences the docs hold today: one removed or reworded must be looked at here.
    at_least: int = 1


README = ("README.md",)
DELIVERY = ("docs/delivery.md",)
OPERATIONS = ("docs/operations.md",)
COST = ("docs/cost.md",)
QUERIES = ("docs/queries.md",)
DEPLOY = ("docs/deploy.md",)
# Every hand-written doc (performance.md is written by ./scripts/bench).
EVERY_DOC = (*README, *DELIVERY, *OPERATIONS, *COST, *QUERIES, *DEPLOY)


def function_app_concurrency() -> int:
    concurrency: int = var(template("modules/function-app.bicep"), "httpConcurrency")
    return concurrency


def event_grid_destination() -> dict[str, Any]:
    destination: dict[str, Any] = event_subscription()["properties"]["destination"]["properties"]
    return destination


FIGURES: dict[str, Figure] = {
    # --- answer budgets ----------------------------------------------------------------------
    # The write's bound, then the fallback queue's, fit in the documented answer (ACR: 5 s).
    "webhook answer": Figure(
        README,
        r"(?:queued\"\}` within|503 JSON, within|answer comes within) ([\d.]+) s",
        lambda: (
            CLIENT_TIMEOUTS["timeout"]
            + QUEUE_TIMEOUTS["connection_timeout"]
            + QUEUE_TIMEOUTS["read_timeout"],
        ),
        lambda documented, bounds: bounds[0] <= documented[0] < ACR_WAIT_S,
        at_least=3,
    ),
    "database write bound": Figure(
        README,
        r"(?:does not answer within|share the one) ~(\d+) s",
        lambda: (same(CLIENT_TIMEOUTS["timeout"], CLIENT_TIMEOUTS["read_timeout"]),),
        at_least=2,
    ),
    "failure memory": Figure(
        (*README, *COST),
        r"(?:remembered for|the database again|and the|within the) (\d+) s (?:by every writer"
        r"|after a failure|the app remembers a failure|the outage is remembered)",
        lambda: (UNAVAILABLE_MEMORY_S,),
        at_least=4,
    ),
    "identity token bound": Figure(
        README,
        r"\((\d+) s to connect, (\d+) s to answer, (one) try",
        lambda: (
            identity.IDENTITY_TIMEOUTS["connection_timeout"],
            identity.IDENTITY_TIMEOUTS["read_timeout"],
            identity.IDENTITY_TIMEOUTS["retry_total"] + 1,
        ),
    ),
    "read call and page bounds": Figure(
        QUERIES,
        r"bounded at (\d+) s \(`QUERY_TIMEOUTS`.*? a whole page at (\d+) s \(`QUERY_BUDGET_S`",
        lambda: (QUERY_TIMEOUTS["timeout"], QUERY_BUDGET_S),
    ),
    "event grid batch budget": Figure(
        (*README, *DELIVERY),
        r"(?:A batch gets|after the|database throttles \(up to) (\d+) s",
        lambda: (BATCH_BUDGET_S,),
        at_least=3,
    ),
    # --- size limits -------------------------------------------------------------------------
    "body limit": Figure(
        (*README, *DELIVERY),
        r"(?:[Bb]od(?:y|ies) over|work up to|the functions' own) (\d+) MiB",
        lambda: (MAX_BODY_BYTES / MIB,),
        at_least=5,
    ),
    "problems a 400 names": Figure(
        DELIVERY,
        r"\(the first (\d+) problems, then how many more\)",
        lambda: (MAX_REPORTED_PROBLEMS,),
    ),
    "subscription validation body limit": Figure(
        DELIVERY,
        r"a validation body over (\d+) KiB is 413",
        lambda: (MAX_HANDSHAKE_BYTES / 1024,),
    ),
    "event grid batch events": Figure(
        (*README, *DELIVERY),
        r"([\d,]+) events \((?:Event Grid's largest|more than Event Grid ever batches)",
        lambda: (MAX_BATCH_EVENTS,),
        at_least=3,
    ),
    "id and repository lengths": Figure(
        README,
        r"\| `(?:id|target\.repository)` \| (\d+)-(\d+) characters",
        lambda: (1, same(models.MAX_ID_LENGTH, models.MAX_REPOSITORY_LENGTH)),
        at_least=2,
    ),
    "tag length": Figure(
        README, r"\| `target\.tag` \| at most (\d+) characters", lambda: (models.MAX_TAG_LENGTH,)
    ),
    "255-character fields": Figure(
        README,
        r"\| `target\.digest`, `target\.mediaType`, `request\.host`, `request\.id`, "
        r"`actor\.name`, chart name \| at most (\d+) characters",
        lambda: (
            same(
                models.MAX_DIGEST_LENGTH,
                models.MAX_MEDIA_TYPE_LENGTH,
                models.MAX_HOST_LENGTH,
                models.MAX_NAME_LENGTH,
            ),
        ),
    ),
    "user agent kept": Figure(
        README,
        r"(?:`userAgent` cut to|`request\.useragent` \| kept up to) (\d+) characters",
        lambda: (models.MAX_USER_AGENT_LENGTH,),
        at_least=2,
    ),
    "size range": Figure(
        README,
        r"a whole number from (\d+) to 2\^(\d+)-1",
        lambda: (0, math.log2(models.MAX_SIZE + 1)),
        at_least=2,
    ),
    "timestamp years": Figure(
        README,
        r"years (\d+)(?: to |-)(\d+)",
        lambda: (models.MIN_YEAR, models.MAX_YEAR),
        at_least=2,
    ),
    "partition key value": Figure(
        README,
        r"Cosmos DB takes (\d+) KB per partition key value",
        lambda: (models.MAX_PARTITION_KEY_BYTES / 1024,),
    ),
    "partition key bytes": Figure(
        QUERIES,
        r"(?:([\d,]+) bytes in UTF-8|longer than any partition key \(([\d,]+) bytes\))",
        lambda: (models.MAX_PARTITION_KEY_BYTES,),
        at_least=2,
    ),
    "filter length": Figure(
        QUERIES,
        r"(?:\| `(?:registry|repository|tag|digest)` \| [^|]*?|A filter is )at most ([\d,]+)"
        r" characters",
        lambda: (queries.MAX_VALUE_CHARS,),
        at_least=5,
    ),
    "what the webhook stores today": Figure(
        QUERIES,
        r"\((\d+) for a repository, (\d+) for a tag\)",
        lambda: (models.MAX_REPOSITORY_LENGTH, models.MAX_TAG_LENGTH),
    ),
    "continuation token length": Figure(
        QUERIES,
        r"\(base64url\) and at most (\d+) characters",
        lambda: (queries.MAX_CONTINUATION_CHARS,),
    ),
    "local host limits": Figure(
        README,
        r"a listen backlog of (\d+), connections idle for (\d+) s closed",
        lambda: (ServerLimits().backlog, ServerLimits().idle_timeout_s),
    ),
    "Azure host body limit": Figure(
        DEPLOY,
        r"\| `FUNCTIONS_REQUEST_BODY_SIZE_LIMIT` \| `(\d+)` \((\d+) MiB, as the local host\)",
        lambda: (
            int(app_settings()["FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"]),
            ServerLimits().max_body_bytes / MIB,
        ),
    ),
    "local host body limit": Figure(
        README,
        r"(?:Bodies of|A body of) (\d+) MiB (?:or more|is refused here)",
        lambda: (ServerLimits().max_body_bytes / MIB,),
        at_least=2,
    ),
    # --- retry counts and intervals ----------------------------------------------------------
    "replay delays": Figure(
        README,
        r"doubles from (\d+) s up to (\d+) s \(`REPLAY_MAX_DELAY_SECONDS`\)",
        lambda: (REPLAY_FIRST_DELAY_S, DEFAULT_REPLAY_MAX_DELAY_S),
    ),
    "replay cap default": Figure(
        (*README, *OPERATIONS),
        r"(?:\| `REPLAY_MAX_DELAY_SECONDS` \| no \| `(\d+)`|`REPLAY_MAX_DELAY_SECONDS`, (\d+) by)",
        lambda: (DEFAULT_REPLAY_MAX_DELAY_S,),
        at_least=2,
    ),
    # "within about 70 s: the 60 s cap, the 2 s queue polling interval and the 5 s ...".
    "parked events stored after an outage": Figure(
        README,
        r"within about (\d+) s: the (\d+) s cap, the (\d+) s queue polling interval and the"
        r" (\d+) s",
        lambda: (
            DEFAULT_REPLAY_MAX_DELAY_S,
            host_json().max_polling_interval,
            UNAVAILABLE_MEMORY_S,
        ),
        lambda documented, parts: documented[1:] == parts and about(documented[0], sum(parts)),
    ),
    "poisoned after": Figure(
        (*README, *OPERATIONS),
        r"(?:after (\d+) tries\. A replay|cut off (\d+) times|replay failed (\d+) times"
        r"|when (\d+) replays of it)",
        lambda: (host_json().max_dequeue_count,),
        at_least=5,
    ),
    "no replay past the poisoning": Figure(
        README,
        r"without a (sixth) replay",
        lambda: (host_json().max_dequeue_count + 1,),
    ),
    "poison transactions": Figure(
        COST,
        r"Poison \((\d+) failed tries\) \| 0 \| (\d+) gets",
        lambda: (host_json().max_dequeue_count,) * 2,
    ),
    "reconcile throttled writes": Figure(
        DELIVERY,
        r"is tried again (a) second later, (\d+) times in all",
        lambda: (reconcile.THROTTLED_PAUSE_S, reconcile.THROTTLED_TRIES),
    ),
    "reconcile memory": Figure(
        (*DELIVERY, *COST),
        r"remembers (?:the last|up to) ([\d,]+) events",
        lambda: (reconcile.REMEMBERED_EVENTS,),
        at_least=2,
    ),
    "reconcile memory size": Figure(
        COST,
        r"remembers up to ([\d,]+) events it stored or found stored \(~(\d+) bytes each, (\d+) MB",
        lambda: (reconcile.REMEMBERED_EVENTS,),
        lambda documented, events: (
            documented[0] == events[0] and documented[0] * documented[1] == documented[2] * 10**6
        ),
    ),
    "ARM retries": Figure(
        (*DELIVERY, *COST),
        r"(?:is tried again, up to (\d+) times|`MANAGEMENT_TIMEOUTS`, (\d+) retries)",
        lambda: (acr_history.MANAGEMENT_TIMEOUTS["retry_total"],),
        at_least=2,
    ),
    "redrive tries": Figure(
        OPERATIONS,
        r"A failed call is tried (\d+) times, ~(\d+) and ~(\d+) s apart",
        lambda: (
            redrive.CLI_TIMEOUTS["retry_total"] + 1,
            # The n-th retry waits initial_backoff + increment_base**n (give or take the jitter).
            redrive.CLI_TIMEOUTS["initial_backoff"] + redrive.CLI_TIMEOUTS["increment_base"],
            redrive.CLI_TIMEOUTS["initial_backoff"] + redrive.CLI_TIMEOUTS["increment_base"] ** 2,
        ),
    ),
    "redrive timeouts": Figure(
        OPERATIONS,
        r"(\d+) s to connect and (\d+) s to answer",
        lambda: (redrive.CLI_TIMEOUTS["connection_timeout"], redrive.CLI_TIMEOUTS["read_timeout"]),
    ),
    "account refresh": Figure(
        COST,
        r"at most every (\d+) minutes",
        lambda: (cosmos_constants._Constants.DefaultEndpointsRefreshTime / 60_000,),
        at_least=2,
    ),
    # --- queue and lease settings ------------------------------------------------------------
    "redrive lease": Figure(
        OPERATIONS,
        r"(?:received for|again after) (\d+) s",
        lambda: (redrive.LEASE_SECONDS,),
        at_least=2,
    ),
    "local host lease": Figure(
        README, r"is hidden for (\d+) s here", lambda: (local_queues.LEASE_SECONDS,)
    ),
    "queue batch": Figure(
        (*README, *COST),
        r"(?:`batchSize` (\d+) plus|1 per batch of up to (\d+)\))",
        lambda: (host_json().batch_size,),
        at_least=2,
    ),
    "replay threads": Figure(
        README,
        r"runs (\d+) at a time on the worker's (\d+) threads",
        lambda: (function_app_concurrency(),) * 2,
    ),
    "queue polling": Figure(
        (*README, *COST),
        r"(?:`maxPollingInterval` \((\d+) s, host\.json\)|the (\d+) s queue polling interval)",
        lambda: (host_json().max_polling_interval,),
        at_least=2,
    ),
    "idle queue gets": Figure(
        COST,
        r"(?:about|up to) ~?([\d,]+) (?:queue )?gets (?:an hour|per)",
        lambda: (3600 / host_json().max_polling_interval,),
        at_least=3,
    ),
    # --- page limits -------------------------------------------------------------------------
    "page size": Figure(
        README,
        r"`limit` \(default (\d+), max (\d+)\)",
        lambda: (models.DEFAULT_LIMIT, queries.MAX_LIMIT),
    ),
    "page size parameter": Figure(
        QUERIES,
        r"per page, (\d+) to (\d+), default (\d+)",
        lambda: (1, queries.MAX_LIMIT, models.DEFAULT_LIMIT),
    ),
    "page size error": Figure(
        QUERIES, r"`limit: (must be a whole number from \d+ to \d+)`", lambda: (limit_error(),)
    ),
    "page queries": Figure(
        COST,
        r"`limit` up to (\d+), `view=pushes` up to (\d+) events",
        lambda: (queries.MAX_LIMIT, queries.PUSH_SCAN_BATCH),
    ),
    "pushes page": Figure(
        QUERIES, r"A page holds at most ([\d,]+) events", lambda: (queries.MAX_PUSH_SCAN,)
    ),
    "events at one timestamp": Figure(
        QUERIES,
        r"(?:at once, at most|with more than|until at most) ([\d,]+)\.? (?:A timestamp|matching"
        r" events|of them match)",
        lambda: (queries.MAX_TIED_EVENTS,),
        at_least=3,
    ),
    "push keys": Figure(QUERIES, r"with the same (five) keys", lambda: (len(queries.PUSH_KEY),)),
    "table digest": Figure(
        QUERIES, r"digest shortened to (\d+) hex digits", lambda: (cli.DIGEST_HEX_SHOWN,)
    ),
    # --- Bicep defaults ----------------------------------------------------------------------
    "reconcile schedule": Figure(
        README,
        r"\(`(0 \*/\d+ \* \* \* \*)`: every (\d+) minutes\)",
        lambda: (
            param(template("main.bicep"), "reconcileSchedule")["default"],
            reconcile_minutes(),
        ),
    ),
    "reconcile interval": Figure(
        (*README, *DELIVERY, *DEPLOY),
        r"(?:every (\d+) minutes (?:\(`RECONCILE_SCHEDULE`\)|by default)|history, every (\d+)"
        r" minutes|stores? (?:the|that) event (?:from this same history )?within (\d+) minutes)",
        lambda: (reconcile_minutes(),),
        at_least=5,
    ),
    "reconcile runs a day": Figure(
        COST, r"\*\*(\d+) runs a day\*\*", lambda: (24 * 60 // reconcile_minutes(),)
    ),
    "reconcile runs an hour": Figure(
        COST,
        r"(?:runs (\d+) times an hour|\| (\d+) runs: )",
        lambda: (60 // reconcile_minutes(),),
        at_least=2,
    ),
    "alert rules": Figure(
        (*README, *OPERATIONS, *DEPLOY),
        r"(?:deploys|the|all) (six) (?:log alert rules|below)",
        lambda: (len(alerts()),),
        at_least=3,
    ),
    "alert evaluation": Figure(
        (*OPERATIONS, *DEPLOY),
        r"evaluated every (\d+) minutes",
        lambda: (iso_minutes(rule()["properties"]["evaluationFrequency"]),),
        at_least=2,
    ),
    "event grid retries": Figure(
        DELIVERY,
        r"Event Grid's maximum, (\d+) hours and (\d+) attempts",
        lambda: (
            event_grid_retry()["eventTimeToLiveInMinutes"] / 60,
            event_grid_retry()["maxDeliveryAttempts"],
        ),
    ),
    # Every "N hours" of these docs is Event Grid's retry window, but the dead-letter location's.
    "event grid retry window": Figure(
        EVERY_DOC,
        r"(?<!unavailable for )\b(\d+) hours",
        lambda: (event_grid_retry()["eventTimeToLiveInMinutes"] / 60,),
        at_least=15,
    ),
    "event grid batch size": Figure(
        DELIVERY,
        r"the template sends (one) event per delivery",
        lambda: (event_grid_destination()["maxEventsPerBatch"],),
    ),
    "event grid batch kilobytes": Figure(
        DELIVERY,
        r"keep `preferredBatchSizeInKilobytes` at (\d+) or less",
        lambda: (event_grid_destination()["preferredBatchSizeInKilobytes"],),
        lambda documented, template_kb: template_kb[0] <= documented[0] < MAX_BODY_BYTES / 1024,
    ),
    "event grid types": Figure(
        DELIVERY,
        r"subscribes to the (four) ACR types",
        lambda: (len(event_subscription()["properties"]["filter"]["includedEventTypes"]),),
    ),
    "log retention": Figure(
        OPERATIONS,
        r"keeps all of it for (\d+) days \(`retentionInDays` in `infra/modules/monitoring\.bicep`:"
        r" (\d+) to (\d+) are allowed",
        lambda: log_retention(),
    ),
    "storage replication": Figure(
        OPERATIONS,
        r"\(`(Standard_\w+)` by default\)",
        lambda: (param(template("main.bicep"), "storageSkuName")["default"],),
    ),
    "dead letter soft delete": Figure(
        OPERATIONS,
        r"a deleted blob stays (\d+) days \(soft delete\)",
        lambda: (blob_service()["deleteRetentionPolicy"]["days"],),
    ),
    "worker threads": Figure(
        (*README, *DEPLOY),
        r"(?:\| `PYTHON_THREADPOOL_THREAD_COUNT` \| `(\d+)`|`HTTP_CONCURRENCY` in "
        r"`acr_webhook/config\.py`, (\d+)\)|at the deployed concurrency \((\d+)\))",
        lambda: (same(HTTP_CONCURRENCY, function_app_concurrency()),),
        at_least=3,
    ),
    # --- what else a figure stands for -------------------------------------------------------
    "sampling rates": Figure(
        (*README, *OPERATIONS, *COST),
        r"(?:about|~) ?(\d+) (?:per|a) second",
        lambda: (same(telemetry.ROUTINE_RECORDS_PER_SECOND, telemetry.DEPENDENCIES_PER_SECOND),),
        at_least=6,
    ),
    "repository partition": Figure(
        EVERY_DOC, r"\b(\d+) GB\b", lambda: (partition_gb(),), at_least=7
    ),
    "events a full partition holds": Figure(
        OPERATIONS,
        r"about (\d+) bytes, so a repository fills after about (\d+) million events \(one with"
        r" every text field at its widest, ~(\d+) KB: ([\d.]+) million\)",
        lambda: (partition_gb() * 1024**3,),
        lambda documented, partition: (
            round(partition[0] / documented[0] / 10**6) == documented[1]
            and round(partition[0] / (documented[2] * 1024) / 10**6, 1) == documented[3]
        ),
    ),
    "write request units": Figure(
        COST,
        r"\(under 1 KB, (\d+) indexed terms\) is expected at \*\*([\d.]+) RU\*\*",
        lambda: expected_write_ru(),
    ),
    "request units in the tables": Figure(
        COST,
        r"(?:create \(|\| )(\d+\.\d)(?: RU expected| \||(?= N \|)| \+ 409)",
        lambda: (expected_write_ru()[1],),
        at_least=5,
    ),
    "enrichment fields": Figure(
        README,
        r"(?:The last (five) are `null`|one of the last (five) fields)",
        lambda: (len(models.ENRICHMENT_FIELDS),),
        at_least=2,
    ),
    "public corpus": Figure(README, r"holds (\d+) payloads", lambda: (len(load_corpus()),)),
    "benchmark targets": Figure(
        README,
        r"within ([\d.]+)x of the fastest floor, ([\d.]+)x with telemetry on; throughput at"
        r" the deployed concurrency \(\d+\) at least ([\d.]+)x of the fastest floor; an Event"
        r" Grid batch of ([\d,]+) events stored in under (\d+) s; cold start \(new process to"
        r" the first answered event\) within ([\d.]+)x .*? at least ([\d.]+)x of the fastest"
        r" floor's",
        lambda: benchmark_targets(),
    ),
    "event grid batch target": Figure(
        DELIVERY,
        r"batch of ([\d,]+) within the (\d+) s target",
        lambda: benchmark_targets()[3:5],
    ),
}


def iso_minutes(duration: str) -> int:
    minutes = re.fullmatch(r"PT(\d+)M", duration)
    assert minutes, duration
    return int(minutes[1])


def log_retention() -> Figures:
    entry = param(template("modules/monitoring.bicep"), "retentionInDays")
    rules = {rule["type"]: rule["argument"] for rule in entry["decorators"]}
    return entry["default"], rules["min_value"], rules["max_value"]


def benchmark_targets() -> Figures:
    batch = {flag: default for flag, default, _, _ in bench_run.ROUNDS}["--batch"]
    return (
        bench_report.CPU_TARGET,
        bench_report.TELEMETRY_CPU_TARGET,
        bench_report.THROUGHPUT_TARGET,
        batch,
        bench_report.EVENTGRID_TARGET_S,
        bench_report.COLD_START_TARGET,
        bench_report.HTTP_TARGET,
    )


def documented(figure: Figure) -> list[tuple[str, Figures]]:
    """Each sentence the pattern finds, with its figures in the order of the pattern's groups
    (None: a group of another alternative)."""
    return [
        (match[0], tuple(None if group is None else read(group) for group in match.groups()))
        for name in figure.docs
        for match in re.finditer(figure.pattern, folded(DOCS[name]))
    ]


@pytest.mark.parametrize("name", FIGURES)
def test_each_documented_figure_is_the_value_it_describes(name: str) -> None:
    figure = FIGURES[name]
    sentences = documented(figure)
    assert len(sentences) >= figure.at_least, (
        f"{figure.docs}: {len(sentences)} sentence(s) for /{figure.pattern}/, "
        f"{figure.at_least} expected: reworded? then update this row"
    )
    source = figure.source()
    wrong = [sentence for sentence, figures in sentences if not figure.agrees(figures, source)]
    assert not wrong, f"the source has {source}, the docs say: {wrong}"


# --- ranges: what load_settings accepts, exactly --------------------------------------------


@pytest.mark.parametrize(
    ("setting", "pattern"),
    [
        (
            "REPLAY_MAX_DELAY_SECONDS",
            r"\| `REPLAY_MAX_DELAY_SECONDS` \|[^|]*\|[^|]*\|[^|]*\((\d+)-(\d+)\)",
        ),
        (
            "RETENTION_DAYS",
            r"\| `RETENTION_DAYS` \|[^|]*\|[^|]*\| Days a document is kept \((\d+)-(\d+)\)",
        ),
    ],
)
def test_a_documented_setting_range_is_the_one_the_app_accepts(setting: str, pattern: str) -> None:
    """README's settings table: the bounds load_settings takes, and not one more or less."""
    (bounds,) = re.findall(pattern, folded(DOCS["README.md"]))
    low, high = (int(bound) for bound in bounds)

    def accepted(value: int) -> bool:
        try:
            load_settings({"COSMOS_ENDPOINT": "https://127.0.0.1:1/", setting: str(value)})
        except ConfigurationError:
            return False
        return True

    assert [accepted(value) for value in (low - 1, low, high, high + 1)] == [
        False,
        True,
        True,
        False,
    ]


# --- two docs, one run: the README's summary of the last benchmark run ------------------------


def performance_targets() -> dict[str, dict[str, str]]:
    """performance.md's Targets table: its "What" -> column -> cell."""
    text = DOCS["docs/performance.md"].split("\n## Targets\n")[1].split("\n## ")[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]
    header, _, *body = rows
    return {row[0]: dict(zip(header, row, strict=True)) for row in body}


def ratio(cell: str) -> float:
    """``1.09x (1.04-1.11)`` -> 1.09; ``1.85 s`` -> 1.85."""
    return float(cell.split()[0].rstrip("x"))


def test_the_readme_gives_the_last_benchmark_runs_figures() -> None:
    """./scripts/bench rewrites performance.md; the README's summary of it is written by hand."""
    (summary,) = re.findall(
        r"The last run \((\d+) cores, in docs/performance\.md\) meets the Event Grid"
        r" \(([\d.]+) s\), cold-start \(([\d.]+)x\) and cold-start-with-telemetry"
        r" \(([\d.]+)x\) targets and misses the others: per-event CPU ([\d.]+)x \([^)]*\),"
        r" per-event CPU with telemetry ([\d.]+)x, throughput ([\d.]+)x of the sync floor but"
        r" ([\d.]+)x of the async one, ([\d.]+)x of the sync floor through the local host",
        folded(DOCS["README.md"]),
    )
    targets = performance_targets()
    cpu, telemetry_cpu, throughput, http, batch, cold, cold_telemetry = targets.values()
    fastest, sync = "Ratio vs fastest floor (range)", "Ratio vs sync tuned floor (range)"
    (cores,) = re.findall(r"\| Cores \| (\d+) \|", DOCS["docs/performance.md"])
    assert tuple(float(figure) for figure in summary) == (
        int(cores),
        ratio(batch["Measured"]),
        ratio(cold[fastest]),
        ratio(cold_telemetry[fastest]),
        ratio(cpu[fastest]),
        ratio(telemetry_cpu[fastest]),
        ratio(throughput[sync]),
        ratio(throughput[fastest]),
        ratio(http[sync]),
    )
    met = [batch, cold, cold_telemetry]
    assert [row["Result"] for row in targets.values() if row in met] == ["PASS"] * 3
    assert {row["Result"] for row in targets.values() if row not in met} == {"**MISS**"}


# --- field limits -----------------------------------------------------------------------------


def bounded_fields(model: type[BaseModel], prefix: str = "") -> dict[str, int]:
    """Every text field of ``model`` (and the models in it) with a longest length: path ->
    characters."""
    limits: dict[str, int] = {}
    for name, entry in model.model_fields.items():
        path = f"{prefix}{name}"
        for kind in (entry.annotation, *get_args(entry.annotation)):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                limits |= bounded_fields(kind, f"{path}.")
        constraints = [*entry.metadata]
        for kind in get_args(entry.annotation):
            constraints += get_args(kind)[1:]  # Annotated[str, StringConstraints(...)]
        for item in constraints:
            if getattr(item, "max_length", None):
                limits[path] = item.max_length
    return limits


# Fields the README's table names in words, and the one it may name by its CloudEvents name.
TABLE_WORDS = {"chart name": "target.name", "chart version": "target.version"}
TABLE_ALIASES = {"source": "topic"}


def readme_field_limits() -> dict[str, int]:
    """The README's field-limit table: field -> the most characters it states."""
    table = folded(DOCS["README.md"]).split("| Field | Limit | | --- | --- |")[1].split(" What ")[0]
    limits: dict[str, int] = {}
    for fields, limit in re.findall(r"\| ([^|]+) \| ([^|]+) \|", table):
        names = [TABLE_ALIASES.get(name, name) for name in re.findall(r"`([^`]+)`", fields)]
        names += [name for words, name in TABLE_WORDS.items() if words in fields]
        stated = re.search(r"(?:(?:at most|kept up to) |\d+-)(\d+) characters", limit)
        if stated:
            limits |= dict.fromkeys(names, int(stated[1]))
    return limits


def enforced_field_limits() -> dict[str, int]:
    """What the webhook and Event Grid routes refuse (400) past its length, or cut (useragent)."""
    enforced = bounded_fields(AcrEvent) | {"request.useragent": models.MAX_USER_AGENT_LENGTH}
    # An Event Grid event's topic (a CloudEvent's source), stored as registryResourceId.
    enforced["topic"] = models.MAX_RESOURCE_ID_LENGTH
    return enforced


def test_every_limit_the_readme_table_states_is_the_one_enforced() -> None:
    documented = readme_field_limits()
    assert len(documented) >= 10, documented
    assert documented.items() <= enforced_field_limits().items()


def test_the_readme_states_every_field_limit_the_app_enforces() -> None:
    enforced = enforced_field_limits()
    documented = readme_field_limits()
    assert {field: documented.get(field) for field in enforced} == enforced


# --- fallback.QUEUE_BUDGET_S: inside the documented answer --------------------------------


def test_the_write_bound_and_the_put_bound_fit_the_documented_answer() -> None:
    """README: "Every webhook answer comes within 4.5 s", the write's ~2 s then the put's
    bound, which fallback.py gives as "a second send included: one connection's wait and one
    answer's". The figures above add QUEUE_TIMEOUTS' waits, not the bound a put
    keeps to since it sends twice. Kills: QUEUE_BUDGET_S raised (+1 s: a 5.5 s answer) or set
    to less than one send's waits (max of them: 1.5 s)."""
    documented = re.search(r"Every webhook answer comes within ([\d.]+) s", DOCS["README.md"])
    assert documented is not None
    assert CLIENT_TIMEOUTS["timeout"] + QUEUE_BUDGET_S <= float(documented[1])
    assert QUEUE_WAITS["connection_timeout"] + QUEUE_WAITS["read_timeout"] == QUEUE_BUDGET_S
