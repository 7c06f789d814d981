"""The documentation holds together: every variable of `.env.example` is documented in
docs/configuration.md, and every relative link in README.md and docs/ leads to a file that exists (and, with
an `#anchor`, to a heading of that file). Offline and fast: nothing but reading the markdown."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=\"([^\"]+)\"", re.I)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto: ...


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _prose(text: str) -> str:
    """The text without code blocks and code spans, where a bracket is not a link."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: the text as rendered (no code marks, a link's text only),
    lowercased, without punctuation, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text())):
        base = slug(heading)
        name, n = base, 0
        while name in found:  # GitHub numbers repeated headings: name, name-1, name-2 ...
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def broken_links(path: Path) -> list[str]:
    """Every relative link of `path` that leads nowhere, as 'target: why'."""
    text = _prose(path.read_text())
    problems = []
    for target in _MD_LINK.findall(text) + _HTML_LINK.findall(text):
        if _EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            problems.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(f"{target}: no such heading")
    return problems


def test_every_variable_of_env_example_is_in_docs_configuration():
    example = (ROOT / ".env.example").read_text()
    names = re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", example, re.M)
    assert len(names) > 40  # the file's variables were found, set and commented out alike
    documented = (DOCS / "configuration.md").read_text()
    missing = [name for name in names if f"`{name}`" not in documented]
    assert not missing, f"in .env.example but not documented in docs/configuration.md: {missing}"


def test_every_relative_link_in_readme_and_docs_resolves():
    files = markdown_files()
    assert len(files) > 5
    broken = {str(p.relative_to(ROOT)): problems for p in files if (problems := broken_links(p))}
    assert not broken, broken


def test_the_readme_links_every_page_of_docs():
    readme = _prose((ROOT / "README.md").read_text())
    linked = {
        (ROOT / target.partition("#")[0]).resolve()
        for target in _MD_LINK.findall(readme)
        if not _EXTERNAL.match(target)
    }
    unlinked = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_the_link_check_sees_a_broken_link_and_a_missing_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# A heading: with `code`\n\n```\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Top\n[ok](other.md) [ok](other.md#a-heading-with-code) [ok](#top) `[code](nowhere.md)`\n"
        '[gone](nowhere.md) [no anchor](other.md#not-a-heading) ![image](pic.png) <img src="pic2.png">\n'
        "[web](https://example.com/x.md)\n```\n[in a block](nowhere.md)\n```\n"
    )
    assert broken_links(page) == [
        "nowhere.md: no such file",
        "other.md#not-a-heading: no such heading",
        "pic.png: no such file",
        "pic2.png: no such file",
    ]
