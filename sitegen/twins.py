"""Twins: each antipattern is its chapter with the mistake and nothing else, and says where.

Every twin names its chapter file and the definitions that differ, in its docstring (a
Python twin) or its header comment (an nginx twin):

    Differs from chapters/05_celery/taskboard/events.py
        reply_to: the connection's sid instead of the user's room
        app: loads the chapter by path (plumbing)

Each line is `names: why`; names are top-level definitions (a function, class or assigned
name; a statement such as `monkey.patch_all()` by its own text), or, in an nginx file, block
paths (`http/upstream chat_instances`). A line ending in "(plumbing)" differs for a reason
that is not the mistake (this file lives in antipatterns/) and is not drawn on the site.

`drift(twin)` lists every place where a twin differs from its chapter without saying so
(tests/test_twins.py fails on any), and `render(twin)` draws the declared difference as
diffs, for the site. Two shapes of Python twin pass:

- a copy of the chapter file: every other top-level statement is the chapter's, in order;
- a file that imports the chapter and replaces definitions: it defines nothing but them.

Standard library only.
"""

from __future__ import annotations

import ast
import difflib
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TWINS_DIR = ROOT / "antipatterns"
DIFFERS = re.compile(r"^(?:#\s?)?Differs from (\S+)\s*$")
SECTION = re.compile(r"^(?:#\s?)?([A-Z][A-Za-z ?]+)$")
# Lines a twin may add anywhere: it loads its chapter by path.
PLUMBING = ("import sys", "from pathlib import Path", "sys.path.insert(")


@dataclass(frozen=True)
class Difference:
    names: tuple[str, ...]
    why: str

    @property
    def plumbing(self) -> bool:
        return self.why.endswith("(plumbing)")


@dataclass
class Twin:
    path: Path
    chapter: Path
    differences: list[Difference]
    sections: dict[str, str] = field(default_factory=dict)
    title: str = ""

    @property
    def names(self) -> set[str]:
        return {name for d in self.differences for name in d.names}

    @property
    def is_conf(self) -> bool:
        return self.path.suffix == ".conf"

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix() if self.path.is_relative_to(ROOT) else self.path.name


def all_twins() -> list[Path]:
    return sorted(p for p in TWINS_DIR.iterdir() if p.suffix in (".py", ".conf"))


def header(path: Path) -> str:
    """A Python twin's docstring, or an nginx twin's leading comment block, without the `#`."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return ast.get_docstring(ast.parse(text)) or ""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#") or "--8<--" in line:
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return "\n".join(lines)


def load(path: Path) -> Twin:
    """Read a twin's header: its title, its sections, and what it declares as different."""
    path = Path(path).resolve()
    lines = header(path).splitlines()
    title = lines[0] if lines else ""
    sections: dict[str, list[str]] = {}
    current = None
    chapter = None
    differences: list[Difference] = []
    entry_indent = 0
    for line in lines[1:]:
        if match := DIFFERS.match(line):
            chapter, current = ROOT / match.group(1), "Differs from"
            sections[current] = []
        elif line and not line[0].isspace() and SECTION.match(line):
            current = line.strip()
            sections[current] = []
        elif current:
            sections[current].append(line)
            if current == "Differs from" and line.strip():
                indent = len(line) - len(line.lstrip())
                if differences and indent > entry_indent:  # a continuation of the line above
                    last = differences.pop()
                    differences.append(Difference(last.names, f"{last.why} {line.strip()}"))
                else:
                    entry_indent = indent
                    names, _, why = line.strip().partition(": ")
                    differences.append(Difference(tuple(n.strip() for n in names.split(", ")), why.strip()))
    if chapter is None:
        raise ValueError(f"{path}: no 'Differs from <chapter file>' in its header")
    text = {name: _dedent("\n".join(body)) for name, body in sections.items()}
    return Twin(path, chapter, differences, text, title)


