"""Command line: ``python -m acr_webhook serve|provision|events|reconcile|redrive``."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import logging
import os
import re
import secrets
import signal
import sys
import threading
import time
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acr_webhook.config import ConfigurationError, Settings, load_settings
from acr_webhook.telemetry import quiet_sdk_loggers

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from acr_webhook.erasure import Erasure
    from acr_webhook.queries import PushPage
    from acr_webhook.store import RepositoryUnavailableError

# The status a shell gives a command that SIGPIPE ended (`seq 100000 | head -1`): what the
# commands return when the reader of their output has gone.
READER_GONE_STATUS = 128 + 13


class _TerminatedError(KeyboardInterrupt):
    """SIGTERM (a cancelled CI job) while a command changes the record: it stops as for
    Ctrl+C, says what it did, and is then ended by SIGTERM after all (143 in a shell)."""


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # called from a program's thread (tests): only the main thread may take signals
        return

    def stop(_signum: int, _frame: object) -> None:
        raise _TerminatedError

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve(args: argparse.Namespace) -> int:
    settings = load_settings()  # fail fast on a missing COSMOS_ENDPOINT, before listening
    from acr_webhook.local.host import CannotListenError, serve

    try:
        function_app = importlib.import_module(args.app)
    except ModuleNotFoundError as error:
        if error.name == args.app or args.app.startswith(f"{error.name}."):
            print(f"--app: {error}", file=sys.stderr)
        else:  # the module is there; something it imports is not (run scripts/bootstrap)
            print(f"--app {args.app}: importing it failed: {error}", file=sys.stderr)
        return 2
    if not hasattr(function_app, "app"):
        print(
            f"--app {args.app}: the module defines no `app` (an azure.functions.FunctionApp)",
            file=sys.stderr,
        )
        return 2
    key = settings.local_function_key or secrets.token_urlsafe(24)
    if not settings.local_function_key:
        print(f"LOCAL_FUNCTION_KEY is not set; generated key for this run: {key}", flush=True)
    try:
        serve(function_app.app, args.host, args.port, key)
    except CannotListenError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


def _port(value: str) -> int:
    """A TCP port for --port, 0 for any free one (the banner names it): socket.bind would take
    99999 as 34463 and 65536 as any port."""
    number = int(value)  # argparse turns the ValueError of "abc" into a usage error
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port from 0 to 65535")
    return number


def _provision(_args: argparse.Namespace) -> int:
    from azure.core.exceptions import AzureError

    from acr_webhook.repository import describe_error, provision, unavailable
    from acr_webhook.store import StoreSetUpError, error_line

    settings = load_settings()
    try:
        provision(settings)
    except AzureError as error:
        failure = unavailable(error)
        if isinstance(failure, StoreSetUpError):  # a key or a role: running again cannot help
            print(
                f"the event store at {settings.cosmos_endpoint}: {failure.cause}", file=sys.stderr
            )
            return 2
        # A server that is still starting, or a wrong endpoint: one line, no traceback.
        print(
            f"the event store at {settings.cosmos_endpoint} is unavailable or refused:",
            describe_error(error),
            file=sys.stderr,
        )
        return 1
    print(
        f"Database '{settings.cosmos_database}' and container '{settings.cosmos_container}' "
        f"are ready at {settings.cosmos_endpoint}",
        flush=True,
    )
    if settings.fallback_queue:
        from acr_webhook.fallback import provision_queue

        name = settings.fallback_queue.queue_name
        try:
            provision_queue(settings.fallback_queue)
        except (AzureError, ValueError) as error:
            # The database is what events need; without the queue the app answers 503
            # instead of 202 during an outage, so this is a warning, not a failure.
            print(
                f"warning: fallback queue '{name}' not created: {error_line(error)}",
                file=sys.stderr,
            )
        else:
            print(f"Fallback queues '{name}' and '{name}-poison' are ready", flush=True)
    return 0


TABLE_COLUMNS = ("timestamp", "action", "repository", "tag", "digest", "size", "registry")
DIGEST_HEX_SHOWN = 12  # like `docker images`: enough to tell digests apart at a glance


# Shown as U+FFFD in a table, as userAgent is stored: control characters (a newline forged a
# row, ESC sequences cleared the screen), line and paragraph separators, bidirectional
# overrides (they reorder what is shown) and lone surrogates. Versions before 3ccf54c stored
# ACR's text with any of them.
_NOT_SHOWN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def _cell(column: str, value: Any) -> str:
    if column == "tag" and value is None:
        return "<none>"  # pushed by digest; `docker images` shows untagged images the same way
    if value is None or value == "":
        return "-"
    if column == "digest" and isinstance(value, str) and ":" in value:
        algorithm, encoded = value.split(":", 1)
        value = f"{algorithm}:{encoded[:DIGEST_HEX_SHOWN]}"
    return _NOT_SHOWN.sub("\ufffd", str(value))


# Unicode categories a terminal draws on the character before: no column of their own.
_ZERO_WIDTH_MARKS = ("Mn", "Me")


def _columns_taken(cell: str) -> int:
    """How many terminal columns ``cell`` takes: a wide character (CJK in an actor's name;
    tags and repositories are ASCII) takes two, a non-spacing or enclosing mark none (Thai and
    Devanagari vowel signs among them, most of combining class 0), so that columns after it
    stay aligned."""
    return sum(
        0
        if unicodedata.category(char) in _ZERO_WIDTH_MARKS
        else 2
        if unicodedata.east_asian_width(char) in "WF"
        else 1
        for char in cell
    )


def _aligned(header: Sequence[str], rows: list[list[str]]) -> str:
    """Aligned columns under an upper-case header (no trailing spaces)."""
    rows = [[column.upper() for column in header], *rows]
    widths = [max(_columns_taken(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell + " " * (width - _columns_taken(cell))
            for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    )


def format_table(events: Sequence[Mapping[str, Any]]) -> str:
    """Events as aligned columns under an upper-case header (no trailing spaces)."""
    return _aligned(
        TABLE_COLUMNS,
        [[_cell(column, event.get(column)) for column in TABLE_COLUMNS] for event in events],
    )


PUSH_COLUMNS = (
    "timestamp",
    "action",
    "repository",
    "tag",
    "digest",
    "registry",
    "actor",
    "regions",
)


def _push_cell(column: str, push: Mapping[str, Any]) -> str:
    if column != "regions":
        return _cell(column, push.get(column))
    # Deliveries without a location (the webhook's) show as "?"; times are in --json.
    return _cell(column, ",".join(region["location"] or "?" for region in push["regions"]))


def format_pushes_table(pushes: Sequence[Mapping[str, Any]]) -> str:
    """One line per push: its first timestamp and the regions that reported it, in order."""
    return _aligned(
        PUSH_COLUMNS, [[_push_cell(column, push) for column in PUSH_COLUMNS] for push in pushes]
    )


def _print_pushes(page: PushPage, as_json: bool) -> int:
    from acr_webhook.queries import page_body

    if as_json:
        print(
            json.dumps(page_body("pushes", page.pushes, page.continuation, page.skipped), indent=2)
        )
        return 0
    print(format_pushes_table(page.pushes) if page.pushes else "No pushes.")
    if page.continuation:
        print(f"\nMore pushes: add --pushes --continuation {page.continuation}")
    return 0


def _events(args: argparse.Namespace) -> int:
    from acr_webhook.queries import (
        PARAMETERS,
        QueryError,
        fetch_page,
        fetch_pushes,
        page_body,
        parse_event_query,
    )
    from acr_webhook.repository import CosmosEventRepository
    from acr_webhook.store import RepositoryUnavailableError

    params = {
        name: value for name in PARAMETERS if (value := getattr(args, name, None)) is not None
    }
    # No stored name holds bytes that are not UTF-8 (see _as_typed): say so, not list nothing.
    for name, value in params.items():
        if not _is_text(value):
            print(f"--{name}: is not UTF-8 text: {os.fsencode(value)!r}", file=sys.stderr)
            return 2
    if args.pushes:
        params["view"] = "pushes"
    try:
        query = parse_event_query(params)  # before the settings: a typo needs no database
    except QueryError as error:
        for name, problem in error.problems:
            print(f"--{name}: {problem}", file=sys.stderr)
        return 2
    settings = load_settings()
    try:
        if args.pushes:
            pushes = fetch_pushes(query, CosmosEventRepository(settings))
        else:
            page = fetch_page(query, CosmosEventRepository(settings))
    except RepositoryUnavailableError as error:
        return _store_failed(settings, error)
    if args.pushes:
        return _print_pushes(pushes, as_json=args.json)
    if args.json:
        print(
            json.dumps(page_body("events", page.events, page.continuation, page.skipped), indent=2)
        )
        return 0
    print(format_table(page.events) if page.events else "No events.")
    if page.continuation:
        print(f"\nMore events: add --continuation {page.continuation}")
    return 0


def _add_events_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from acr_webhook.models import DEFAULT_LIMIT, RECORDED_ACTIONS
    from acr_webhook.queries import MAX_LIMIT

    events = commands.add_parser(
        "events",
        help="list recorded events, newest first, from the configured Cosmos DB",
        description="Filters are exact matches and combine with AND; --repository makes the "
        "query single-partition. Times are ISO 8601 (2024-05-01T12:00:00Z, a date, an offset) "
        "or a duration before now (PT1H, P7D). Parameters mirror GET /api/acr/events.",
    )
    events.add_argument("--registry", help="login server as recorded, e.g. myregistry.azurecr.io")
    events.add_argument("--repository", help="repository name, e.g. team/api")
    events.add_argument("--tag", help="tag, e.g. v1 (pushes by digest have no tag)")
    events.add_argument("--digest", help="full digest, e.g. sha256:<64 hex digits>")
    events.add_argument("--action", help=f"one of {', '.join(sorted(RECORDED_ACTIONS))}")
    events.add_argument("--since", help="events at or after this time")
    events.add_argument("--until", help="events before this time")
    events.add_argument("--limit", help=f"events per page, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT})")
    events.add_argument("--continuation", help="token printed by the previous page")
    events.add_argument("--json", action="store_true", help="print the documents as JSON")
    events.add_argument(
        "--pushes",
        action="store_true",
        help="one row per push (repository, digest, tag, action) with the time each "
        "geo-replica reported it; same as view=pushes",
    )
    events.set_defaults(run=_events)


def _store_missing(settings: Settings) -> str:
    """A setting, not an outage (exit 2): running again would find nothing either."""
    return (
        f"database '{settings.cosmos_database}' or container '{settings.cosmos_container}' "
        f"does not exist at {settings.cosmos_endpoint}: run provision, or check "
        "COSMOS_DATABASE and COSMOS_CONTAINER"
    )


def _store_failed(settings: Settings, error: RepositoryUnavailableError) -> int:
    """Says on stderr why the store could not be read; the exit status: 2 for a setting or a
    role, which running again would meet the same way, 1 for an outage."""
    from acr_webhook.store import StoreNotFoundError, StoreSetUpError

    if isinstance(error, StoreNotFoundError):
        print(_store_missing(settings), file=sys.stderr)
        return 2
    if isinstance(error, StoreSetUpError):
        print(f"the event store at {settings.cosmos_endpoint}: {error.cause}", file=sys.stderr)
        return 2
    print(f"the event store at {settings.cosmos_endpoint} is unavailable: {error}", file=sys.stderr)
    return 1


def _reconcile(args: argparse.Namespace) -> int:
    from acr_webhook.reconcile import (
        HistoryFileError,
        ReconcileCounts,
        read_history_file,
        reconcile_entries,
    )
    from acr_webhook.repository import CosmosEventRepository
    from acr_webhook.results import utc_now

    try:
        entries = read_history_file(Path(args.events_file))
    except HistoryFileError as error:
        print(str(error), file=sys.stderr)
        return 2
    settings = load_settings()
    # stderr is for the invalid entries (one line each) and problems; per-event decisions
    # (reconciled, fields filled in) stay quiet: the summary counts them.
    logging.getLogger("acr_webhook").setLevel(logging.WARNING)
    counts = ReconcileCounts()
    try:
        with _sigterm_stops():
            outcome = reconcile_entries(
                entries,
                CosmosEventRepository(settings),
                received_at=utc_now(),
                report_invalid=lambda entry: print(f"invalid {entry}", file=sys.stderr),
                counts=counts,
            )
    except KeyboardInterrupt:
        print(counts.summary())  # what it did before the stop, as the last line still
        raise
    if outcome.store_missing:
        print(f"stopped: {_store_missing(settings)}", file=sys.stderr)
    elif outcome.set_up is not None:  # a setting or a role: running again is refused the same
        print(
            f"stopped: the event store at {settings.cosmos_endpoint}: {outcome.set_up}",
            file=sys.stderr,
        )
    elif outcome.unavailable is not None:
        print(
            f"stopped: the event store at {settings.cosmos_endpoint} is unavailable "
            f"({outcome.unavailable}); run reconcile again when it is back",
            file=sys.stderr,
        )
    if outcome.unstored_reason is not None:
        print(
            f"{outcome.counts.unstored} event(s) not stored: {outcome.unstored_reason}; run "
            "reconcile again once there is room",
            file=sys.stderr,
        )
    print(outcome.counts.summary(), flush=True)
    if outcome.set_up is not None:
        return 2
    return 1 if outcome.unavailable is not None or outcome.unstored_reason is not None else 0


def _add_reconcile_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reconcile = commands.add_parser(
        "reconcile",
        help="store the events in ACR's webhook history that the record lacks",
        description="FILE is the output of `az acr webhook list-events --registry R --name W "
        "--output json`. Events already stored are counted 'already' (missing fields are "
        "filled in); ping and other actions 'skipped'; invalid entries are listed on stderr. "
        "Treat FILE as a secret: it holds the webhook URL with its ?code= and the headers.",
    )
    reconcile.add_argument("--events-file", required=True, metavar="FILE")
    reconcile.set_defaults(run=_reconcile)


# How many of the values that matched a client address the preview lists (one per port).
MATCHED_VALUES_SHOWN = 10


def _erase(args: argparse.Namespace) -> int:
    from acr_webhook.erasure import Erasure, by_repository, erase, find, matched_values
    from acr_webhook.models import Person
    from acr_webhook.repository import CosmosEventEraser
    from acr_webhook.store import RepositoryUnavailableError, StoreSetUpError

    # Stripped: a value pasted with a space around it found nothing, which read as "erased".
    option, person = (
        ("--actor", Person("actor", args.actor.strip()))
        if args.actor is not None
        else ("--client-address", Person("clientAddress", args.client_address.strip()))
    )
    if not person.value:
        print(f"{option}: is empty", file=sys.stderr)
        return 2
    if not _is_text(person.value):
        print(f"{option}: is not UTF-8 text: {os.fsencode(person.value)!r}", file=sys.stderr)
        return 2
    settings = load_settings()
    eraser = CosmosEventEraser(settings)
    try:
        found = find(eraser, person)
    except RepositoryUnavailableError as error:
        return _store_failed(settings, error)
    who = person.describe()
    searched = store_searched(settings)
    if not found:
        print(f"No events name {who}.")
        print(searched)
        return 0
    values = matched_values(found)
    # repr escapes every character a terminal would act on (controls, bidi overrides).
    shown = ", ".join(repr(value) for value in values[:MATCHED_VALUES_SHOWN])
    more = len(values) - MATCHED_VALUES_SHOWN
    print(
        f"{len(found)} event(s) name {who} (as recorded: {shown}"
        f"{f' and {more} more' if more > 0 else ''}):"
    )
    rows = [[_cell("repository", name), str(count)] for name, count in by_repository(found)]
    print(_aligned(("repository", "events"), rows))
    actors = {event.actor.lower() for event in found if event.actor}
    shared = person.field == "clientAddress" and len(actors) > 1
    if shared:
        # Not named: the other people's values are not this request's to show.
        print(
            f"They name {len(actors)} different actors: an address can be shared (a NAT, a "
            f"proxy, a build agent), and --yes --every-actor deletes all {len(found)} events, "
            "theirs too."
        )
    if not args.yes:
        print("Nothing deleted: run again with --yes to delete them.")
        print(searched)
        return 0
    if shared and not args.every_actor:
        # The warning above came in this very run: --yes alone was given without seeing it.
        print(
            "Nothing deleted: erase each person by --actor, or add --every-actor to delete "
            "them all.",
            file=sys.stderr,
        )
        return 2
    erasure = Erasure(found)
    try:
        with _sigterm_stops():
            erase(eraser, erasure)
    except KeyboardInterrupt:
        # The operator keeps the Deleted lines for the request's file: this run's count too.
        print(_deleted(erasure))
        print(
            f"stopped with {erasure.left} left (the delete it stopped in may have gone too): "
            "run erase again to delete the rest",
            file=sys.stderr,
        )
        raise
    print(_deleted(erasure))
    if erasure.stopped is not None:
        store = f"stopped with {erasure.left} left: the event store at {settings.cosmos_endpoint}"
        if isinstance(erasure.stopped, StoreSetUpError):  # refused the same way every time
            print(f"{store}: {erasure.stopped.cause}", file=sys.stderr)
            return 2
        print(
            f"{store} is unavailable: {erasure.stopped}; run erase again to delete the rest",
            file=sys.stderr,
        )
        return 1
    print(
        "Other copies (parked and poison messages, dead-letter blobs, the backup): see "
        '"Personal data" in docs/operations.md.'
    )
    print(searched)
    return 0


def store_searched(settings: Settings) -> str:
    """erase's last line in every answer to keep: "No events name ..." from the local server
    that local.settings.json names reads the same as the deployed account's."""
    return (
        f"Searched: {settings.cosmos_endpoint}, database {settings.cosmos_database!r}, "
        f"container {settings.cosmos_container!r}."
    )


