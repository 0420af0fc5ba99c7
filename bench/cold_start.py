"""Cold start: a new Python process until its first answered webhook event, next to the floor.

Each run is a new interpreter (bench/cold_child.py) timed from the parent's spawn to the
child's answer, in a venv with the runtime requirements only (bench/runtime.py). App and floor
runs are interleaved, after one discarded warm-up of each (disk cache, .pyc files, the local
server's JIT), and reported as medians. ``python -X importtime`` runs of the same children
name the imports that make up the difference.

*app-telemetry* is the app run with APPLICATIONINSIGHTS_CONNECTION_STRING set, as deployed, its
ingestion endpoint a local sink (bench/sink.py) that accepts everything: whatever the app sets
up when that setting is present is part of its cold start (statsbeat off: see bench/sink.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from acr_webhook.config import Settings
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.repository import CLIENT_TIMEOUTS
from bench.runtime import Interpreter
from bench.sink import telemetry_sink
from bench.stats import Spread, median, spread
from tests.support import payloads
from tests.support.cosmos_server import REPO_ROOT

CHILD = Path(__file__).with_name("cold_child.py")
APP, APP_TELEMETRY, FLOOR = "app", "app-telemetry", "floor"
MODES = (APP, APP_TELEMETRY, FLOOR)
FLAGS = ("-X", "importtime")


@dataclass(frozen=True)
class ColdRun:
    """Seconds: from the parent's spawn to the answer, and its three phases."""

    total: float
    interpreter: float  # spawn → the child's first statement
    imports: float
    first_event: float  # settings, client, request, write, response
    cpu: float  # the child's CPU time (user + system) up to the answer: steadier when busy


@dataclass(frozen=True)
class ColdStartFigures:
    interpreter: str  # which venv the children ran in
    runs: dict[str, list[ColdRun]]

    def median(self, mode: str, phase: str = "total") -> float:
        return median([getattr(run, phase) for run in self.runs[mode]])

    def ratio(self, mode: str = APP, phase: str = "total") -> Spread:
        """``mode`` over floor, round by round (which cancels the drift other work on the
        machine causes between rounds): their median and range."""
        pairs = zip(self.runs[mode], self.runs[FLOOR], strict=True)
        return spread([getattr(app, phase) / getattr(floor, phase) for app, floor in pairs])


@dataclass(frozen=True)
class ImportOffender:
    """A module ``function_app`` imports and the floor never does."""

    module: str
    self_us: float
    cumulative_us: float
    via: str  # the app's own module (function_app, acr_webhook.*) that brought it in


@dataclass(frozen=True)
class ImportProfile:
    function_app_us: float  # ``import function_app``, cumulative
    app_total_us: float  # every import of the app's whole run (some happen in the first event)
    floor_total_us: float  # every import of the floor's whole run
    beyond_floor_us: float  # self time of the modules the floor does not import
    offenders: list[ImportOffender]  # the largest by self time


@dataclass(frozen=True)
class _Children:
    """How every cold child starts: interpreter, environment and working directory."""

    python: str
    settings: Settings
    env: dict[str, str]
    workdir: str
    telemetry_env: dict[str, str]  # added for app-telemetry


