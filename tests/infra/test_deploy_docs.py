"""docs/deploy.md and the README's Deploy section match the templates: every parameter with its
default and limits, every app setting, and how to read each function's own key."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.infra.bicep import (
    REPO_ROOT,
    Json,
    conditional_branches,
    module,
    not_empty,
    param,
    template,
    var,
)
from tests.infra.test_main_template import app_settings
from tests.infra.test_webhook_template import ACR_WEBHOOK, http_functions

DEPLOY = (REPO_ROOT / "docs" / "deploy.md").read_text()
README = (REPO_ROOT / "README.md").read_text()
DOCS = {path.name: path.read_text() for path in (REPO_ROOT / "docs").glob("*.md")} | {
    "README.md": README
}

# Decorators whose arguments the parameter tables state.
RULES = ("allowed", "min_length", "max_length", "min_value", "max_value")
# What a table's "N-M", "at least N" and "at most N" bound, by parameter type.
BOUNDS = {"string": ("min_length", "max_length"), "int": ("min_value", "max_value")}
# Defaults the Default column names in words; any other is one backticked Bicep literal.
DEFAULT_PHRASES: dict[str, Any] = {
    "empty": "",
    "the resource group's": {  # resourceGroup().location
        "function": {
            "type": "resource_group",
            "parameters": {"resource_group_name": None, "subscription_id": None},
            "property_name": "location",
        }
    },
}
ENUMERATION = re.compile(r"`[^`]+`(?:, `[^`]+`)* or `[^`]+`")


def section(text: str, heading: str) -> str:
    """From the heading line to the next heading of the same or a higher level (lines in code
    blocks are not headings)."""
    level = len(heading.split(" ", 1)[0])
    lines = text.splitlines()
    start = lines.index(heading)
    in_code = False
    for end in range(start + 1, len(lines)):
        line = lines[end]
        if line.startswith("```"):
            in_code = not in_code
        marks = line.split(" ", 1)[0]
        if not in_code and marks and set(marks) == {"#"} and len(marks) <= level:
            return "\n".join(lines[start:end])
    return "\n".join(lines[start:])


def table_names(text: str) -> set[str]:
    """Backticked names in the first column of the Markdown tables in ``text``; a cell may list
    several (``a`` / ``b``, ``a``, ``b``), and ``__x`` continues the name before it."""
    names: set[str] = set()
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        previous = ""
        for name in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if name.startswith("__"):
                name = previous.split("__")[0] + name
            names.add(name)
            previous = name
    return names


def parameter_rows(text: str) -> dict[str, tuple[str, str]]:
    """name -> (Default cell, Meaning cell) of the parameter tables in ``text``; a row for
    ``a`` / ``b`` gives each its own default (``x`` / ``y``)."""
    rows: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        names_cell, default_cell, meaning = (cell.strip() for cell in line.split("|")[1:-1])
        names = re.findall(r"`([^`]+)`", names_cell)
        defaults = default_cell.split(" / ") if len(names) > 1 else [default_cell]
        rows.update(
            (name, (default, meaning)) for name, default in zip(names, defaults, strict=True)
        )
    return rows


def literal(text: str) -> Any:
    """A backticked value as Bicep reads it: number, bool or JSON array, else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def documented_default(cell: str) -> Any:
    phrase = cell.split(" (")[0]  # "(...)" says what the default stands for
    if phrase in DEFAULT_PHRASES:
        return DEFAULT_PHRASES[phrase]
    value = re.fullmatch(r"`([^`]+)`", phrase)
    assert value, f"not a known phrase or one backticked literal: {cell}"
    return literal(value[1])


def documented_rules(meaning: str, parameter_type: str) -> Json:
    """The allowed values ("`a`, `b` or `c`") and bounds ("N-M", "at least N", "at most N") a
    Meaning cell states, as pycep names the decorators."""
    text = re.sub(r" \([^)]*\)", "", meaning)  # asides, e.g. what each allowed value does
    rules: Json = {}
    if enumeration := ENUMERATION.search(text):
        rules["allowed"] = [literal(value) for value in re.findall(r"`([^`]+)`", enumeration[0])]
    lower, upper = BOUNDS.get(parameter_type, ("", ""))
    if bounds := re.search(r"\b(\d+)-(\d+)\b", text):
        rules[lower], rules[upper] = int(bounds[1]), int(bounds[2])
    if at_least := re.search(r"at least (\d+)", text):
        rules[lower] = int(at_least[1])
    if at_most := re.search(r"at most (\d+)", text):
        rules[upper] = int(at_most[1])
    return rules


def declared_rules(entry: Json) -> Json:
    # Not decorators(): @secure() has no argument.
    return {rule["type"]: rule["argument"] for rule in entry["decorators"] if rule["type"] in RULES}


def documented_and_declared(table: str, document: Json) -> tuple[Json, Json]:
    """Per parameter of the table: {"default": ..., decorator: argument, ...} as the table
    states it and as the template declares it."""
    documented: Json = {}
    declared: Json = {}
    for name, (default_cell, meaning) in parameter_rows(table).items():
        entry = param(document, name)
        documented[name] = {
            "default": documented_default(default_cell),
            **documented_rules(meaning, entry["type"]),
        }
        declared[name] = {"default": entry["default"], **declared_rules(entry)}
    return documented, declared


def main_table() -> str:
    return section(DEPLOY, "### 2. Deploy the infrastructure")


def webhook_table() -> str:
    return section(DEPLOY, "### 4. Connect the registry").split("### Function keys")[0]


