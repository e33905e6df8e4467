"""Citations: every claim on a page names the test or the bench figure behind it.

In a page (or a chapter README), write

    {test: tests/chapter03/test_redis_scaling.py::test_broadcast_reaches_every_instance}
    {test: tests/chapter04/test_configs.py::TestNginx::test_upgrade}     (a method)
    {test: tests/chapter05/test_antipatterns.py::test_twin[emit-to-sid]} (one parameter)
    {test: flask-socketio-guard/tests/test_guard.py::test_require_names_what_is_wrong}  (the guard's own)
    {bench: 05-celery.json latency.end_to_end.p50_ms .1f}
    {tests: tests/chapter03}


A test citation renders as a small "test" mark whose tooltip is the test's docstring; the
test must exist (its function is found in the file's syntax tree, nothing is imported).
A bench citation renders the value itself, read from docs/bench/<file> at build time,
formatted with the optional format spec (Python's format mini-language), and its tooltip
names the machine and date of the run. Key paths are dot-separated; list items by index.
`{tests: DIR}` renders the list of every test in DIR's test files, each by the first line of
its docstring: what `nox -s chapterNN` prints as "what this run proved", so the page and the
run say the same thing and neither is typed twice.
A citation that names a missing file, test or key is an error: the build fails.
"""

from __future__ import annotations

import ast
import functools
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "docs" / "bench"

# The cookbook's tests, and the guard extension's own suite.
TEST = re.compile(r"\{test:\s*((?:flask-socketio-guard/)?tests/[^}\s]+)\s*\}")
TESTS = re.compile(r"^\{tests:\s*([^}\s]+)\s*\}[ \t]*$", re.MULTILINE)
BENCH = re.compile(r"\{bench:\s*([^}\s]+)\s+([^}\s]+)(?:\s+([^}\s]+))?\s*\}")


DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


class CitationError(ValueError):
    """A page cites a test or a bench key that does not exist."""


@dataclass(frozen=True)
class TestInfo:
    node_id: str
    doc: str


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def find_test(node_id: str) -> TestInfo:
    """The test that `node_id` (pytest's own syntax) names, or CitationError."""
    file, _, rest = node_id.partition("::")
    path = ROOT / file
    if not rest or not path.is_file():
        raise CitationError(f"{node_id}: no such test file ({file})")
    parts = re.sub(r"\[.*\]$", "", rest).split("::")
    scope: list[ast.stmt] = _tree(path).body
    node = None
    for part in parts:
        node = next((n for n in scope if isinstance(n, DEFINITIONS) and n.name == part), None)
        if node is None:
            raise CitationError(f"{node_id}: {file} has no {'::'.join(parts)}")
        scope = node.body if isinstance(node, ast.ClassDef) else []
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.name.startswith("test"):
        raise CitationError(f"{node_id}: not a test function")
    return TestInfo(node_id, ast.get_docstring(node) or "")


@functools.cache
def _bench(file: str) -> dict:
    path = BENCH_DIR / file
    if not path.is_file():
        raise CitationError(f"{file}: no such bench file in docs/bench/ (run `nox -s bench`)")
    return json.loads(path.read_text(encoding="utf-8"))


def bench_value(file: str, key: str):
    """The value at dot-separated `key` in docs/bench/`file`, or CitationError."""
    value = _bench(file)
    for part in key.split("."):
        try:
            value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise CitationError(f"{file}: no key {key!r} (stopped at {part!r})") from None
    return value


def machine_of(file: str) -> str:
    machine = _bench(file).get("machine") or {}
    cpu = machine.get("cpu_model", "unknown CPU")
    cores = machine.get("cores_logical", "?")
    date = str(machine.get("date", "undated"))[:10]
    # Records since runs are kept per machine name it (bench/report.py); older ones, by CPU alone.
    named = machine.get("label") or machine.get("machine_id")
    return f"{named}: {cpu}, {cores} cores, {date}" if named else f"{cpu}, {cores} cores, {date}"


def _test_mark(match: re.Match) -> str:
    info = find_test(match.group(1))
    title = html.escape(info.doc.split("\n\n")[0].replace("\n", " ") or info.node_id, quote=True)
    return f'<span class="proof" title="{title}">test <code>{html.escape(info.node_id)}</code></span>'


