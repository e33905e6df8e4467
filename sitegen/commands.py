"""The commands a page tells a reader to type, as a test reads them.

Every console block on the site and in the READMEs carries a marker on the line before it:

    <!-- commands: 03-by-hand -->                       a test types this block (the walk "03-by-hand")
    <!-- commands: illustrative: needs a Mac -->        no test can; the reason says why

Blocks that carry the same walk name (a chapter's README and its page) must say the same
commands: the walk types them once. A command is a line that starts with `$ ` (or any line
of a `bash` block), joined with its `\\` continuation lines, with its trailing comment
(`  # terminal 2`) kept apart: the comment often says what the reader should see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>console|bash|sh|shell)\b")
MARKER = re.compile(r"^\s*<!--\s*commands:\s*(?P<what>.*?)\s*-->\s*$")
ILLUSTRATIVE = "illustrative:"


@dataclass(frozen=True)
class Command:
    line: str  # what the reader types, continuation lines joined
    comment: str  # the trailing comment, without its '#'


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    marker: str | None
    commands: list[Command] = field(default_factory=list)
    output: list[str] = field(default_factory=list)  # lines the reader sees, not types

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def walk(self) -> str | None:
        if self.marker is None or self.marker.startswith(ILLUSTRATIVE):
            return None
        return self.marker

    @property
    def reason(self) -> str | None:
        """Why no test types it, for an illustrative block."""
        if self.marker and self.marker.startswith(ILLUSTRATIVE):
            return self.marker[len(ILLUSTRATIVE) :].strip()
        return None


def pages(root: Path = ROOT) -> list[Path]:
    """Every page and README a reader may follow."""
    found = [
        root / "README.md",
        root / "flask-socketio-guard" / "README.md",
        *(root / "docs").rglob("*.md"),
        *(root / "chapters").glob("*/README.md"),
        *(root / "recipes").glob("*/README.md"),
    ]
    return sorted(found)


def blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for number, text in enumerate(lines):
        fence = FENCE.match(text)
        if not fence:
            continue
        before = next((lines[i] for i in range(number - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.match(before)
        block = Block(path, number + 1, marker["what"] if marker else None)
        end = next(i for i in range(number + 1, len(lines)) if lines[i].strip().startswith("```"))
        _read(block, [line.removeprefix(fence["indent"]) for line in lines[number + 1 : end]], fence["lang"])
        found.append(block)
    return found


def every_block(root: Path = ROOT) -> list[Block]:
    return [block for path in pages(root) for block in blocks(path)]


def walk(name: str, root: Path = ROOT) -> list[Command]:
    """The commands of walk `name`; every block that names it must say the same."""
    named = [block for block in every_block(root) if block.walk == name]
    if not named:
        raise LookupError(f"no console block is marked <!-- commands: {name} -->")
    first = named[0]
    for other in named[1:]:
        if [c.line for c in other.commands] != [c.line for c in first.commands]:
            raise AssertionError(
                f"{other.where} and {first.where} are both walk {name!r} but differ:\n"
                + "\n".join(c.line for c in other.commands)
                + "\n---\n"
                + "\n".join(c.line for c in first.commands)
            )
    return first.commands


def _read(block: Block, lines: list[str], lang: str) -> None:
    pending = ""
    for text in lines:
        if pending:
            text = pending + " " + text.strip()
            pending = ""
        elif lang == "console" and not text.startswith("$ "):
            if text.lstrip().startswith("#") and block.commands:
                # A comment line under a command goes on explaining that command.
                last = block.commands[-1]
                block.commands[-1] = Command(last.line, f"{last.comment} {text.strip()[1:].strip()}")
            else:
                block.output.append(text)
            continue
        else:
            text = text.removeprefix("$ ")
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        command, comment = _split_comment(text)
        if command.endswith("\\"):
            pending = command[:-1].rstrip()
            continue
        block.commands.append(Command(command, comment))


def _split_comment(text: str) -> tuple[str, str]:
    """`cmd  # why` -> ("cmd", "why"), minding quotes: a '#' inside quotes is the command's."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip(), text[i + 1 :].strip()
    return text.rstrip(), ""