def _deleted(erasure: Erasure) -> str:
    gone = f" ({erasure.gone} already gone)" if erasure.gone else ""
    return f"Deleted {erasure.deleted} of {len(erasure.found)}{gone}."


def _add_erase_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    erase = commands.add_parser(
        "erase",
        help="delete every recorded event that names one person",
        description="Finds every stored event whose actor, or whose client address, is the "
        "value given, in any case, in every repository, and says how many there are; "
        "with --yes, deletes them. A client address matches with any port after it as well, and "
        "an IP address in any written form. Other copies of the events are not here: "
        'see "Personal data" in docs/operations.md. Safe to run again.',
    )
    person = erase.add_mutually_exclusive_group(required=True)
    person.add_argument("--actor", help="user name, e-mail or principal, e.g. alice@contoso.com")
    person.add_argument(
        "--client-address", help="client IP address, with or without its port, e.g. 203.0.113.7"
    )
    erase.add_argument(
        "--yes", action="store_true", help="delete them (without it, nothing is deleted)"
    )
    erase.add_argument(
        "--every-actor",
        action="store_true",
        help="with --client-address --yes: delete its events even when they name several "
        "actors (an address shared behind a NAT, a proxy or a build agent)",
    )
    erase.set_defaults(run=_erase)


def _redrive(_args: argparse.Namespace) -> int:
    from azure.core.exceptions import AzureError

    from acr_webhook.config import STORAGE_CONNECTION, command_queue_settings
    from acr_webhook.redrive import LEASE_SECONDS, RedriveProgress, redrive
    from acr_webhook.store import first_line

    queue = command_queue_settings()
    if queue is None:
        raise ConfigurationError(
            f"{STORAGE_CONNECTION} is not set (environment or local.settings.json Values)"
        )
    poison = queue.poison.queue_name
    progress = RedriveProgress()
    moved = f"message(s) from '{poison}' to '{queue.queue_name}' for replay"
    try:
        with _sigterm_stops():
            report = redrive(queue, progress)
    except KeyboardInterrupt:
        print(f"Moved {progress.moved} {moved}")  # what it did before the stop
        raise
    except AzureError as error:
        # The SDK's message runs on with the service's XML: its first line says it.
        print(
            f"the queue service is unavailable or refused: {first_line(str(error))}",
            file=sys.stderr,
        )
        return 1
    except ValueError as error:  # the SDK refuses the connection string before any request
        raise ConfigurationError(f"{STORAGE_CONNECTION} is not usable: {error}") from None
    print(f"Moved {report.moved} {moved}")
    if report.not_events:
        print(f"{report.not_events} message(s) are not event documents; they stay in '{poison}'")
    print(f"Left in '{poison}': {report.left}")
    if report.unseen:
        print(
            f"{report.unseen} of them were hidden from this run (another redrive holds them, or"
            f" one stopped in the last {LEASE_SECONDS} s), or arrived since: run it again after"
            f" {LEASE_SECONDS} s"
        )
    return 0