def _bench_mark(match: re.Match) -> str:
    file, key, spec = match.groups()
    value = bench_value(file, key)
    try:
        text = format(value, spec or "")
    except (ValueError, TypeError) as exc:
        raise CitationError(f"{file} {key}: cannot format {value!r} with {spec!r}: {exc}") from None
    # A record names the session that measured it (coverage.json: nox -s cover); the rest are the bench's.
    measured_by = _bench(file).get("measured_by", "nox -s bench")
    title = html.escape(f"measured by {measured_by}: docs/bench/{file} {key}; {machine_of(file)}", quote=True)
    return f'<span class="figure" title="{title}">{html.escape(text)}</span>'


def tests_in(folder: str) -> list[TestInfo]:
    """Every test function in `folder`'s test_*.py files, in file and source order."""
    path = ROOT / folder
    files = sorted(path.glob("test_*.py")) if path.is_dir() else []
    if not files:
        raise CitationError(f"{folder}: no test files there")
    found = []
    for file in files:
        rel = file.relative_to(ROOT).as_posix()
        for node in _tree(file).body:
            if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                found += [
                    TestInfo(f"{rel}::{node.name}::{n.name}", ast.get_docstring(n) or "")
                    for n in node.body
                    if isinstance(n, DEFINITIONS) and n.name.startswith("test")
                ]
            elif isinstance(node, DEFINITIONS) and node.name.startswith("test"):
                found.append(TestInfo(f"{rel}::{node.name}", ast.get_docstring(node) or ""))
    return found


def _tests_list(match: re.Match) -> str:
    lines = []
    for info in tests_in(match.group(1)):
        proves = info.doc.split("\n\n")[0].replace("\n", " ").strip()
        if not proves:
            raise CitationError(f"{info.node_id}: no docstring to say what it proves")
        lines.append(f'- {proves} <span class="proof">test <code>{html.escape(info.node_id)}</code></span>')
    return "\n".join(lines)


def render(markdown: str) -> str:
    """Replace every citation in `markdown`; raises CitationError on the first bad one."""
    return BENCH.sub(_bench_mark, TEST.sub(_test_mark, TESTS.sub(_tests_list, markdown)))


def check(text: str) -> list[str]:
    """Every bad citation in `text`, as messages (empty when all resolve)."""
    errors = []
    for match in TEST.finditer(text):
        try:
            find_test(match.group(1))
        except CitationError as exc:
            errors.append(str(exc))
    for match in TESTS.finditer(text):
        try:
            _tests_list(match)
        except CitationError as exc:
            errors.append(str(exc))
    for match in BENCH.finditer(text):
        try:
            _bench_mark(match)
        except CitationError as exc:
            errors.append(str(exc))
    return errors


# A README is read on GitHub, which shows it as it is: there a citation is a plain link to the
# test's file, with the test's name as the link's title, and a bench citation links its record.
#     [test](../../tests/chapter03/test_redis_scaling.py "test_notify_reaches_every_client_on_every_instance")
#     [bench](../../docs/bench/04-nginx-lb.json "fan_out.nginx_problems.0.line")
LINK = re.compile(
    r'\[(test|bench)\]\(((?:\.\./)*)((?:flask-socketio-guard/)?tests/[^ )]+|docs/bench/[^ )]+) "([^"]+)"\)'
)


def as_links(text: str, depth: int) -> str:
    """`text` with each citation written as a link, for a README `depth` folders below the root."""
    up = "../" * depth

    def test_link(match: re.Match) -> str:
        file, _, name = match.group(1).partition("::")
        return f'[test]({up}{file} "{name}")'

    def bench_link(match: re.Match) -> str:
        file, key, _ = match.groups()
        return f'[bench]({up}docs/bench/{file} "{key}")'

    return BENCH.sub(bench_link, TEST.sub(test_link, text))


def check_links(text: str, depth: int) -> list[str]:
    """Every problem with a README's citations: a link that names no test or key, a wrong
    relative path, or a citation left in the site's form, which GitHub would show raw."""
    errors = [
        f"{m.group(0)}: a README cites with a link, not the site's form"
        for m in (*TEST.finditer(text), *BENCH.finditer(text))
    ]
    for kind, up, target, name in LINK.findall(text):
        if up != "../" * depth:
            errors.append(f"{target}: the link goes up {up.count('../')} folders, the README is {depth} deep")
        try:
            if kind == "test":
                find_test(f"{target}::{name}")
            else:
                bench_value(target.removeprefix("docs/bench/"), name)
        except CitationError as exc:
            errors.append(str(exc))
    return errors
