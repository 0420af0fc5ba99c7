"""test_resource_types.py checks its own checks on a storage snippet (STORAGE) whose API
versions must be ones the templates declare with a body: the extract keeps only the object
types the templates enter. Followed on 2026-12-07: storage.bicep moved to 2025-06-01 and the
extract regenerated as its docstring says, 10 of the snippet tests still failed, each saying
"object not in the extract; regenerate it", which cannot help; STORAGE's version was the
place to change. This names that place when it comes to it."""

from __future__ import annotations

import re

from tests.infra.resource_bodies import declarations
from tests.infra.test_resource_types import STORAGE


def test_the_snippet_uses_api_versions_the_templates_declare_with_a_body() -> None:
    in_snippet = set(re.findall(r"^resource \w+ '([^']+)'", STORAGE, re.MULTILINE))
    assert in_snippet, "the pattern reads no resource line of STORAGE"
    with_body = {d.type_version for d in declarations() if not d.existing}
    assert in_snippet <= with_body, (
        f"{sorted(in_snippet - with_body)}: no template declares it with a body any more, so "
        "the extract holds no object types for it; change STORAGE's API versions in "
        "tests/infra/test_resource_types.py to the templates' ones (after regenerating the "
        "extract: tests/support/resource_types_extract.py)"
    )