@contextmanager
def _children(settings: Settings, python: str) -> Iterator[_Children]:
    # Only the bench's settings: a developer's own (a webhook secret, a storage connection)
    # would change what the app does.
    app_settings = ("COSMOS_", "LOCAL_", "WEBHOOK_", "AzureWebJobs", "APPLICATIONINSIGHTS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(app_settings)}
    env["PYTHONPATH"] = str(REPO_ROOT)
    for name in ("endpoint", "key", "database", "container"):
        env[f"COSMOS_{name.upper()}"] = getattr(settings, f"cosmos_{name}") or ""
    # No local.settings.json there: the settings come from the environment, as when deployed.
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as workdir, telemetry_sink() as sink:
        # The exporters keep unsent telemetry under the temporary directory: this one, removed
        # with the rest, not one left in /tmp by every run.
        env["TMPDIR"] = workdir
        yield _Children(python, settings, env, workdir, sink.environment)


def _spawn(mode: str, children: _Children, *flags: str) -> tuple[ColdRun, str]:
    """One cold child of ``mode`` (one of MODES): its phases, and what it wrote to stderr."""
    env = children.env
    if mode != FLOOR:
        if mode == APP_TELEMETRY:
            env = {**env, **children.telemetry_env}
        spec: dict[str, Any] = {
            "url": "http://localhost/api/acr/webhook",
            "body": payloads.body(_push()).decode(),
        }
    else:
        settings = children.settings
        spec = {
            "endpoint": settings.cosmos_endpoint,
            "key": settings.cosmos_key,
            "database": settings.cosmos_database,
            "container": settings.cosmos_container,
            "client_options": {**CLIENT_TIMEOUTS, "no_response_on_write": True},
            "document": to_document(AcrEvent.model_validate(_push()), datetime.now(UTC)),
        }
    spawned = time.perf_counter()
    done = subprocess.run(
        [children.python, *flags, str(CHILD), APP if mode != FLOOR else FLOOR, json.dumps(spec)],
        cwd=children.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cold start ({mode}) failed:\n{done.stderr}")
    readings = json.loads(done.stdout.strip().splitlines()[-1])
    if readings["status"] != 201:
        raise RuntimeError(f"cold start ({mode}) answered {readings['status']}, not 201")
    run = ColdRun(
        total=readings["answered"] - spawned,
        interpreter=readings["started"] - spawned,
        imports=readings["imported"] - readings["started"],
        first_event=readings["answered"] - readings["imported"],
        cpu=readings["cpu"],
    )
    return run, done.stderr


def _push() -> dict[str, Any]:
    return payloads.with_new_id(payloads.PUSH)


def measure_cold_start(settings: Settings, interpreter: Interpreter, runs: int) -> ColdStartFigures:
    """``runs`` interleaved runs of each mode (rotating which goes first), after a warm-up."""
    results: dict[str, list[ColdRun]] = {mode: [] for mode in MODES}
    with _children(settings, interpreter.python) as children:
        for mode in MODES:
            _spawn(mode, children)
        for index in range(runs):
            shift = index % len(MODES)
            for mode in MODES[shift:] + MODES[:shift]:
                results[mode].append(_spawn(mode, children)[0])
    return ColdStartFigures(interpreter.description, results)


@dataclass(frozen=True)
class _Import:
    name: str
    depth: int
    self_us: int
    cumulative_us: int
    via: str = ""


def _parse_importtime(stderr: str) -> list[_Import]:
    """``-X importtime`` lines in order; a module's imports come right before it, one deeper."""
    imports = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        imports.append(_Import(name.strip(), depth, int(self_us), int(cumulative_us)))
    return _with_importers(imports)


def _is_app_module(name: str) -> bool:
    return name == "function_app" or name.startswith("acr_webhook")


def _with_importers(imports: list[_Import]) -> list[_Import]:
    """Each entry with ``via``: the nearest app module above it in the import tree."""
    parents: list[str] = []  # by depth, walking from the top-level imports down
    result = []
    for entry in reversed(imports):
        del parents[entry.depth :]
        via = next((name for name in reversed(parents) if _is_app_module(name)), "")
        result.append(dataclasses.replace(entry, via=via))
        parents.append(entry.name)
    return result[::-1]


def _tree(imports: list[_Import], root: str) -> list[_Import]:
    """The top-level import ``root`` and everything it imported."""
    end = next(i for i, entry in enumerate(imports) if entry.name == root and entry.depth == 0)
    start = end
    while start > 0 and imports[start - 1].depth > 0:
        start -= 1
    return imports[start : end + 1]


def _all_imports_us(runs: list[list[_Import]]) -> float:
    return median([sum(e.cumulative_us for e in run if e.depth == 0) for run in runs])


def profile_imports(
    settings: Settings, interpreter: Interpreter, repeats: int = 5, top: int = 12
) -> ImportProfile:
    """``-X importtime`` of whole app and floor cold starts (so imports made on first use count
    too), median of ``repeats`` each: the ``function_app`` import tree and what the floor
    imports during its whole run."""
    app_runs, floor_runs = [], []
    with _children(settings, interpreter.python) as children:
        for _ in range(repeats):
            app_runs.append(_parse_importtime(_spawn(APP, children, *FLAGS)[1]))
            floor_runs.append(_parse_importtime(_spawn(FLOOR, children, *FLAGS)[1]))
    trees = [{entry.name: entry for entry in _tree(run, "function_app")} for run in app_runs]
    floor_modules = {entry.name for run in floor_runs for entry in run}

    def med(module: str, field: str) -> float:
        return median([getattr(tree[module], field) for tree in trees if module in tree])

    def via(module: str) -> str:
        return next(tree[module].via for tree in trees if module in tree)

    offenders = [
        ImportOffender(name, med(name, "self_us"), med(name, "cumulative_us"), via(name))
        for name in set().union(*trees) - floor_modules
    ]
    offenders.sort(key=lambda offender: offender.self_us, reverse=True)
    return ImportProfile(
        function_app_us=med("function_app", "cumulative_us"),
        app_total_us=_all_imports_us(app_runs),
        floor_total_us=_all_imports_us(floor_runs),
        beyond_floor_us=sum(o.self_us for o in offenders),
        offenders=[o for o in offenders if o.module != "function_app"][:top],
    )
