"""The README and docs/ point at things that exist: every relative link resolves, every `make` target is defined."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
MAKE = re.compile(r"\bmake ([a-z][a-z0-9-]*)")
CODE = re.compile(r"`([^`\n]+)`|^```\n(.*?)^```", flags=re.M | re.S)


def _targets() -> set[str]:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^([a-z][a-z0-9-]*):", makefile, flags=re.M)}


def relative_links(text: str) -> list[str]:
    return [link for link in LINK.findall(text) if not re.match(r"[a-z]+:|#", link)]


def make_targets(text: str) -> list[str]:
    """The targets a reader is told to make: the word after ``make`` in code spans and code blocks (not prose)."""
    code = [span or block for span, block in CODE.findall(text)]
    return [target for chunk in code for target in MAKE.findall(chunk)]


def test_the_readme_fits_on_a_few_screens() -> None:
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_relative_link_resolves(document: Path) -> None:
    links = relative_links(document.read_text(encoding="utf-8"))
    missing = [link for link in links if not (document.parent / link.split("#")[0]).exists()]
    assert missing == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_make_target_named_exists(document: Path) -> None:
    named = make_targets(document.read_text(encoding="utf-8"))
    assert set(named) - _targets() == set()


def test_the_checks_find_what_they_look_for() -> None:
    text = "see [a](docs/a.md), [b](https://x.org), [c](#top); run `make test`, `X=1 make run`; make it so\n"
    text += "```\nmake bench-decode  # a command\n```\n"
    assert relative_links(text) == ["docs/a.md"]
    assert make_targets(text) == ["test", "run", "bench-decode"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/design.md" in relative_links(readme) and "test" in make_targets(readme)
