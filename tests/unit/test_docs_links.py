"""Every relative link of the README and docs/*.md leads, on GitHub, to a file of the repository
and, with a #fragment, to a heading of it: a file moved or a heading renamed leaves a link
pointing nowhere.

As GitHub reads them: every link form (inline, with a title or in angle brackets, an image, a
reference definition), none inside code; the file one a fresh clone has (git ls-files, not
whatever the work tree holds: .venv, node_modules, local.settings.json); each heading's anchor
by GitHub's rules (github-slugger, which github.com uses: the heading's text as rendered, lower
case, punctuation but hyphens and underscores dropped, spaces as hyphens, a repeated anchor
suffixed -1, -2...), ATX and setext headings alike.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from tests.support.repository import tracked_files
from tests.unit.test_docs_commands import DOCS, REPO_ROOT

# Fenced code (``` or ~~~, indented or not, closed by a fence of the same kind at least as
# long) and HTML comments: neither has links nor headings.
CODE_BLOCK = re.compile(
    r"^ *(`{3,}|~{3,})[^\n]*\n.*?(?:^ *\1[`~]*[ \t]*$|\Z)|<!--.*?-->", re.DOTALL | re.MULTILINE
)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.DOTALL)
# [text](target), [text](target "title"), [text](<target>), ![alt](target).
INLINE_LINK = re.compile(
    r"\]\(\s*(?:<([^>\n]*)>|([^)\s]*))"  # the destination
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"  # a title
)
# [label]: target
REFERENCE = re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]*(?:<([^>\n]*)>|(\S+))", re.MULTILINE)
ABSOLUTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)
ATX = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
# A paragraph line underlined with = or - (not a list item, table row, quote or heading).
SETEXT = re.compile(r"^ {0,3}([^\s#>|*+\-][^\n]*?)[ \t]*\n {0,3}(?:=+|-+)[ \t]*$", re.MULTILINE)
# GitHub's line anchors, in a file that is not Markdown.
LINE_ANCHOR = re.compile(r"^L\d+(?:-L\d+)?$")


def without_code(text: str) -> str:
    return CODE_BLOCK.sub("", text)


def link_targets(text: str) -> list[str]:
    """Every link destination outside code, as written (absolute ones too)."""
    prose = CODE_SPAN.sub("", without_code(text))
    found = [
        (match.start(), match.group(1) if match.group(1) is not None else match.group(2))
        for pattern in (INLINE_LINK, REFERENCE)
        for match in pattern.finditer(prose)
    ]
    return [target for _, target in sorted(found)]


def rendered(heading: str) -> str:
    """A heading's text as GitHub shows it: links and images as their text, no inline HTML,
    no emphasis or code markers."""
    heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    heading = re.sub(r"<[^>]+>", "", heading)
    heading = re.sub(r"(\*{1,2})(\S(?:.*?\S)?)\1", r"\2", heading)
    heading = re.sub(r"(?<!\w)(_{1,2})(\S(?:.*?\S)?)\1(?!\w)", r"\2", heading)
    return heading.replace("`", "")


def heading_anchors(text: str) -> list[str]:
    """The anchors GitHub gives a Markdown file's headings, in order."""
    prose = without_code(text)
    headings = sorted(
        [(m.start(), m.group(1) or "") for m in ATX.finditer(prose)]
        + [(m.start(), m.group(1)) for m in SETEXT.finditer(prose)]
    )
    anchors: list[str] = []
    seen: dict[str, int] = {}
    for _, heading in headings:
        slug = re.sub(r"[^\w\- ]", "", rendered(heading).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        anchors.append(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return anchors


def broken_links(name: str, text: str) -> list[str]:
    """The relative links of ``text``, the file ``name``, that lead nowhere, and why."""
    source = REPO_ROOT / name
    tracked = set(tracked_files())
    broken = []
    for target in link_targets(text):
        if ABSOLUTE.match(target):
            continue
        path, _, fragment = target.partition("#")
        resolved = (source.parent / unquote(path)).resolve() if path else source
        try:
            relative = resolved.relative_to(REPO_ROOT).as_posix()
        except ValueError:
            broken.append(f"{target}: outside the repository")
            continue
        is_file = relative in tracked
        if not is_file and not any(t.startswith(f"{relative}/") for t in tracked):
            broken.append(f"{target}: not in a fresh clone")
        elif fragment and not is_file:
            broken.append(f"{target}: a fragment on a directory")
        elif fragment and relative.endswith(".md"):
            if unquote(fragment) not in heading_anchors(resolved.read_text()):
                broken.append(f"{target}: no such heading")
        elif fragment and not LINE_ANCHOR.match(fragment):
            broken.append(f"{target}: no such anchor")
    return broken


@pytest.mark.parametrize("name", sorted(DOCS))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(name: str) -> None:
    assert broken_links(name, DOCS[name]) == []


@pytest.mark.parametrize("name", sorted(DOCS))
def test_every_link_is_one_the_check_reads(name: str) -> None:
    """Each "](" outside code starts a link the check above parsed: a form it cannot read
    (a space in the path, say) would otherwise be skipped without a word."""
    prose = CODE_SPAN.sub("", without_code(DOCS[name]))
    assert len(INLINE_LINK.findall(prose)) == prose.count("](")
    assert link_targets(DOCS[name]), "the docs link to each other"


def test_anchors_and_links_are_read_as_github_reads_them() -> None:
    """Controls: GitHub's anchor rules, and which link forms are read."""
    text = """# Setup
## Setup
Verify it
---
## The `GET /api/acr/events` endpoint ##
### What's *new*, [see here](x.md) and foo_bar?
#no heading
```bash
# not a heading: [in code](nowhere.md)
```
~~~
## nor this
~~~
<!-- ## nor this one -->
[inline](a.md#setup-1) ![image](img/b.png "Title") [angle](<c d.md>) `[span](e.md)`
[label]: f.md#x
[abs](https://example.com/g.md)
"""
    assert heading_anchors(text) == [
        "setup",
        "setup-1",
        "verify-it",
        "the-get-apiacrevents-endpoint",
        "whats-new-see-here-and-foo_bar",
    ]
    assert link_targets(text) == [
        "x.md",  # a link in a heading is a link
        "a.md#setup-1",
        "img/b.png",
        "c d.md",
        "f.md#x",
        "https://example.com/g.md",
    ]


def test_a_link_that_leads_nowhere_is_reported() -> None:
    """Controls, added to a real doc: a renamed heading, a file the work tree has but a fresh
    clone lacks, a path out of the repository, a fragment on a directory, one on a source file
    that is not a line anchor (a line anchor is fine)."""
    name = "docs/operations.md"
    assert (REPO_ROOT / ".venv" / "pyvenv.cfg").exists()
    added = [
        "../.venv/pyvenv.cfg",
        "deploy.md#deploying-once-more",
        "../../outside.md",
        "../docs#x",
        "../function_app.py#top",
        "../function_app.py#L12-L20",
    ]
    links = " ".join(f"[{n}]({target})" for n, target in enumerate(added))
    assert broken_links(name, DOCS[name] + "\n" + links + "\n") == [
        "../.venv/pyvenv.cfg: not in a fresh clone",
        "deploy.md#deploying-once-more: no such heading",
        "../../outside.md: outside the repository",
        "../docs#x: a fragment on a directory",
        "../function_app.py#top: no such anchor",
    ]
