"""Cold start: a new Python process until its first answered webhook event, next to the floor.

Each run is a new interpreter (bench/cold_child.py) timed from the parent's spawn to the
child's answer. App, floor and ``python -m acr_webhook serve`` runs are interleaved, after one
discarded warm-up of each (disk cache, .pyc files, the local server's JIT), and reported as
medians. ``python -X importtime`` runs name the imports that make up the difference.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from acr_webhook.config import Settings
from acr_webhook.models import AcrEvent, to_document
from acr_webhook.repository import CLIENT_TIMEOUTS
from bench.stats import median
from tests.support import payloads
from tests.support.cosmos_server import REPO_ROOT
from tests.support.serve import ServeProcess

CHILD = Path(__file__).with_name("cold_child.py")
MODES = ("app", "floor", "serve")
FLAGS = ("-X", "importtime")


@dataclass(frozen=True)
class ColdRun:
    """Seconds from the parent's spawn; the phases are None where they cannot be seen."""

    total: float
    interpreter: float | None = None
    imports: float | None = None
    first_event: float | None = None


@dataclass(frozen=True)
class ColdStartFigures:
    runs: dict[str, list[ColdRun]]

    def median(self, mode: str, phase: str = "total") -> float | None:
        values = [getattr(run, phase) for run in self.runs[mode]]
        return median(values) if None not in values else None


@dataclass(frozen=True)
class ImportOffender:
    module: str
    self_us: float
    cumulative_us: float
    in_floor: bool


@dataclass(frozen=True)
class ImportProfile:
    app_total_us: float
    floor_total_us: float
    beyond_floor_us: float  # self time of the modules the floor does not import
    offenders: list[ImportOffender]


def _child_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COSMOS_", "LOCAL_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    for name in ("endpoint", "key", "database", "container"):
        env[f"COSMOS_{name.upper()}"] = getattr(settings, f"cosmos_{name}") or ""
    return env


def _push() -> dict[str, Any]:
    return payloads.with_new_id(payloads.PUSH)


def _spawn(
    mode: str, settings: Settings, env: dict[str, str], workdir: str, *flags: str
) -> tuple[ColdRun, str]:
    """One cold child of ``mode`` ("app" or "floor"): its phases, and what it wrote to stderr."""
    if mode == "app":
        spec: dict[str, Any] = {
            "url": "http://localhost/api/acr/webhook",
            "body": payloads.body(_push()).decode(),
        }
    else:
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
        [sys.executable, *flags, str(CHILD), mode, json.dumps(spec)],
        cwd=workdir,
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
    )
    return run, done.stderr


def _serve_run(settings: Settings, env: dict[str, str], workdir: str) -> ColdRun:
    spawned = time.perf_counter()
    served = ServeProcess(settings, Path(workdir), function_key="bench-key")
    try:
        connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
        connection.request(
            "POST",
            "/api/acr/webhook?code=bench-key",
            body=payloads.body(_push()),
            headers={"Content-Type": "application/json"},
        )
        status = connection.getresponse().status
        answered = time.perf_counter()
        connection.close()
    finally:
        served.stop()
    if status != 201:
        raise RuntimeError(f"cold start (serve) answered {status}, not 201")
    return ColdRun(total=answered - spawned)


def _run(mode: str, settings: Settings, env: dict[str, str], workdir: str) -> ColdRun:
    if mode == "serve":
        return _serve_run(settings, env, workdir)
    return _spawn(mode, settings, env, workdir)[0]


def measure_cold_start(settings: Settings, runs: int) -> ColdStartFigures:
    """``runs`` interleaved runs of each mode (rotating which goes first), after a warm-up."""
    env = _child_env(settings)
    results: dict[str, list[ColdRun]] = {mode: [] for mode in MODES}
    # No local.settings.json there: the settings come from the environment, as when deployed.
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as workdir:
        for mode in MODES:
            _run(mode, settings, env, workdir)
        for index in range(runs):
            shift = index % len(MODES)
            for mode in MODES[shift:] + MODES[:shift]:
                results[mode].append(_run(mode, settings, env, workdir))
    return ColdStartFigures(results)


@dataclass(frozen=True)
class _Import:
    name: str
    depth: int
    self_us: int
    cumulative_us: int


def _parse_importtime(stderr: str) -> list[_Import]:
    """``-X importtime`` lines in order; a module's imports come right before it, one deeper."""
    imports = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        imports.append(_Import(name.strip(), depth, int(self_us), int(cumulative_us)))
    return imports


def _tree(imports: list[_Import], root: str) -> list[_Import]:
    """The top-level import ``root`` and everything it imported."""
    end = next(i for i, entry in enumerate(imports) if entry.name == root and entry.depth == 0)
    start = end
    while start > 0 and imports[start - 1].depth > 0:
        start -= 1
    return imports[start : end + 1]


def profile_imports(settings: Settings, repeats: int = 5, top: int = 12) -> ImportProfile:
    """``-X importtime`` of whole app and floor cold starts (so imports made on first use count
    too), median of ``repeats`` each: the ``function_app`` import tree and what the floor
    imports during its whole run."""
    env = _child_env(settings)
    with tempfile.TemporaryDirectory(prefix="bench-imports-") as workdir:
        app_runs, floor_runs = [], []
        for _ in range(repeats):
            app_runs.append(_parse_importtime(_spawn("app", settings, env, workdir, *FLAGS)[1]))
            floor_runs.append(_parse_importtime(_spawn("floor", settings, env, workdir, *FLAGS)[1]))
    trees = [{entry.name: entry for entry in _tree(run, "function_app")} for run in app_runs]
    floor_modules = {entry.name for run in floor_runs for entry in run}

    def med(module: str, field: str) -> float:
        return median([getattr(tree[module], field) for tree in trees if module in tree])

    offenders = [
        ImportOffender(
            name, med(name, "self_us"), med(name, "cumulative_us"), name in floor_modules
        )
        for name in set().union(*trees)
    ]
    offenders.sort(key=lambda offender: offender.self_us, reverse=True)
    return ImportProfile(
        app_total_us=med("function_app", "cumulative_us"),
        floor_total_us=median(
            [sum(e.cumulative_us for e in run if e.depth == 0) for run in floor_runs]
        ),
        beyond_floor_us=sum(o.self_us for o in offenders if not o.in_floor),
        offenders=offenders[:top],
    )
