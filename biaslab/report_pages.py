"""The report as a document: blocks of headings, text, tables and figures, rendered to markdown
and to one self-contained HTML page (figures embedded as base64 PNG).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import math
from pathlib import Path
from typing import Sequence, Union

STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
.table { overflow-x: auto; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #eee; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
"""


@dataclasses.dataclass(frozen=True)
class Cell:
    """A table cell; ``bold`` marks the biased class."""

    text: str
    bold: bool = False


@dataclasses.dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[Cell]]


@dataclasses.dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclasses.dataclass(frozen=True)
class Paragraph:
    text: str


@dataclasses.dataclass(frozen=True)
class Items:
    """A bulleted list."""

    items: list[str]


@dataclasses.dataclass(frozen=True)
class Image:
    """A PNG file of the output folder, referred to by name in markdown and embedded in HTML."""

    path: Path
    caption: str


Block = Union[Heading, Paragraph, Items, Table, Image]


def format_value(value: object) -> str:
    """Format a number with 4 significant digits; NaN (a run lacks the metric) becomes "n/a"."""
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _markdown_text(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Items):
            lines += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(_markdown_text(name) for name in block.header) + " |")
            lines.append("|" + "|".join("---" for _ in block.header) + "|")
            for row in block.rows:
                cells = [f"**{_markdown_text(cell.text)}**" if cell.bold else _markdown_text(cell.text) for cell in row]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        elif isinstance(block, Image):
            lines += [f"![{block.caption}]({block.path.name})", "", f"*{block.caption}*", ""]
    return "\n".join(lines)


def render_html(blocks: Sequence[Block], title: str) -> str:
    parts = ["<!DOCTYPE html>", "<html lang=\"en\">", "<head>", "<meta charset=\"utf-8\">",
             f"<title>{html.escape(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>"]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Items):
            parts.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            header = "".join(f"<th>{html.escape(name)}</th>" for name in block.header)
            rows = []
            for row in block.rows:
                cells = "".join(
                    f"<td><b>{html.escape(cell.text)}</b></td>" if cell.bold else f"<td>{html.escape(cell.text)}</td>"
                    for cell in row
                )
                rows.append(f"<tr>{cells}</tr>")
            parts.append(f"<div class=\"table\"><table><thead><tr>{header}</tr></thead>"
                         f"<tbody>{''.join(rows)}</tbody></table></div>")
        elif isinstance(block, Image):
            encoded = base64.b64encode(block.path.read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt=\"{html.escape(block.caption)}\" src=\"data:image/png;base64,{encoded}\">"
                         f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
