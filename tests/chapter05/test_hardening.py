"""Chapter 05 carries the guards of every chapter (the Hardening page): reasons, never tracebacks."""

from __future__ import annotations

import sys

import requests

from lab.processes import REPO_ROOT

from .conftest import WEB


def test_bad_calls_get_a_reason_and_one_log_line(start_taskboard):
    """Extra arguments and a flood of cancels: each gets a reason and a failed ack, the log one line each."""
    board = start_taskboard(webs=1, workers=0, beat=False)
    ann = board.connect("ann")

    reason = "send one object, not 2 arguments"
    assert ann.call("cancel", ({"task": "x"}, {"extra": True})) == {"ok": False, "reason": reason}
    ann.wait_for_event("error", lambda data: data == {"event": "cancel", "reason": reason})
    # A burst of 40 passes (twice the rate); 60 at once run the bucket dry.
    for _ in range(60):
        ann.emit("cancel", {"task": "x"})
    assert ann.call("cancel", {"task": "x"}) == {
        "ok": False,
        "reason": "too many events: at most 20 a second",
    }
    log = board.webs[0].log_text()
    assert "Traceback" not in log and log.count("refused 'cancel' from") == 1, log[-2000:]


def test_only_the_apps_own_origin_and_hosts_get_in(start_taskboard):
    """A foreign Origin and a foreign Host are refused; the page's own and /healthz are not."""
    board = start_taskboard(webs=1, workers=0, beat=False)
    url = board.webs[0].url
    handshake = f"{url}/socket.io/?EIO=4&transport=polling"
    assert requests.get(handshake, headers={"Origin": url}, timeout=5).status_code == 200
    assert requests.get(handshake, headers={"Origin": "http://evil.example"}, timeout=5).status_code == 400
    rebound = {"Host": "evil.example"}
    answer = requests.get(url + "/", headers=rebound, timeout=5)
    assert (answer.status_code, answer.text) == (400, "untrusted host: add it to TRUSTED_HOSTS")
    assert requests.get(url + "/healthz", headers=rebound, timeout=5).status_code == 200


def test_production_refuses_to_start_without_a_secret_key(bench):
    """PRODUCTION=1 and no SECRET_KEY: the web instance exits, naming it (workers share the same factory)."""
    env = {"PRODUCTION": "1", "SECRET_KEY": "", "REDIS_URL": "redis://127.0.0.1:1"}
    ran = bench.run("no-secret", [sys.executable, str(REPO_ROOT / WEB)], env=env)
    assert ran.returncode != 0 and "SECRET_KEY must be set when PRODUCTION=1" in ran.stdout, ran.stdout
