"""Adding an app setting, followed on 2026-12-07: a new ``values.get("EVENTS_PAGE_DEFAULT")``
in config.py, with nothing else changed, passed every unit and infra test. The checks that
exist go from the Bicep template to docs/deploy.md (tests/infra/test_deploy_docs.py), so a
setting the code reads but the template does not set was documented nowhere and nothing said
so. This starts from the code: every setting the deployed app reads has a row in README's
Configuration table, and the table names nothing else."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.infra.test_deploy_docs import README, section, table_names
from tests.support.cosmos_server import REPO_ROOT

SETTING = re.compile(r"[A-Z][A-Z0-9_]+")
NAMING_A_SETTING = ("_SETTING", "_CONNECTION")


def module_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    found[target.id] = node.value.value
    return found


def settings_read(path: Path) -> set[str]:
    """The names ``values.get(...)`` reads in ``path`` (``values``: read_values' merge of the
    environment and local.settings.json), literal or through a module constant, and the
    module constants that name a setting (``*_SETTING``, ``*_CONNECTION``: the timer's
    schedule, read by the host as %NAME%; the storage connection's prefix)."""
    tree = ast.parse(path.read_text(), str(path))
    constants = module_constants(tree)
    names = {value for name, value in constants.items() if name.endswith(NAMING_A_SETTING)}
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "values"
            and node.args
        ):
            continue
        argument = node.args[0]
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            names.add(argument.value)
        elif isinstance(argument, ast.Name) and argument.id in constants:
            names.add(constants[argument.id])
    return {name for name in names if SETTING.fullmatch(name) or name in constants.values()}


def deployed_settings() -> set[str]:
    """What the deployed code reads: acr_webhook but its local stand-ins."""
    names: set[str] = set()
    for path in sorted((REPO_ROOT / "acr_webhook").rglob("*.py")):
        if "local" not in path.relative_to(REPO_ROOT / "acr_webhook").parts:
            names |= settings_read(path)
    return names


def test_the_finder_sees_settings_read_every_way_the_code_reads_them() -> None:
    """Control: a literal (config), a module constant (telemetry's connection string), another
    module (telemetry's AZURE_CLIENT_ID), the timer's schedule and the storage connection."""
    assert {
        "COSMOS_ENDPOINT",
        "REPLAY_MAX_DELAY_SECONDS",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "AZURE_CLIENT_ID",
        "RECONCILE_SCHEDULE",
        "AzureWebJobsStorage",
    } <= deployed_settings()


def test_every_setting_the_app_reads_has_a_row_in_the_readme() -> None:
    documented = table_names(section(README, "## Configuration"))
    missing = deployed_settings() - documented
    assert not missing, (
        f"{sorted(missing)}: read by the app, not in README's Configuration table; add a row "
        "(and when Azure needs it: an app setting in infra/modules/function-app.bicep, which "
        "tests/infra/test_deploy_docs.py then wants in docs/deploy.md's App settings)"
    )


def test_every_setting_in_the_readme_is_one_the_app_reads() -> None:
    """The other way: a setting removed from the code leaves no row promising it."""
    documented = table_names(section(README, "## Configuration"))
    assert not documented - deployed_settings(), "in README's Configuration table, read by none"