def _dedent(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


# Python ---------------------------------------------------------------------------------------


def _key(stmt: ast.stmt) -> str:
    """How a top-level statement is named in a twin's header."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return stmt.name
    if isinstance(stmt, ast.Assign):
        return ", ".join(ast.unparse(t) for t in stmt.targets).strip("()")
    if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        return ast.unparse(stmt.target)
    if isinstance(stmt, ast.If) and "__name__" in ast.unparse(stmt.test):
        return "__main__"
    return ast.unparse(stmt).splitlines()[0]


def _statements(path: Path) -> list[tuple[str, str, ast.stmt]]:
    """(key, dump, node) for each top-level statement but the docstring and plumbing."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]
    return [
        (_key(s), ast.dump(s), s) for s in body if not any(ast.unparse(s).startswith(p) for p in PLUMBING)
    ]


def _module_names(chapter: Path) -> set[str]:
    """The modules a twin can import from its chapter's folder (the folder is a package root)."""
    folder = chapter.parent
    while (folder / "__init__.py").exists():
        folder = folder.parent
    return {p.stem for p in folder.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}


def imports_chapter(twin: Twin) -> bool:
    """True when the twin imports its chapter's module instead of copying it.

    An import the chapter file makes itself (chapter 03's app.py imports online.py from its
    folder) does not count: a copy repeats it.
    """
    modules = _module_names(twin.chapter)
    own = {dump for _, dump, _ in _statements(twin.chapter)}
    for _, dump, node in _statements(twin.path):
        if dump in own:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in modules:
            return True
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] in modules for a in node.names):
            return True
    return False


def _defines(node: ast.stmt) -> bool:
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign))


