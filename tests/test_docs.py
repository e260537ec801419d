"""The README and docs/ as a reader follows them: the settings table generated from
.env.example, every setting the service reads documented there, the README short enough to be
a front door, every relative link and #anchor landing, and every page reachable from the
README."""

import re
from pathlib import Path

import pytest
import settings_table

from live import ROOT

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_BYTES = 12_000

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)


def prose(text: str) -> str:
    """Markdown without its code: fenced blocks and inline code."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: link text kept, lower case, punctuation other than
    `-` and `_` dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The #anchors of a page's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text())) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), re.MULTILINE | re.DOTALL)


def test_the_settings_table_is_the_one_tools_settings_table_generates():
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert settings_table.START in page and settings_table.END in page
    published = page.split(settings_table.START, 1)[1].split(settings_table.END, 1)[0]

    assert published.strip() == settings_table.table((ROOT / ".env.example").read_text()).strip(), (
        "docs/configuration.md is out of date: run .venv/bin/python tools/settings_table.py --write"
    )


def documented_settings() -> set[str]:
    return {name for block in settings_table.blocks((ROOT / ".env.example").read_text()) for name in block.names}


def settings_read(source: str) -> set[str]:
    """The names settings.py reads: `environ.get("NAME")`, `number("NAME", ...)`, and helpers
    called as `helper(environ, "NAME", ...)`."""
    patterns = (
        r"environ\.get\(\s*\"([A-Z0-9_]+)\"",
        r"\bnumber\(\s*\"([A-Z0-9_]+)\"",
        r"\(\s*environ\s*,\s*\"([A-Z0-9_]+)\"",
    )
    return {name for pattern in patterns for name in re.findall(pattern, source)}


def test_every_setting_the_service_reads_is_in_env_example():
    read = settings_read((ROOT / "stream_backend" / "settings.py").read_text())

    assert {"STREAM_API_KEY", "TOKEN_AUTH", "STREAM_CHAT_TIMEOUT", "LOG_LEVEL"} <= read  # the patterns still match
    assert read - documented_settings() == set()


def test_every_setting_in_env_example_is_read_by_the_service_gunicorn_or_the_shell():
    read = (ROOT / "stream_backend" / "settings.py").read_text()
    read += (ROOT / "stream_backend" / "web" / "gunicorn_config.py").read_text()
    shell = (ROOT / "Procfile").read_text() + (ROOT / "bin" / "run").read_text()
    unread = {name for name in documented_settings() if f'"{name}"' not in read and f"${{{name}" not in shell}

    assert unread == set()


def test_the_readme_is_a_front_door_of_at_most_12000_bytes():
    assert len(README.read_bytes()) <= README_MAX_BYTES


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_lands_on_a_file_and_heading_that_exist(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        landing = (page.parent / path).resolve() if path else page
        if not landing.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (landing.suffix != ".md" or anchor not in anchors(landing)):
            broken.append(f"{target}: no heading #{anchor} in {landing.relative_to(ROOT)}")

    assert broken == []


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in relative_links(README)}

    assert [str(page.relative_to(ROOT)) for page in DOCS if page.resolve() not in linked] == []


def test_the_readme_and_docs_python_give_the_same_python_example():
    assert python_blocks(README), "the README has no ```python example"
    assert python_blocks(README)[0] == python_blocks(ROOT / "docs" / "python.md")[0]


def test_the_anchor_slugs_are_githubs():
    assert slug("`POST /message`") == "post-message"
    assert slug("`PUT /channel/<type>/<id>`") == "put-channeltypeid"
    assert slug("I want to…") == "i-want-to"
    assert slug("The OpenAPI document and /docs") == "the-openapi-document-and-docs"
