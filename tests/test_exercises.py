"""Every "Break it yourself" exercise on the chapter pages breaks what it says, the way it says.

tests/exercises.toml holds each exercise as data: the change (an exact replace in one file), the
`nox -s chapterNN -- ...` command the page gives, and the parts of the failure its solution
quotes. Each exercise is applied to a copy of the repository, and its command's tests run there as
nox runs them. That the unchanged files pass is what the chapters' own tests prove.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.processes import REPO_ROOT, Launch

DATA = REPO_ROOT / "tests" / "exercises.toml"
PAGES = sorted((REPO_ROOT / "docs" / "chapters").glob("*.md"))
SECTION = re.compile(r"^## Break it yourself\b.*$", re.MULTILINE)
# Not copied: history, venvs, caches, the built site and run logs. node_modules is linked instead.
SKIPPED_AT_TOP = {".git", ".nox", "node_modules", "site", ".lab", ".coverage-data", "wheelhouse"}
SKIPPED_ANYWHERE = {"__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}
# Longer than any exercise takes, shorter than pytest's timeout for the test that runs it (180 s).
RUN_DEADLINE = 150.0


@dataclass(frozen=True)
class Exercise:
    """One exercise: where the page states it, the change it asks for, what it runs and quotes."""

    page: str
    number: int
    file: str
    old: str
    new: str
    command: str
    selects: list[str]
    quotes: list[str]

    @property
    def id(self) -> str:
        return f"{Path(self.page).name[:2]}-{self.number}"

    @property
    def words(self) -> list[str]:
        """The command as the reader's shell splits it: nox -s chapterNN -- ARGS."""
        return shlex.split(self.command)

    @property
    def pytest_args(self) -> list[str]:
        """What nox runs pytest on: the session's folder, then what follows `--`."""
        return [nox_session_folder(self.words[2]), *self.words[4:]]


EXERCISES = [Exercise(**entry) for entry in tomllib.loads(DATA.read_text(encoding="utf-8"))["exercise"]]
each_exercise = pytest.mark.parametrize("exercise", EXERCISES, ids=lambda exercise: exercise.id)


def nox_session_folder(session: str) -> str:
    """The folder that noxfile.py's `session` runs: `_pytest(session, "tests/chapterNN")`."""
    tree = ast.parse((REPO_ROOT / "noxfile.py").read_text(encoding="utf-8"))
    for function in tree.body:
        if isinstance(function, ast.FunctionDef) and function.name == session:
            for node in ast.walk(function):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_pytest":
                    return node.args[1].value
    raise AssertionError(f"noxfile.py has no session {session!r} that runs _pytest on a folder")


def page_exercises(page: Path) -> dict[int, tuple[str, str]]:
    """Each numbered item of the page's "Break it yourself" section: its task and its solution,
    each with its whitespace collapsed, since a quote may wrap across lines."""
    text = page.read_text(encoding="utf-8")
    heading = SECTION.search(text)
    if heading is None:
        return {}
    section = text[heading.end() :].split("\n## ", 1)[0]
    items = re.split(r"^(\d+)\. ", section, flags=re.MULTILINE)[1:]
    exercises = {}
    for number, body in zip(items[::2], items[1::2], strict=True):
        task, _, solution = body.partition('??? success "Solution"')
        exercises[int(number)] = (" ".join(task.split()), " ".join(solution.split()))
    return exercises


def copy_repository(target: Path) -> Path:
    """The working tree as it is now, in `target`, with node_modules linked for the page tests."""

    def skipped(folder: str, names: list[str]) -> set[str]:
        at_top = SKIPPED_AT_TOP if Path(folder) == REPO_ROOT else set()
        return {name for name in names if name in at_top or name in SKIPPED_ANYWHERE}

    shutil.copytree(REPO_ROOT, target, ignore=skipped, symlinks=True)
    if (REPO_ROOT / "node_modules").is_dir():
        (target / "node_modules").symlink_to(REPO_ROOT / "node_modules", target_is_directory=True)
    return target


def apply(exercise: Exercise, repository: Path) -> None:
    """Make the exercise's change in `repository`; fail, naming it, if its old text is not there once."""
    path = repository / exercise.file
    text = path.read_text(encoding="utf-8")
    found = text.count(exercise.old)
    if found != 1:
        pytest.fail(
            f"exercise {exercise.id}: its change no longer applies to {exercise.file}: "
            f"{exercise.old!r} occurs {found} times, not once (tests/exercises.toml)",
            pytrace=False,
        )
    path.write_text(text.replace(exercise.old, exercise.new), encoding="utf-8")


def pytest_argv(*args: str) -> list[str]:
    """`python -m pytest ARGS` with this interpreter: the venv nox runs the chapters' tests in."""
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]


def test_every_exercise_on_a_page_is_in_the_data():
    """Every numbered exercise on a chapter page's "Break it yourself" has an entry; none is left over."""
    on_pages = {
        (page.relative_to(REPO_ROOT).as_posix(), number) for page in PAGES for number in page_exercises(page)
    }
    in_data = {(exercise.page, exercise.number) for exercise in EXERCISES}
    assert on_pages == in_data
    assert len({exercise.id for exercise in EXERCISES}) == len(EXERCISES)


@each_exercise
def test_the_page_gives_the_command_and_quotes_the_failure(exercise):
    """The page's exercise gives the reader the nox command the test runs; its solution quotes the failure."""
    task, solution = page_exercises(REPO_ROOT / exercise.page)[exercise.number]
    assert exercise.words[:2] == ["nox", "-s"] and exercise.words[3] == "--", exercise.command
    # A path after `--` would replace the session's folder (noxfile.py, _pytest): -k selects instead.
    assert not any("/" in word for word in exercise.words[4:]), exercise.command
    assert f"`{exercise.command}`" in task
    assert [quote for quote in exercise.quotes if quote not in solution] == []


@each_exercise
def test_the_command_selects_the_tests_it_means(exercise):
    """On the unchanged tree, the exercise's command selects exactly the tests it names; a rename fails."""
    collected = subprocess.run(
        pytest_argv("--collect-only", "-q", *exercise.pytest_args),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    node_ids = [line for line in collected.stdout.splitlines() if "::" in line]
    assert node_ids == exercise.selects, collected.stdout + collected.stderr


@each_exercise
def test_the_exercise_fails_as_its_solution_says(exercise, bench, tmp_path):
    """With the exercise's one change, its tests fail, print what its solution quotes, and clean up."""
    repository = copy_repository(tmp_path / "repository")
    apply(exercise, repository)
    # Run from the copy, its own lab/ starts the apps: REPO_ROOT there is the copy, with the change.
    # Its temporary folder lies in this test's: a pytest of its own would rotate the user's.
    argv = pytest_argv(f"--basetemp={tmp_path / 'run'}", *exercise.pytest_args)
    run = bench.start(
        f"exercise-{exercise.id}",
        lambda _port: Launch(argv=argv, ready=lambda _service: True, cwd=repository),
    )
    try:
        run.process.wait(RUN_DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"exercise {exercise.id}: its tests did not finish in {RUN_DEADLINE:.0f}s")
    output = run.log_text()
    assert run.process.returncode == pytest.ExitCode.TESTS_FAILED, f"its output: {run.log_path}"
    assert [quote for quote in exercise.quotes if quote not in output] == [], f"its output: {run.log_path}"
    # The run's own end-of-session checks (tests/conftest.py) found nothing left running.
    assert "processes outlived the test run" not in output
    assert "still reconnecting after the run" not in output
