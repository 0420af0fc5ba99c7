"""What ships: the zip `func azure functionapp publish --python --build remote` (docs/deploy.md)
and `azd deploy` (azure.yaml) upload to the Flex Consumption app, worked out from each tool's
own rules (tests/support/publish.py: neither tool can run here), and what the remote build and
the host make of it.

Sources: Azure/azure-functions-core-tools src/Cli/func/Common/GitIgnoreParser.cs,
FileSystemHelpers.GetLocalFiles, Helpers/ZipHelper.cs and PythonHelpers.cs; Azure/azure-dev
cli/azd/pkg/project/project_utils.go (createDeployableZip) and service_target.go (IgnoreFile);
https://learn.microsoft.com/azure/developer/azure-developer-cli/service-packaging-ignore-files;
https://learn.microsoft.com/azure/azure-functions/python-build-options (remote build installs
requirements.txt into .python_packages/lib/site-packages on the app's own Python).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Callable
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest

from scripts import lock
from tests.infra.test_main_template import function_app
from tests.support.cosmos_server import REPO_ROOT
from tests.support.publish import azd_ships, core_tools_ships, funcignore_patterns
from tests.support.repository import tracked_files
from tests.unit.test_dependencies import deployed_imports, pinned_runtime

Ships = Callable[[list[str], str | None], list[str]]
TOOLS: dict[str, Ships] = {"func-publish": core_tools_ships, "azd-deploy": azd_ships}


def funcignore() -> str:
    return (REPO_ROOT / ".funcignore").read_text()


def the_app() -> set[str]:
    """What the Functions host loads: the entry point, host.json, the package but its local
    stand-ins, and requirements.txt for the remote build."""
    package = {
        path
        for path in tracked_files()
        if path.startswith("acr_webhook/") and not path.startswith("acr_webhook/local/")
    }
    return {"function_app.py", "host.json", "requirements.txt", *package}


# A developer's checkout after scripts/bootstrap, scripts/dev, the tests and an azd environment:
# each line of .gitignore, where it appears.
LOCAL_FILES = {
    ".venv/": [".venv/pyvenv.cfg", ".venv/lib/python3.11/site-packages/pytest/__init__.py"],
    "node_modules/": ["node_modules/azurite/package.json", "node_modules/.bin/azurite"],
    "__pycache__/": [
        "__pycache__/function_app.cpython-311.pyc",
        "acr_webhook/__pycache__/config.cpython-311.pyc",
        "acr_webhook/local/__pycache__/host.cpython-311.pyc",
        "tests/__pycache__/conftest.cpython-311-pytest-8.4.2.pyc",
    ],
    "*.pyc": ["acr_webhook/__pycache__/models.cpython-311.pyc"],
    ".pytest_cache/": [".pytest_cache/v/cache/nodeids"],
    ".mypy_cache/": [".mypy_cache/3.11/function_app.data.json"],
    ".ruff_cache/": [".ruff_cache/CACHEDIR.TAG"],
    ".hypothesis/": [".hypothesis/examples/0a1b2c/3d4e5f"],
    "local.settings.json": ["local.settings.json"],
    ".python_packages/": [".python_packages/lib/site-packages/pydantic_core/_pydantic_core.so"],
    ".azure/": [".azure/dev/.env", ".azure/config.json"],
    "*.egg-info/": ["acr_webhook.egg-info/PKG-INFO"],
    ".local/": [".local/state.json"],
    ".env": [".env"],
    ".env.*": [".env.local"],
    "__azurite_db_*.json": ["__azurite_db_queue__.json", "__azurite_db_queue_extent__.json"],
    "__blobstorage__/": ["__blobstorage__/0a1b2c3d"],
    "__queuestorage__/": ["__queuestorage__/0a1b2c3d"],
}
EDITOR_AND_GIT = [".vscode/settings.json", ".git/config", ".git/objects/pack/pack-1.pack"]


def local_cases() -> list[Any]:
    cases = []
    for tool in TOOLS:
        for path in sorted(
            {p for paths in LOCAL_FILES.values() for p in paths} | set(EDITOR_AND_GIT)
        ):
            cases.append(pytest.param(tool, path, id=f"{tool}:{path}"))
    return cases


def test_every_gitignore_line_has_a_local_file_here() -> None:
    """A new line in .gitignore (something a developer's machine has) gets its case below."""
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sorted(lines) == sorted(LOCAL_FILES)


@pytest.mark.parametrize(("tool", "path"), local_cases())
def test_a_local_file_does_not_ship(tool: str, path: str) -> None:
    """Caches, environments, the stand-ins' Node packages, editors' and git's folders, azd's
    environment (WEBHOOK_SECRET in .azure/<env>/.env) and other secrets stay home."""
    assert path not in TOOLS[tool]([*tracked_files(), path], funcignore())


@pytest.mark.parametrize("tool", TOOLS)
def test_a_fresh_clone_ships_the_app_and_nothing_else(tool: str) -> None:
    """No tests or fakes, bench/, scripts/, docs/, infra/, README, the local stand-ins
    (acr_webhook/local), the Node packages' manifests or local.settings.sample.json: the
    entry point, host.json, requirements.txt and acr_webhook's 21 deployed modules."""
    shipped = TOOLS[tool](list(tracked_files()), funcignore())
    assert set(shipped) == the_app()
    assert not [p for p in shipped if p.startswith(("tests/", "acr_webhook/local/"))]


def test_funcignore_uses_only_syntax_both_tools_read_alike() -> None:
    """Core Tools does not implement git's matcher (a leading `/`, a trailing `/`, `!` and
    `*` differ from azd's go-gitignore): tests/support/publish.py reproduces the rest, and
    refuses those."""
    assert funcignore_patterns(funcignore())


def test_the_core_tools_matcher_agrees_with_core_tools_own_tests() -> None:
    """The cases of test/Cli/Func.UnitTests/ParserTests/GitIgnoreParserTests.cs that use the
    syntax reproduced (its `!` and leading `/` lines left out)."""
    upstream = (
        "node_modules\n*.log\nnonexistent\nfoo/*.wat\ntest2\nothernonexistent/**/what\n*.swp\n"
    )
    accepted = ["test/index.js", "wat/test/index.js", "test1File.wat"]
    denied = ["test2", "test.swp", "node_modules/what.js", "foo/bar.wat", "nonexistent/bar"]
    denied += ["othernonexistent/blah/what"]
    assert core_tools_ships([*accepted, *denied], upstream) == accepted


# --- the app as the host imports it: the shipped files on requirements.txt alone -----------


def runtime_distributions() -> set[str]:
    """requirements.txt's pins and everything they require, as pip installs them here."""
    return set(lock.runtime_closure())


def files_of(names: set[str]) -> list[str]:
    located = []
    for name in sorted(names):
        found = distribution(name)
        located += [str(Path(str(found.locate_file(file))).resolve()) for file in found.files or ()]
    return located


PROBE = r"""
import importlib, importlib.abc, importlib.machinery, json, sys
allowed = set(json.load(open(sys.argv[1])))
site = tuple(json.load(open(sys.argv[2])))

class OnlyRequirements(importlib.abc.MetaPathFinder):
    # The remote build installs requirements.txt and what it requires, nothing else.
    def find_spec(self, name, path, target=None):
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        origin = getattr(spec, "origin", None)
        if origin and origin.startswith(site) and origin not in allowed:
            raise ModuleNotFoundError(f"No module named {name!r} in the remote build", name=name)
        return None

sys.meta_path.insert(0, OnlyRequirements())
import function_app
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("acr_webhook", "function_app"))
for name in json.load(open(sys.argv[3])):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name or "." not in name:
            raise
        parent, _, attribute = name.rpartition(".")
        getattr(importlib.import_module(parent), attribute)
print(json.dumps(loaded))
"""


def test_the_shipped_files_import_on_requirements_txt_alone(tmp_path: Path) -> None:
    """function_app, and every name the deployed modules import later (telemetry's exporters,
    the queue and registry clients), from a copy of what both tools ship and only the
    distributions requirements.txt brings (checked once by hand in a fresh venv made with
    `pip install -r requirements.txt`: 39 distributions, the ones runtime_distributions finds)."""
    shipped = azd_ships(list(tracked_files()), funcignore())
    assert shipped == core_tools_ships(list(tracked_files()), funcignore())
    package = tmp_path / "wwwroot"
    for path in shipped:
        (package / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO_ROOT / path, package / path)
    (tmp_path / "allowed.json").write_text(json.dumps(files_of(runtime_distributions())))
    site = sorted({str(Path(sysconfig.get_path(k)).resolve()) for k in ("purelib", "platlib")})
    (tmp_path / "site.json").write_text(json.dumps(site))
    (tmp_path / "later.json").write_text(json.dumps(sorted(deployed_imports())))
    result = subprocess.run(
        [
            sys.executable,
            "-I",  # no PYTHONPATH, no current directory: the package's folder alone
            "-c",
            f"import sys; sys.path.insert(0, {str(package)!r}); exec({PROBE!r})",
            *(str(tmp_path / name) for name in ("allowed.json", "site.json", "later.json")),
        ],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COSMOS_"))},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert "function_app" in loaded
    assert not [m for m in loaded if m.startswith("acr_webhook.local")]


# --- requirements.txt, Python version, host.json ---------------------------------------------


def test_requirements_txt_is_what_the_remote_build_installs_as_tested() -> None:
    """Lines the remote build would read differently from pip here: an option (`-r`,
    `--index-url`; each pin's `--hash` aside), a local path, or azure-functions-worker, which
    the platform provides and Core Tools warns about
    (PythonHelpers.WarnIfAzureFunctionsWorkerInRequirementsTxt)."""
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    options = [line for line in lines if line.lstrip().startswith("-")]
    assert options and all(line.startswith("    --hash=sha256:") for line in options)
    for requirement in lock.requirements(lines):
        assert str(requirement.specifier).startswith("=="), requirement
        assert not requirement.url and not requirement.marker, requirement
    assert "azure-functions-worker" not in pinned_runtime()


def test_one_python_version_from_the_template_to_the_type_checker() -> None:
    """The Flex Consumption runtime (what the remote build and the worker run), the version
    scripts/bootstrap insists on (what the tests run on), ruff's and mypy's targets and
    requires-python's floor, and what README and deploy.md tell the operator."""
    runtime = function_app()["properties"]["functionAppConfig"]["runtime"]
    assert runtime["name"] == "python"
    version = runtime["version"]
    major, minor = version.split(".")

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == f">={version}"
    assert project["tool"]["ruff"]["target-version"] == f"py{major}{minor}"
    assert project["tool"]["mypy"]["python_version"] == version
    bootstrap = (REPO_ROOT / "scripts" / "bootstrap").read_text()
    assert f"sys.version_info[:2] != ({major}, {minor})" in bootstrap
    assert f"python{version}" in bootstrap
    for document in ("README.md", "docs/deploy.md"):
        named = set(re.findall(r"Python (3\.\d+)\b", (REPO_ROOT / document).read_text()))
        assert named == {version}, document
    assert sys.version_info[:2] == (int(major), int(minor))


def test_host_json_takes_core_tools_default_extension_bundle() -> None:
    """The range Core Tools (ExtensionBundleHelper.DefaultExtensionBundleVersionRange) and the
    templates use, which the deprecation check at publish compares with: v4 has the Storage
    queue trigger; timer and HTTP are the host's own."""
    host = json.loads((REPO_ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }


def test_the_zip_each_tool_uploads_is_small() -> None:
    """Deflated as both tools do (.NET ZipArchive, Go archive/zip): ~90 KB for a fresh clone's
    24 files (~260 KB); the remote build then adds ~60 MB of packages in Azure."""
    for tool, ships in TOOLS.items():
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in ships(list(tracked_files()), funcignore()):
                archive.write(REPO_ROOT / path, path)
        assert len(buffer.getvalue()) < 200_000, tool
