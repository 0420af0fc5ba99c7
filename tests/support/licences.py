"""Reading a package's licence from what it declares: a Python distribution's metadata
(License-Expression, License, classifiers) or an npm package's package.json, as an SPDX-style
expression, and judging it with a predicate on licence ids (AND: every operand must pass; OR:
one is enough, the licensee chooses). Used by tests/unit/test_licences.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from license_expression import (
    AND,
    ExpressionError,
    LicenseSymbol,
    LicenseWithExceptionSymbol,
    Licensing,
)

PERMISSIVE = "permissive"
WEAK_COPYLEFT = "weak copyleft"
STRONG_COPYLEFT = "strong copyleft"
NETWORK_COPYLEFT = "network copyleft"
UNKNOWN = "unknown"

_PERMISSIVE_IDS = frozenset(
    {
        "0BSD",
        "Apache-2.0",
        "BlueOak-1.0.0",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "CC0-1.0",
        "CNRI-Python",
        # Not an SPDX id: the Eclipse Distribution License 1.0, which SPDX lists as BSD-3-Clause.
        "EDL-1.0",
        "ISC",
        "MIT",
        "MIT-0",
        "PSF-2.0",
        "Python-2.0",
        "Unicode-3.0",
        "Unlicense",
        "Zlib",
        "ZPL-2.1",
        # A "BSD License" classifier or a bare "BSD": the variant is not said, all are permissive.
        "LicenseRef-BSD",
        "LicenseRef-Public-Domain",
    }
)
_WEAK_COPYLEFT_IDS = frozenset({"MPL-2.0", "EPL-1.0", "EPL-2.0", "CDDL-1.0", "Artistic-2.0"})
# SPDX ids are case-insensitive: each known one in its canonical spelling.
_CANONICAL = {licence_id.lower(): licence_id for licence_id in _PERMISSIVE_IDS | _WEAK_COPYLEFT_IDS}


def category(licence_id: str) -> str:
    """permissive, weak/strong/network copyleft, or unknown (anything not listed here)."""
    if licence_id in _PERMISSIVE_IDS:
        return PERMISSIVE
    if licence_id in _WEAK_COPYLEFT_IDS or licence_id.upper().startswith("LGPL"):
        return WEAK_COPYLEFT
    if licence_id.upper().startswith(("AGPL", "SSPL")):
        return NETWORK_COPYLEFT
    if licence_id.upper().startswith(("GPL", "EUPL")):
        return STRONG_COPYLEFT
    return UNKNOWN


# An expression: a licence id, or ("AND" | "OR", operands).
Expression = str | tuple[str, list[Any]]


_LICENSING = Licensing()


def parse(text: str) -> Expression:
    """An SPDX license expression (ids and operators in any case; ``X WITH exception`` read as
    X), read by license-expression; the ids known here in their canonical spelling."""
    try:
        parsed = _LICENSING.parse(text)
    except ExpressionError as error:
        raise ValueError(f"not a licence expression: {text!r}") from error
    if parsed is None:
        raise ValueError(f"empty licence expression: {text!r}")
    return _expression(parsed)


def _expression(node: Any) -> Expression:
    if isinstance(node, LicenseWithExceptionSymbol):
        node = node.license_symbol
    if isinstance(node, LicenseSymbol):
        key = str(node.key)
        return _CANONICAL.get(key.lower(), key)
    operator = "AND" if isinstance(node, AND) else "OR"
    return (operator, [_expression(operand) for operand in node.args])


def ids(expression: Expression) -> set[str]:
    if isinstance(expression, str):
        return {expression}
    return set().union(*(ids(operand) for operand in expression[1]))


def satisfies(expression: Expression, allowed: Callable[[str], bool]) -> bool:
    """Whether the licensee can take the package under licences ``allowed`` accepts."""
    if isinstance(expression, str):
        return allowed(expression)
    operator, operands = expression
    results = (satisfies(operand, allowed) for operand in operands)
    return all(results) if operator == "AND" else any(results)


def known_expression(text: str) -> Expression | None:
    """``text`` parsed, when it is an expression of licence ids all known here."""
    try:
        expression = parse(text)
    except ValueError:
        return None
    return expression if all(category(i) != UNKNOWN for i in ids(expression)) else None


# The License field's free-text names seen in the closures, as SPDX ids.
_LICENSE_FIELD_NAMES = {
    "apache 2.0": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache software license": "Apache-2.0",
    "bsd": "LicenseRef-BSD",
    "bsd license": "LicenseRef-BSD",
    "mit license": "MIT",
    "psf license": "PSF-2.0",
    "psfl": "PSF-2.0",
    "zpl 2.1": "ZPL-2.1",
}
# License field values that say nothing usable: the classifiers are read instead.
_UNINFORMATIVE = frozenset({"", "unknown", "dual license"})

# Trove classifiers (the part after "License :: [OSI Approved :: ]"), as SPDX ids. The
# Apache classifier names no version: every Apache licence is permissive.
_CLASSIFIERS = {
    "Apache Software License": "Apache-2.0",
    "BSD License": "LicenseRef-BSD",
    "GNU Affero General Public License v3": "AGPL-3.0-only",
    "GNU Affero General Public License v3 or later (AGPLv3+)": "AGPL-3.0-or-later",
    "GNU General Public License (GPL)": "GPL",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    "GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "GNU Library or Lesser General Public License (LGPL)": "LGPL",
    "ISC License (ISCL)": "ISC",
    "MIT License": "MIT",
    "MIT No Attribution License (MIT-0)": "MIT-0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Python Software Foundation License": "PSF-2.0",
    "The Unlicense (Unlicense)": "Unlicense",
    "Zope Public License": "ZPL-2.1",
}
# Classifiers that name no licence ("Freely Distributable" says nothing of the terms).
_UNINFORMATIVE_CLASSIFIERS = frozenset({"Freely Distributable", "OSI Approved"})


def licence_text_id(text: str) -> str | None:
    """The licence a full licence text put in the License field is (MIT or BSD), if it is."""
    flat = " ".join(text.split())
    if "GNU" in flat or "General Public License" in flat:
        return None
    if "Permission is hereby granted, free of charge" in flat:
        return "MIT"
    if "Redistribution and use in source and binary forms" in flat:
        return "BSD-3-Clause" if "Neither the name" in flat else "BSD-2-Clause"
    return None


class Metadata(Protocol):
    def get_all(self, name: str, failobj: Any = ...) -> list[Any] | None: ...


def _first(metadata: Metadata, field: str) -> str | None:
    values = metadata.get_all(field) or []
    return str(values[0]) if values else None


def classifier_ids(metadata: Metadata) -> list[str]:
    """The licence classifiers as ids; one the table above lacks stays as its text (unknown)."""
    found = []
    for classifier in metadata.get_all("Classifier") or []:
        parts = str(classifier).split(" :: ")
        if parts[0] != "License" or parts[-1] in _UNINFORMATIVE_CLASSIFIERS:
            continue
        found.append(_CLASSIFIERS.get(parts[-1], str(classifier)))
    return found


@dataclass(frozen=True)
class Declared:
    text: str  # the expression, for messages and counts
    source: str  # which field it was read from
    expression: Expression


def _all_of(licence_ids: Sequence[str]) -> Expression:
    """Classifiers do not say whether several licences are alternatives: all apply, to be safe."""
    return licence_ids[0] if len(licence_ids) == 1 else ("AND", list(licence_ids))


def declared(metadata: Metadata) -> Declared | None:
    """A distribution's licence, from the most precise field that says something usable:
    License-Expression (PEP 639), the License field (an SPDX expression, a name, or a whole
    MIT or BSD text), the classifiers. None when none does. A License field that is none of
    those is returned as it is, an unknown licence, rather than passed over."""
    expression = _first(metadata, "License-Expression")
    if expression:
        return Declared(expression, "License-Expression", parse(expression))
    field = (_first(metadata, "License") or "").strip()
    if field.lower() not in _UNINFORMATIVE:
        known = known_expression(field)
        if known is not None:
            return Declared(field, "License", known)
        name = _LICENSE_FIELD_NAMES.get(field.lower()) or licence_text_id(field)
        if name is not None:
            return Declared(name, "License", name)
        return Declared(field, "License (unrecognised)", f"LicenseRef-unrecognised:{field[:60]}")
    classifiers = classifier_ids(metadata)
    if classifiers:
        return Declared(" AND ".join(classifiers), "Classifier", _all_of(classifiers))
    return None


def classifiers_expression(metadata: Metadata) -> Expression | None:
    """All the licence classifiers together, or None: checked besides the field that wins, so
    that a GPL classifier next to an MIT License-Expression is not passed over unseen."""
    classifiers = classifier_ids(metadata)
    return _all_of(classifiers) if classifiers else None


def npm_declared(package: dict[str, Any]) -> str | None:
    """An npm package.json's licence: ``license`` (an expression, or the deprecated
    ``{"type": ...}``), or the deprecated ``licenses`` list of alternatives."""
    licence = package.get("license")
    if isinstance(licence, dict):
        licence = licence.get("type")
    if isinstance(licence, str):
        return licence
    listed = package.get("licenses")
    if isinstance(listed, list) and listed:
        return " OR ".join(str(entry.get("type")) for entry in listed)
    return None
