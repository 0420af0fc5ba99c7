"""What each deployment tool puts in the zip it uploads, from the tool's own rules (neither can
run here), for a list of paths relative to the app's root (``/``-separated files):

- ``func azure functionapp publish`` (Azure Functions Core Tools, src/Cli/func): every file
  but those in ``.git``/``.vscode`` and those named ``.funcignore``, ``.gitignore``,
  ``local.settings.json`` or ``project.lock.json`` (Common/FileSystemHelpers.GetLocalFiles),
  filtered by .funcignore through Common/GitIgnoreParser.cs, a port of codemix/gitignore-parser
  and not git's matcher: each pattern becomes a regular expression anchored at the start of the
  path (so ``__pycache__`` is only the top folder), ``*`` is one or more characters, and the
  match must end at a word boundary. A Python app's ``.python_packages`` is emptied before a
  remote build (Helpers/PythonHelpers.GetPythonDeploymentPackage).
- ``azd deploy`` of a ``language: python``, ``host: function`` service (azure-dev,
  cli/azd/pkg/project/project_utils.go createDeployableZip): the service folder, without
  ``.azure`` folders and files named ``.funcignore`` or ``local.settings.json``, and, when
  .funcignore exists, without what it ignores through github.com/denormal/go-gitignore
  (git's syntax: a name matches at any depth, ``*`` may be empty), an excluded folder skipped
  whole; its defaults (``__pycache__``, a virtual environment) apply only without .funcignore.

Only the .funcignore syntax both matchers are reproduced for is accepted (no ``!``, no leading
or trailing ``/``, no ``\\``): anything else raises, so that a new kind of line is checked
against the tools before a test relies on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

CORE_TOOLS_SKIPPED_FOLDERS = frozenset({".git", ".vscode"})
CORE_TOOLS_SKIPPED_FILES = frozenset(
    {".funcignore", ".gitignore", "local.settings.json", "project.lock.json"}
)
AZD_SKIPPED_FILES = frozenset({".funcignore", "local.settings.json"})


def funcignore_patterns(text: str) -> list[str]:
    """The patterns of a .funcignore, refusing syntax not reproduced here."""
    patterns = []
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("!", "/")) or line.endswith("/") or "\\" in line:
            raise ValueError(f"{line!r}: not reproduced for Core Tools and azd")
        patterns.append(line)
    return patterns


# --- Core Tools ------------------------------------------------------------------------------


def _core_tools_regex(pattern: str) -> str:
    """GitIgnoreParser.PrepareRegexPattern."""
    escaped = re.sub(r"[\-\[\]/{}()+?.\\^$|]", lambda m: "\\" + m.group(0), pattern)
    return escaped.replace("**", "(.+)").replace("*", "([^\\/]+)")


def core_tools_ships(paths: Iterable[str], funcignore: str | None) -> list[str]:
    """The files of ``paths`` that ``func azure functionapp publish --build remote`` zips."""
    denied = None
    if funcignore is not None:
        alternatives = [_core_tools_regex(p) for p in sorted(funcignore_patterns(funcignore))]
        if alternatives:
            denied = re.compile("^((" + ")|(".join(alternatives) + "))\\b", re.ASCII)
    shipped = []
    for path in paths:
        *folders, name = path.split("/")
        if any(folder.lower() in CORE_TOOLS_SKIPPED_FOLDERS for folder in folders):
            continue
        if name.lower() in CORE_TOOLS_SKIPPED_FILES or folders[:1] == [".python_packages"]:
            continue
        if denied is None or not denied.match(path):
            shipped.append(path)
    return shipped


# --- azd (go-gitignore) ----------------------------------------------------------------------


def _fnmatch(pattern: str, text: str, pathname: bool) -> bool:
    """danwakefield/fnmatch: case-sensitive; with FNM_PATHNAME ``*`` and ``?`` stop at ``/``."""
    return _fnmatch_expression(pattern, pathname).fullmatch(text) is not None


@cache
def _fnmatch_expression(pattern: str, pathname: bool) -> re.Pattern[str]:
    any_char = "[^/]" if pathname else "."
    expression = ""
    for char in pattern:
        if char == "*":
            expression += any_char + "*"
        elif char == "?":
            expression += any_char
        else:
            expression += re.escape(char)
    return re.compile(expression, re.DOTALL)


def _go_gitignore_matches(pattern: str, relative: str) -> bool:
    """go-gitignore's Pattern.Match for an unanchored pattern (azd hands it the path relative
    to the service folder with a leading ``/``)."""
    parts = pattern.split("/")
    if "**" in parts:  # a "wildcard" pattern: ** is any number of folders, none included
        tokens = parts if parts[0] == "**" else ["**", *parts]
        return _wildcard(tokens, relative.split("/"))
    if len(parts) == 1:  # a "name" pattern: the last element only
        return _fnmatch(pattern, relative.rsplit("/", 1)[-1], pathname=False)
    # a "path" pattern: the last len(parts) elements
    return _fnmatch(pattern, "/".join(relative.split("/")[-len(parts) :]), pathname=True)


def _wildcard(tokens: list[str], path: list[str]) -> bool:
    if not tokens:
        return not path
    if tokens[0] == "**":
        return _wildcard(tokens[1:], path) or (bool(path) and _wildcard(tokens, path[1:]))
    return (
        bool(path)
        and _fnmatch(tokens[0], path[0], pathname=True)
        and _wildcard(tokens[1:], path[1:])
    )


def azd_ships(paths: Iterable[str], funcignore: str | None) -> list[str]:
    """The files of ``paths`` that ``azd deploy`` zips for this service (remote build)."""
    patterns = None if funcignore is None else funcignore_patterns(funcignore)
    paths = list(paths)
    present = set(paths)
    ignored: dict[str, bool] = {}  # by entry: a folder's answer holds for all it contains

    def ignores(entry: str) -> bool:
        if entry not in ignored:
            ignored[entry] = any(_go_gitignore_matches(p, entry) for p in patterns or ())
        return ignored[entry]

    shipped = []
    for path in paths:
        parts = path.split("/")
        if ".azure" in parts[:-1] or parts[-1] in AZD_SKIPPED_FILES:
            continue
        entries = ["/" + "/".join(parts[: depth + 1]) for depth in range(len(parts))]
        if patterns is None:  # Python's defaults
            if "__pycache__" in (part.lower() for part in parts[:-1]):
                continue
            if any(f"{folder[1:]}/pyvenv.cfg" in present for folder in entries[:-1]):
                continue
        elif any(ignores(entry) for entry in entries):
            continue  # the file, or a folder above it, is ignored
        shipped.append(path)
    return shipped