def _python_drift(twin: Twin) -> list[str]:
    chapter, mine = _statements(twin.chapter), _statements(twin.path)
    named = twin.names
    problems = []
    ours = {key: ast.dump(node) for key, node in _definitions(twin.chapter).items() if _defines(node)}
    theirs = {key: ast.dump(node) for key, node in _definitions(twin.path).items() if _defines(node)}
    statements = {key for key, _, node in chapter + mine if not _defines(node)}
    if imports_chapter(twin):
        # It runs the chapter's own code; all it may define is what it declares.
        for key, _, node in mine:
            defines = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if defines and key not in named:
                problems.append(f"defines `{key}`, which its header does not declare")
    else:
        # A copy: everything it does not declare is the chapter's, statement for statement.
        rest_chapter = [(k, d) for k, d, _ in chapter if k not in named]
        rest_twin = [(k, d) for k, d, _ in mine if k not in named]
        matcher = difflib.SequenceMatcher(a=rest_chapter, b=rest_twin, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                continue
            keys = [k for k, _ in rest_chapter[i1:i2]] + [k for k, _ in rest_twin[j1:j2]]
            problems.append(f"differs from the chapter in `{'`, `'.join(dict.fromkeys(keys))}`, undeclared")
    for name in sorted(named - statements):
        if name not in ours and name not in theirs:
            problems.append(f"declares `{name}`, which neither file defines")
        elif name in ours and name in theirs and ours[name] == theirs[name]:
            problems.append(f"declares `{name}`, which is the same as the chapter's")
    return problems


def _nested(path: Path) -> dict[str, ast.stmt]:
    """Functions defined inside others (chapter 02's handlers live in create_app), by name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(map(id, tree.body))
    return {
        n.name: n
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and id(n) not in top
    }


def _definitions(path: Path) -> dict[str, ast.stmt]:
    return _nested(path) | {key: node for key, _, node in _statements(path)}


def _python_source(path: Path, keys: set[str]) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found = {}
    for key, node in _definitions(path).items():
        if key in keys:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            found[key] = _dedent("\n".join(lines[first - 1 : node.end_lineno]))
    return found


# nginx -----------------------------------------------------------------------------------------


def _conf_lines(path: Path) -> list[tuple[str, str]]:
    """(block path, directive) for every directive line, comments and blank lines dropped."""
    stack: list[str] = []
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.strip().startswith("''") else raw.strip()
        if not line:
            continue
        if line.endswith("{"):
            stack.append(" ".join(line[:-1].split()))
            out.append(("/".join(stack), line))
        elif line == "}":
            out.append(("/".join(stack), line))
            stack.pop()
        else:
            out.append(("/".join(stack), " ".join(line.split())))
    return out


def _conf_drift(twin: Twin) -> list[str]:
    chapter, mine = _conf_lines(twin.chapter), _conf_lines(twin.path)
    named = twin.names
    problems = []

    def declared(path: str) -> bool:
        return any(path == n or path.startswith(n + "/") for n in named)

    matcher = difflib.SequenceMatcher(a=chapter, b=mine, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op != "equal":
            for path, line in chapter[i1:i2] + mine[j1:j2]:
                if not declared(path):
                    problems.append(
                        f"differs from the chapter in `{line}` ({path or 'top level'}), undeclared"
                    )
    paths = {p for p, _ in chapter} | {p for p, _ in mine}
    for name in sorted(named):
        if name not in paths:
            problems.append(f"declares `{name}`, a block neither file has")
        elif [x for x in chapter if x[0].startswith(name)] == [x for x in mine if x[0].startswith(name)]:
            problems.append(f"declares `{name}`, which is the same as the chapter's")
    return problems


def _conf_block(path: Path, block: str) -> str:
    """The text of one block, comments included, from its opening line to its closing brace."""
    lines = path.read_text(encoding="utf-8").splitlines()
    stack: list[str] = []
    start = None
    for number, raw in enumerate(lines):
        line = raw.split("#", 1)[0].strip()
        if line.endswith("{"):
            stack.append(" ".join(line[:-1].split()))
            if "/".join(stack) == block:
                start = number
        elif line == "}":
            if start is not None and "/".join(stack) == block:
                return _dedent("\n".join(lines[start : number + 1]))
            stack.pop()
    return ""


# Both ------------------------------------------------------------------------------------------


def drift(twin: Twin) -> list[str]:
    """Every way the twin differs from its chapter that its header does not declare."""
    if not twin.chapter.is_file():
        return [f"its chapter file {twin.chapter} does not exist"]
    return _conf_drift(twin) if twin.is_conf else _python_drift(twin)


def render(twin: Twin) -> str:
    """The declared differences that are the mistake, as fenced unified diffs (markdown)."""
    shown = [n for d in twin.differences if not d.plumbing for n in d.names]
    chapter_rel = twin.chapter.relative_to(ROOT).as_posix()
    if twin.is_conf:
        ours = {n: _conf_block(twin.chapter, n) for n in shown}
        theirs = {n: _conf_block(twin.path, n) for n in shown}
    else:
        ours, theirs = _python_source(twin.chapter, set(shown)), _python_source(twin.path, set(shown))
    moved = any(ours.get(n) and ours.get(n) == theirs.get(n) for n in shown)
    if not twin.is_conf and (moved or _left_out_statements(twin) & set(shown)):
        # Statements moved or left out (a monkey patch, a guard): the files' diff, with the
        # lines around each change.
        return _diff_block(", ".join(shown), _code(twin.chapter), _code(twin.path), chapter_rel, twin.rel, 3)
    blocks = []
    for name in shown:
        a, b = ours.get(name, ""), theirs.get(name, "")
        if b or (a and (twin.is_conf or not imports_chapter(twin))):
            blocks.append(_diff_block(name, a, b, chapter_rel, twin.rel))
    if len(blocks) < len(shown):
        # What it undoes is the chapter's, unchanged: show the lines of the twin that undo it.
        blocks += [f'```python title="{twin.rel}"\n{text}\n```' for text in _sections(twin.path)]
    return "\n\n".join(blocks)


def _left_out_statements(twin: Twin) -> set[str]:
    return {key for key, _, node in _statements(twin.chapter) if not _defines(node)}


def _diff_block(title: str, a: str, b: str, a_name: str, b_name: str, context: int | None = None) -> str:
    """A unified diff: whole definitions, or with `context` lines around each change (hunks marked)."""
    size = len(a.splitlines()) + len(b.splitlines()) if context is None else context
    diff = difflib.unified_diff(a.splitlines(), b.splitlines(), a_name, b_name, n=size, lineterm="")
    hunks = context is not None
    body = "\n".join(line for line in diff if (hunks or not line.startswith("@@")) and "--8<--" not in line)
    return f'```diff title="{title}"\n{body}\n```'


def _code(path: Path) -> str:
    """A Python file's code without its docstring and without the lines that load the chapter."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    start = body[1].lineno if len(body) > 1 and isinstance(body[0], ast.Expr) else 1
    lines = path.read_text(encoding="utf-8").splitlines()[start - 1 :]
    return "\n".join(line for line in lines if not line.startswith(PLUMBING)).strip("\n")


def _sections(path: Path) -> list[str]:
    """The text of each `--8<-- [start:x]` ... `[end:x]` section of a file, markers left out."""
    text = path.read_text(encoding="utf-8")
    found = re.findall(r"--8<-- \[start:(\S+)\]\n(.*?)\n[^\n]*--8<-- \[end:\1\]", text, re.S)
    return [_dedent(body) for _, body in found]


# The gallery -----------------------------------------------------------------------------------


def anchor(twin: Twin) -> str:
    return twin.path.name.split(".")[0].replace("_", "-")


def _chapter_page(twin: Twin) -> tuple[str, str]:
    """(title, path relative to docs/) of the chapter page the twin belongs to."""
    number = twin.path.name[:2]
    page = next((ROOT / "docs" / "chapters").glob(f"{number}-*.md"))
    heading = next(
        (line[2:] for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("# ")), ""
    )
    return heading or page.stem, f"chapters/{page.name}"


def _tests_of(twin: Twin) -> list[str]:
    """The test files that run this twin (they name its file)."""
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "tests").rglob("test_*.py")
        if twin.path.name in p.read_text(encoding="utf-8") and p.name != "test_twins.py"
    )


