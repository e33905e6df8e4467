"""Hosts of their own on a private network (lab/hosts.py), for the drills beyond one machine."""

from __future__ import annotations

import shutil

import pytest

from lab import netns
from lab.deps import MissingDependency
from lab.hosts import Network


@pytest.fixture
def network(bench):
    """A private network owned by the test's bench; skipped where namespaces cannot be made,
    failed under CI=true (tests/conftest.py)."""
    reason = netns.unavailable() or (None if shutil.which("ss") else "ss not found (iproute2)")
    if reason:
        raise MissingDependency(
            f"the lab's hosts are network namespaces: {reason}. Run these drills as root on Linux: "
            "sudo nox -s hosts"
        )
    lab_network = Network(bench)
    yield lab_network
    lab_network.close()
