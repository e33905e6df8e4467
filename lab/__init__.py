"""The lab bench: starts the real processes a chapter needs, and owns them.

Tests, the demo server (`python -m lab.serve`) and the load bench all start
redis-server, app instances, nginx, HAProxy, and chapter 05's Celery workers
and beat through one `LabBench`, which waits for each to be ready against
a deadline, writes each one's output to a log file and kills every process
tree it started on exit.

Chapters never import this package: each chapter runs on its own.
"""

from lab.deps import MissingDependency
from lab.processes import LabBench, Service, ServiceFailed, wait_until

__all__ = ["LabBench", "MissingDependency", "Service", "ServiceFailed", "wait_until"]
