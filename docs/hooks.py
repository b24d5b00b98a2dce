"""MkDocs hook: the configuration reference is generated from config.toml at build time, so it
can never drift from the defaults the server ships with. A page that holds the marker line
`<!-- config.toml -->` gets a table per section: key, default, environment variable, meaning."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

MARKER = "<!-- config.toml -->"
CONFIG = Path(__file__).resolve().parents[1] / "config.toml"
SECTION = re.compile(r"^\[(\w+)\]\s*$")
KEY = re.compile(r"^(\w+)\s*=\s*(.+?)\s*$")


def reference(text: str) -> str:
    """Markdown tables from config.toml's sections, keys and the comments above each key."""
    out: list[str] = []
    comment: list[str] = []
    section = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
        elif match := SECTION.match(stripped):
            section = match[1]
            out += ["", f"### [{section}]", "", "| key | default | environment | meaning |",
                    "| --- | --- | --- | --- |"]
            comment = []
        elif (match := KEY.match(stripped)) and section is not None:
            key, default = match[1], match[2]
            env = f"CHATSERVER_{section}_{key}".upper()
            meaning, shown = (s.replace("|", "\\|") for s in (" ".join(comment), default))
            out.append(f"| `{key}` | `{shown}` | `{env}` | {meaning} |")
            comment = []
        elif not stripped:
            comment = [] if section is not None else comment
    return "\n".join(out).strip() + "\n"


def on_page_markdown(markdown: str, **_kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference(CONFIG.read_text()))
