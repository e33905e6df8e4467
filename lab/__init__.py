"""The lab bench: starts the real processes a chapter needs, and owns them.

Tests, the demo server (`python -m lab.serve`) and the load bench all start
redis-server, app instances, nginx, HAProxy, and chapter 05's Celery workers
and beat through one `LabBench`, which waits for each to be ready against
a deadline, writes each one's output to a log file and kills every process
tree it started on exit.

Chapters never import this package: each chapter runs on its own.
"""

import importlib

# Imported on first use (PEP 562), so `python3 -m lab.preflight` runs on a machine where
# nothing is pip-installed yet: the package itself needs only the standard library.
_EXPORTS = {
    "LabBench": "lab.processes",
    "MissingDependency": "lab.deps",
    "Service": "lab.processes",
    "ServiceFailed": "lab.processes",
    "wait_until": "lab.processes",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lab' has no attribute {name!r}")