def test_every_main_parameter_is_documented() -> None:
    documented = table_names(main_table())
    declared = set(template("main.bicep")["parameters"])
    # environmentName is in the command itself.
    assert documented == declared - {"environmentName"}
    assert 'environmentName="$ENV_NAME"' in DEPLOY


def test_every_webhook_parameter_is_documented() -> None:
    connect = section(DEPLOY, "### 4. Connect the registry")
    documented = table_names(webhook_table())
    declared = set(template("webhook.bicep")["parameters"])
    in_the_command = {"functionAppName", "registryName", "registryResourceGroup"}
    assert documented == declared - in_the_command
    for name in in_the_command:
        assert f"{name}=" in connect


def test_main_parameter_defaults_and_limits_are_the_documented_ones() -> None:
    documented, declared = documented_and_declared(main_table(), template("main.bicep"))
    # The 32 regions are not copied into the table; Prerequisites point to the list.
    assert "the `@allowed` list in `infra/main.bicep`" in DEPLOY
    del declared["location"]["allowed"]
    assert documented == declared


def test_webhook_parameter_defaults_and_limits_are_the_documented_ones() -> None:
    documented, declared = documented_and_declared(webhook_table(), template("webhook.bicep"))
    # An empty webhookName means a derived one, so the module that creates the webhook
    # bounds the name, not webhook.bicep.
    declared["webhookName"].update(declared_rules(param(template(ACR_WEBHOOK), "webhookName")))
    assert documented == declared


def generated_when_empty(document: Json, variable: str, parameter: str) -> Any:
    """The generated value of ``variable = !empty(parameter) ? parameter : generated``."""
    branches = conditional_branches(var(document, variable))
    assert branches is not None
    condition, given, generated = branches
    assert condition == not_empty(parameter)
    assert given == parameter
    return generated


def test_generated_names_are_the_documented_ones() -> None:
    main, webhook = template("main.bicep"), template("webhook.bicep")
    assert parameter_rows(main_table())["functionAppName"][0] == "empty (`func-<token>`)"
    assert generated_when_empty(main, "appName", "functionAppName") == "func-${resourceToken}"
    assert module(main, "functionApp")["params"]["name"] == "appName"

    assert parameter_rows(webhook_table())["systemTopicName"][0] == "empty (`<registry>-events`)"
    topic = generated_when_empty(webhook, "effectiveSystemTopicName", "systemTopicName")
    assert topic == "${registryName}-events"
    event_grid = module(webhook, "acrEventGrid")["params"]
    assert event_grid["systemTopicName"] == "effectiveSystemTopicName"

    assert (
        "The Event Grid subscription is named `<app name>-eventgrid`, with the app name cut to"
        " its\nfirst 54 characters (Event Grid allows 64), `${APP:0:54}-eventgrid` in the"
        " commands below."
    ) in DEPLOY
    assert var(webhook, "eventSubscriptionName") == "${take(functionAppName, 54)}-eventgrid"
    # A command naming the subscription by the whole app name misses it for a 55-60 character one.
    named = re.findall(r'--name "([^"]*-eventgrid)"', DEPLOY)
    assert named and set(named) == {"${APP:0:54}-eventgrid"}
    assert event_grid["subscriptionName"] == "eventSubscriptionName"


def test_every_app_setting_is_documented() -> None:
    assert table_names(section(DEPLOY, "## App settings")) == set(app_settings())


def test_docs_say_how_to_read_each_functions_key() -> None:
    deploy_section = section(README, "## Deploy")
    for text in (DEPLOY, deploy_section):
        for function_name in http_functions().values():
            command = (
                'az functionapp function keys list --resource-group "$RG" --name "$APP" '
                f"--function-name {function_name}"
            )
            assert command in text, function_name
        assert "LOCAL_FUNCTION_KEY" in text  # the local host keeps one key for all
        assert "host key" in text  # ... and why the deployed app never hands it out


def test_deploy_order_is_infra_code_registry() -> None:
    for text in (DEPLOY, section(README, "## Deploy")):
        infra, code, registry = (
            text.index("--template-file infra/main.bicep"),
            text.index("func azure functionapp publish"),
            text.index("--template-file infra/webhook.bicep"),
        )
        assert infra < code < registry


def shell_commands(text: str) -> list[str]:
    """The commands in ``text``'s code blocks, a command's ``\\``-continued lines joined."""
    commands: list[str] = []
    in_code, pending = False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code, pending = not in_code, ""
            continue
        if not in_code:
            continue
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1]
        else:
            commands.append(pending)
            pending = ""
    return commands


def test_every_documented_deployment_of_main_keeps_the_registry() -> None:
    """The template owns the app settings and the registry role: a run of main.bicep without
    registryName switches the reconcile timer off, so no doc may show one (a key rotation's
    redeploy once did)."""
    runs = [
        (name, command)
        for name, text in DOCS.items()
        for command in shell_commands(text)
        if "--template-file infra/main.bicep" in command
    ]
    assert {name for name, _ in runs} >= {"README.md", "deploy.md", "operations.md"}
    for name, command in runs:
        for parameter in ("registryName=", "registryResourceGroup="):
            assert parameter in command, (name, command)


def test_no_doc_hands_out_the_host_key() -> None:
    """The host key opens every function; readers get the read endpoint's own key."""
    for name, text in DOCS.items():
        assert "functionKeys" not in text, name
        assert "az functionapp keys list" not in text, name
