"""The package's dependency rules, read from the source: every import counts, at module level,
under ``if TYPE_CHECKING:`` or inside a function.

- No import cycles.
- Handlers (bytes in, result out) depend on models, the store protocols, results and settings,
  and on no adapter nor any SDK.
- Adapters depend on models and the store protocols, never on a handler.
- The leaves (models, store, results, config) depend on nothing of the app but models.
- Nothing deployed imports the local stand-ins.
"""

from __future__ import annotations

import ast
import functools
import graphlib
from pathlib import Path

from tests.support.cosmos_server import REPO_ROOT

PACKAGE = "acr_webhook"
HANDLERS = {"handlers", "eventgrid", "queries", "reconcile", "replay", "erasure"}
ADAPTERS = {"repository", "fallback", "acr_history", "redrive"}
LEAVES = {"models": set(), "store": {"models"}, "results": set(), "config": set(), "once": set()}
# Entry points and the composition root, which may import anything deployed; and what the
# adapters and entry points share (credentials, TLS for loopback, telemetry, what a failed
# call says about its connection).
ENTRY_POINTS = {"function_app", "runtime", "__main__", "__init__"}
SHARED = {"identity", "tls", "telemetry", "connections"}
HANDLER_MAY_IMPORT = HANDLERS | {"models", "store", "results", "config"}
ADAPTER_MAY_IMPORT = {"models", "store", "config", "tls", "once", "identity", "connections"}
# Moving parked messages back reuses the fallback queue's client and message format, rather
# than a second copy of either.
ADAPTER_MAY_REUSE = {"redrive": {"fallback"}}
# Azure SDKs and HTTP stacks: a handler knows none of them (an adapter turns the SDK's errors
# into the store module's).
SDK_PACKAGES = ("azure", "requests", "urllib3", "aiohttp", "opentelemetry")


def module_files() -> dict[str, Path]:
    """Module name (``handlers``, ``local.host``, ``function_app``) -> source file."""
    files = {"function_app": REPO_ROOT / "function_app.py"}
    for path in sorted((REPO_ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(REPO_ROOT / PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts) or "__init__"] = path
    return files


@functools.cache  # each test reads the same files
def imports_of(path: Path) -> frozenset[str]:
    """Every module ``path`` imports, absolute, wherever the import statement stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import of {node.module}"
            found.add(node.module)
            # ``from acr_webhook import x`` may name a module x.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(found)


def app_dependencies() -> dict[str, set[str]]:
    """Module -> the app modules it imports."""
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {
            imported.removeprefix(f"{PACKAGE}.")
            for imported in imports_of(path)
            if imported.startswith(f"{PACKAGE}.")
            and imported.removeprefix(f"{PACKAGE}.") in modules
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """An import cycle, in import order (first module last again), or None."""
    try:
        # graphlib reads the graph as node -> its predecessors and reports the cycle that way.
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return list(reversed(error.args[1]))
    return None


def test_the_rules_know_every_module() -> None:
    """Each module in exactly one group: a new module is placed on purpose, not left unchecked."""
    groups = [HANDLERS, ADAPTERS, set(LEAVES), ENTRY_POINTS, SHARED]
    modules = set(app_dependencies())
    stand_ins = {name for name in modules if name.split(".")[0] == "local"}
    assert set().union(*groups, stand_ins) == modules
    assert sum(map(len, groups)) == len(set().union(*groups))


def test_there_are_no_import_cycles() -> None:
    assert find_cycle(app_dependencies()) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_handlers_depend_on_models_and_protocols_only() -> None:
    # Their SDK imports, their own and through what they import: the reach test below.
    graph = app_dependencies()
    for handler in HANDLERS:
        assert graph[handler] <= HANDLER_MAY_IMPORT, handler


def test_adapters_depend_on_models_and_protocols_not_on_handlers() -> None:
    graph = app_dependencies()
    for adapter in ADAPTERS:
        assert graph[adapter] <= ADAPTER_MAY_IMPORT | ADAPTER_MAY_REUSE.get(adapter, set()), adapter


def test_the_leaves_depend_on_nothing_above_them() -> None:
    graph = app_dependencies()
    for leaf, allowed in LEAVES.items():
        assert graph[leaf] <= allowed, leaf


def test_nothing_deployed_imports_the_local_stand_ins() -> None:
    # The CLI (__main__) runs `serve`; it is not part of what the Functions host loads.
    graph = app_dependencies()
    for name, imported in graph.items():
        if name.startswith("local") or name == "__main__":
            continue
        assert not {module for module in imported if module.startswith("local")}, name


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """``start`` and every app module it imports, directly or through others."""
    seen, waiting = {start}, [start]
    while waiting:
        for imported in graph[waiting.pop()] - seen:
            seen.add(imported)
            waiting.append(imported)
    return seen


# config reads endpoints with urllib3's URL parser, as the connection will (config._https_url):
# a parser, not the HTTP stack; nothing else of an SDK is within a handler's reach.
URL_PARSER = ("urllib3.util", "urllib3.exceptions")


def test_handlers_reach_no_sdk_through_the_modules_they_import() -> None:
    # The direct check above passes even if models or store imported an SDK (vulture, bandit,
    # pyright and import-linter were run on the package; import-linter's forbidden contracts
    # are transitive, and this is the one rule they found the direct checks leave open).
    graph, files = app_dependencies(), module_files()
    reached = set().union(*(reachable(graph, handler) for handler in HANDLERS))
    for module in reached:
        sdks = {
            imported
            for imported in imports_of(files[module])
            if imported.split(".")[0] in SDK_PACKAGES
            and not (module == "config" and imported.startswith(URL_PARSER))
        }
        assert sdks == set(), f"a handler reaches {sorted(sdks)} through {module}"


def test_what_the_functions_host_loads_reaches_no_local_stand_in() -> None:
    # function_app's whole reach: also closed to the stand-ins through __main__ (serve), which
    # the direct check above lets any module import.
    loaded = reachable(app_dependencies(), "function_app")
    assert {"runtime", "handlers", "repository"} <= loaded
    assert not {module for module in loaded if module.startswith("local")}
