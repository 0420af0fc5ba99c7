"""docs/deploy.md and the README's Deploy section match the templates: every parameter, every
app setting, and how to read each function's own key."""

from __future__ import annotations

import re

from tests.infra.bicep import REPO_ROOT, template
from tests.infra.test_main_template import app_settings
from tests.infra.test_webhook_template import http_functions

DEPLOY = (REPO_ROOT / "docs" / "deploy.md").read_text()
README = (REPO_ROOT / "README.md").read_text()


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


def test_every_main_parameter_is_documented() -> None:
    documented = table_names(section(DEPLOY, "### 2. Deploy the infrastructure"))
    declared = set(template("main.bicep")["parameters"])
    # environmentName is in the command itself.
    assert documented == declared - {"environmentName"}
    assert 'environmentName="$ENV_NAME"' in DEPLOY


def test_every_webhook_parameter_is_documented() -> None:
    connect = section(DEPLOY, "### 4. Connect the registry")
    documented = table_names(connect.split("### Function keys")[0])
    declared = set(template("webhook.bicep")["parameters"])
    in_the_command = {"functionAppName", "registryName", "registryResourceGroup"}
    assert documented == declared - in_the_command
    for name in in_the_command:
        assert f"{name}=" in connect


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