def _as_typed(argument: str) -> str:
    """``argument`` as the operator typed it. In the C locale without UTF-8 mode Python reads
    the command line as ASCII and keeps every other byte as a lone surrogate, so
    ``--repository team/w\u00f6rld`` would match nothing; the bytes are UTF-8 on any current
    terminal, as stored names are. Bytes that are not UTF-8 stay as they came: a file name may
    be any bytes."""
    if not _is_text(argument):
        with contextlib.suppress(UnicodeDecodeError):
            return os.fsencode(argument).decode("utf-8")
    return argument


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _console_handler() -> logging.Handler:
    """Lines stamped in UTC, as ISO 8601 with a Z: stored timestamps, the read API and
    Application Insights are all UTC, and a local time without its offset cannot be compared
    with them."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    formatter.converter = time.gmtime
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03dZ"
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    return handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m acr_webhook",
        description="The acr-webhook app's commands: a local Functions host, provisioning, "
        "reading the record, reconciling ACR's delivery history, moving poison messages "
        "back for replay, and erasing one person's events. Settings come from the environment "
        "over local.settings.json.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve function_app.py's HTTP functions locally and run its queue and timer triggers",
        description="A local stand-in for the Azure Functions host. Function keys: "
        "LOCAL_FUNCTION_KEY (generated and printed when unset). Settings come from the "
        "environment over local.settings.json in the current directory.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    serve.add_argument(
        "--port",
        type=_port,
        default=7071,
        help="port to listen on, 0-65535, 0 for any free port (%(default)s)",
    )
    serve.add_argument(
        "--app", default="function_app", help="module that defines `app` (%(default)s)"
    )
    serve.set_defaults(run=_serve)
    provision = commands.add_parser(
        "provision",
        help="create the database, the container and the fallback queues",
        description="Creates, if missing, the Cosmos DB database and container, and, when "
        "AzureWebJobsStorage is set, the fallback queue acr-events-fallback and its poison "
        "queue acr-events-fallback-poison. With RETENTION_DAYS set, sets it as the container's "
        "default time-to-live, on a container it finds too (documents older than that expire). "
        "Safe to run again.",
    )
    provision.set_defaults(run=_provision)
    redrive = commands.add_parser(
        "redrive",
        help="move poison messages back to the fallback queue for replay",
        description="Moves every parked event from acr-events-fallback-poison back to "
        "acr-events-fallback, where the queue trigger replays it; messages that are not "
        "events stay. Safe to run again. Needs AzureWebJobsStorage (or its __queueServiceUri "
        "or __accountName form).",
    )
    redrive.set_defaults(run=_redrive)
    _add_events_parser(commands)
    _add_reconcile_parser(commands)
    _add_erase_parser(commands)
    arguments = sys.argv[1:] if argv is None else argv
    args = parser.parse_args([_as_typed(argument) for argument in arguments])

    if sys.stdout is None:  # started with it closed (`>&-`): a listing would vanish unseen
        print("standard output is closed", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, handlers=[_console_handler()])
    quiet_sdk_loggers()  # the console shows this app's decisions, not each HTTP request
    shown = sys.stdout
    sys.stdout = _checked_output(shown, keep_serving=args.command == "serve")
    try:
        status = int(args.run(args))
        sys.stdout.flush()  # here, not at exit, where a full disk would be a traceback
        return status
    except ConfigurationError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except _TerminatedError:
        with contextlib.suppress(_ReaderGoneError, OutputError):
            sys.stdout.flush()  # what it did, before the signal ends the process unflushed
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return 128 + signal.SIGTERM  # in case the signal is not delivered at once
    except KeyboardInterrupt:
        # Ctrl+C while a command waits (provision, events, ...): stopped, not a crash.
        print("interrupted", file=sys.stderr)
        return 130
    except _ReaderGoneError:
        return READER_GONE_STATUS  # quietly, as `seq 100000 | head -1`
    except OutputError as error:
        print(f"cannot write the output: {error}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(_ReaderGoneError, OutputError):
            sys.stdout.flush()  # what an error left unwritten, in its place before the message
        sys.stdout = shown


class OutputError(Exception):
    """Standard output could not be written: a full disk, a descriptor closed under it."""


class _ReaderGoneError(Exception):
    """The reader of standard output went away (``| head -1`` has its line)."""


class _CheckedWrites(io.RawIOBase):
    """Standard output's descriptor, whose failed writes are told apart from every other
    OSError (requests' connection errors are OSErrors too): the first raises _ReaderGoneError or
    OutputError, and what follows is dropped, so no flush at exit prints a traceback. With
    ``keep_serving``, nothing raises: a host goes on serving when `serve | grep -m1` has the
    line it waited for."""

    def __init__(self, descriptor: int, keep_serving: bool) -> None:
        super().__init__()
        self._descriptor = descriptor
        self._keep_serving = keep_serving
        self._failed = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._descriptor

    def write(self, data: ReadableBuffer) -> int:
        size = memoryview(data).nbytes
        if self._failed:
            return size
        try:
            return os.write(self._descriptor, data)
        except OSError as error:
            self._failed = True
            if self._keep_serving:
                return size
            if isinstance(error, BrokenPipeError):
                raise _ReaderGoneError from None
            raise OutputError(error.strerror or str(error)) from None


def _checked_output(shown: Any, keep_serving: bool) -> Any:
    """``shown`` (sys.stdout) writing through _CheckedWrites, with the same encoding and
    buffering; what is no real descriptor (a test's capture) is kept as it is. A console that
    cannot show a stored name (the C locale, a Windows pipe) shows it escaped, as stderr
    does: "w\\xf6rld", not a UnicodeEncodeError."""
    if not isinstance(shown, io.TextIOWrapper):
        return shown
    try:
        descriptor = shown.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        shown.reconfigure(errors="backslashreplace")
        return shown
    shown.flush()
    return io.TextIOWrapper(
        io.BufferedWriter(_CheckedWrites(descriptor, keep_serving)),
        encoding=shown.encoding,
        errors="backslashreplace",
        line_buffering=shown.line_buffering,
    )


if __name__ == "__main__":
    sys.exit(main())