def gallery_entry(twin: Twin) -> str:
    """One gallery entry, every word of it from the twin's header and files."""
    title = re.sub(r"^Antipattern \d+:\s*", "", twin.title).rstrip(".")
    title = title[:1].upper() + title[1:]
    page_title, page = _chapter_page(twin)
    sections = twin.sections
    plumbing = [
        f"`{'`, `'.join(d.names)}` ({d.why.removesuffix('(plumbing)').strip()})"
        for d in twin.differences
        if d.plumbing
    ]
    parts = [
        f"## {twin.path.name[:2]} · {title} {{ #{anchor(twin)} }}",
        f"`{twin.rel}`, a twin of [{page_title}]({page}).",
        "### What it does",
        sections.get("What it does", ""),
        "### Why is this bad?",
        sections.get("Why is this bad?", ""),
        "### What differs",
        "Each block is the chapter's definition (`-`) against the twin's (`+`); everything else is the "
        "chapter's, which `tests/test_twins.py` checks.",
        render(twin),
    ]
    if plumbing:
        parts.append("Also different, and not the mistake: " + "; ".join(plumbing) + ".")
    parts += ["### Use instead", sections.get("Use instead", "")]
    tests = _tests_of(twin)
    if tests:
        parts += [
            "### Its tests",
            "Run beside the chapter, expecting this failure: " + ", ".join(f"`{t}`" for t in tests) + ".",
        ]
    if sections.get("How to run it"):
        parts += ["### How to run it", "```text\n" + sections["How to run it"] + "\n```"]
    return "\n\n".join(p for p in parts if p)


def gallery() -> str:
    return "\n\n".join(gallery_entry(load(path)) for path in all_twins())
