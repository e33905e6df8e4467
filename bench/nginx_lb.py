"""Chapter 04 under load: what nginx adds to a round trip, and 10,000 clients through it.

- Added round trip: Redis, one chapter 04 instance, and nginx in front of it, run from
  chapters/04_nginx_lb/nginx.conf. Half of a small fleet connects to the instance
  directly, half through nginx; `ping` round trips (emit to ack) take turns between the
  two, one at a time, so whatever else the machine does falls on both alike. p50/p99 of
  each path, and nginx's share: the difference.
- Fan-out: three instances behind nginx; 1,000, 4,000 and 10,000 clients connect to
  nginx's one address from 64 loopback source addresses (the config hashes the client's
  address: from one address, every client would land on one instance), and a burst of
  broadcasts must reach every client. Per step: open file descriptors and memory of
  each nginx process and each instance, and the clients each instance holds. With the
  open-files limit each process runs under, that is the descriptor arithmetic the
  chapter's nginx.conf is sized by.
- What staying on long-polling costs: one instance behind two nginx, the chapter's and
  its twin without Upgrade headers (antipatterns/04_no_upgrade_headers.conf). A browser-like
  python-socketio client behind each (polling first, then the upgrade it can only get
  from the chapter's); `ping` round trips in turns, and the HTTP requests each costs,
  counted in nginx's access log.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psutil
import socketio
from tqdm import tqdm

from bench import common, plots, report
from bench.loadclient import LeanConnection, LoadClient, latency_summary, loopback_sources
from lab.apps import healthz
from lab.chapters import Topology, start_topology
from lab.clients import RecordingClient, disconnect_all
from lab.nginx import requests_from, start_nginx
from lab.processes import REPO_ROOT, LabBench, Service, ServiceFailed

NAME = "04-nginx-lb"  # docs/bench/<NAME>.json
PLOT = plots.nginx_lb  # its figures, drawn again by --report-only
CHAPTER = "chapters/04_nginx_lb/app.py"
NGINX_CONF = "chapters/04_nginx_lb/nginx.conf"
NO_UPGRADE_CONF = "antipatterns/04_no_upgrade_headers.conf"
DIRECT, PROXIED = "direct", "through nginx"
# What the config asks of the system, recorded beside what each process actually got.
SIZING = ("worker_processes", "worker_rlimit_nofile", "worker_connections")
# "2026/11/21 20:14:27 [alert] 4755#4755: *12 message, client: 127.0.3.1, ..." -> level, message:
# the client's details are left out, so one kind of message counts as one.
NGINX_PROBLEM = re.compile(r"\[(emerg|alert|crit|error)\] \d+#\d+: (?:\*\d+ )?(.*?)(?:, client: .*)?$")


@dataclass(frozen=True)
class Settings:
    round_trip_clients: int  # half straight to the instance, half through nginx
    rounds: int  # round trips per connection in the added-round-trip scenario, after the warm-up
    warmup_rounds: int
    client_steps: tuple[int, ...]
    instances: int
    burst_deliveries: int
    total_seconds: float
    sources: int
    polling_pings: int  # per client, in the polling-cost scenario


FULL = Settings(10, 200, 20, (1000, 4000, 10_000), 3, 40_000, 10 * 60, 64, 500)
QUICK = Settings(10, 20, 5, (100, 400), 3, 2_000, 60, 64, 50)


def run(quick: bool, max_clients: int | None, out: str | None) -> dict[str, Any]:
    settings = common.up_to(QUICK if quick else FULL, max_clients)
    record: dict[str, Any] = {
        **common.new_record("04", quick, settings),
        "round_trip": {},
        "polling_cost": {},
        "fan_out": {},
    }
    budget = common.Budget(settings.total_seconds)
    with (
        LabBench(common.log_dir("04")) as bench,
        tqdm(total=3, desc="bench 04", unit="scenario", file=sys.stderr) as bar,
    ):
        bar.set_postfix_str("added round trip")
        record["round_trip"] = _round_trip_scenario(bench, settings, budget)
        bar.update(1)
        bar.set_postfix_str("polling vs websocket")
        record["polling_cost"] = _polling_cost_scenario(bench, settings)
        bar.update(1)
        bar.set_postfix_str(f"fan-out to {max(settings.client_steps):,}")
        record["fan_out"] = _fan_out_scenario(bench, settings, budget)
        bar.update(1)
    record["targets"] = targets(record, settings)
    out_dir = common.output_dir(quick, out)
    common.write_results(record, out_dir, NAME, PLOT, summary_markdown, headline)
    return record


def _behind_nginx(bench: LabBench, count: int, prefix: str) -> list[Service]:
    """Redis, `count` chapter instances, and nginx from the chapter's own config, first in the list."""
    topology = Topology(
        CHAPTER, instances=count, needs_redis=True, balancer=("nginx", NGINX_CONF), env=common.FLOOD_ENV
    )
    return start_topology(bench, topology, prefix=prefix, timeout=60)


# -- nginx's added round trip -------------------------------------------------------------------


def _round_trip_scenario(bench: LabBench, settings: Settings, budget: common.Budget) -> dict[str, Any]:
    try:
        services = _behind_nginx(bench, 1, "rt")
    except ServiceFailed as exc:
        return {"skipped": str(exc)[:300]}
    proxy, instance = services
    try:
        return asyncio.run(_round_trips(instance.url, proxy.url, settings, budget))
    finally:
        common.stop_services(services)


async def _round_trips(
    direct_url: str, proxy_url: str, settings: Settings, budget: common.Budget
) -> dict[str, Any]:
    """Round trips on each path, in turns; their p50/p99 and what nginx adds to each."""
    # Connection i goes to URL i mod 2: even ones straight to the instance, odd ones through nginx.
    async with LoadClient([direct_url, proxy_url]) as fleet:
        opened = await fleet.open(settings.round_trip_clients, timeout=min(30, budget.left()))
        if opened.failed:
            return {"skipped": f"connection failures: {opened.errors}"}
        by_path: dict[str, list[LeanConnection]] = {DIRECT: [], PROXIED: []}
        for conn in fleet.connections:
            by_path[PROXIED if conn.index % 2 else DIRECT].append(conn)
        pairs = list(zip(by_path[DIRECT], by_path[PROXIED], strict=False))
        try:
            # Warm-up, not counted: the connects just made trigger the online-count writes and pushes.
            await _alternate(fleet, pairs, settings.warmup_rounds, budget)
            samples = await _alternate(fleet, pairs, settings.rounds, budget)
        except (TimeoutError, ConnectionError) as exc:
            return {"broke": f"a ping got no ack: {type(exc).__name__}: {exc}"[:300]}
    result: dict[str, Any] = {path: latency_summary(times) for path, times in samples.items()}
    result["added_ms"] = {
        key[:3]: _difference(result[PROXIED][key], result[DIRECT][key]) for key in ("p50_ms", "p99_ms")
    }
    return result


async def _alternate(
    fleet: LoadClient, pairs: list[tuple[LeanConnection, LeanConnection]], rounds: int, budget: common.Budget
) -> dict[str, list[float]]:
    """`rounds` round trips per connection, one at a time, each path going first every other round."""
    samples: dict[str, list[float]] = {DIRECT: [], PROXIED: []}
    for number in range(rounds):
        if budget.spent():
            break
        for direct, proxied in pairs:
            turns = [(DIRECT, direct), (PROXIED, proxied)]
            for path, conn in turns if number % 2 == 0 else turns[::-1]:
                samples[path].append(await fleet.round_trip(conn, timeout=5))
    return samples


def _difference(later: float | None, earlier: float | None) -> float | None:
    return round(later - earlier, 3) if later is not None and earlier is not None else None


# -- what staying on long-polling costs ----------------------------------------------------------

# Each client leaves from its own address, so nginx's access log tells their requests apart.
POLLING_CLIENTS = {"websocket": ("127.0.50.1", NGINX_CONF), "polling": ("127.0.51.1", NO_UPGRADE_CONF)}


def _polling_cost_scenario(bench: LabBench, settings: Settings) -> dict[str, Any]:
    try:
        instance, *_ = start_topology(
            bench, Topology(CHAPTER, needs_redis=True, env=common.FLOOD_ENV), prefix="poll", timeout=60
        )
        proxies = {
            transport: start_nginx(bench, config, [instance], name=f"poll-{transport}")
            for transport, (_, config) in POLLING_CLIENTS.items()
        }
    except ServiceFailed as exc:
        return {"skipped": str(exc)[:300]}
    clients = {
        transport: RecordingClient(transport, source=source)
        for transport, (source, _) in POLLING_CLIENTS.items()
    }
    try:
        for transport, client in clients.items():
            # The browser's way: polling first, then the upgrade, which only the chapter's nginx passes.
            client.connect(proxies[transport].url, None)
            if client.sio.transport() != transport:
                return {"broke": f"behind {POLLING_CLIENTS[transport][1]}: {client.sio.transport()}"}
        before = {t: requests_from(proxies[t], source) for t, (source, _) in POLLING_CLIENTS.items()}
        times: dict[str, list[float]] = {transport: [] for transport in clients}
        for number in range(settings.polling_pings):
            turns = list(clients.items())
            for transport, client in turns if number % 2 == 0 else turns[::-1]:
                started = time.perf_counter()
                client.call("ping", timeout=5)
                times[transport].append(time.perf_counter() - started)
    except (TimeoutError, socketio.exceptions.SocketIOError) as exc:
        return {"broke": f"a ping got no ack: {type(exc).__name__}: {exc}"[:300]}
    finally:
        disconnect_all(list(clients.values()))
        # The last long-poll is logged once it ends: after the disconnect.
        common.stop_services([*proxies.values(), instance])
    result: dict[str, Any] = {}
    for transport, (source, _) in POLLING_CLIENTS.items():
        requests = requests_from(proxies[transport], source) - before[transport]
        result[transport] = {
            **latency_summary(times[transport]),
            "http_requests": requests,
            "http_requests_per_ping": round(requests / settings.polling_pings, 2),
        }
    return result


# -- fan-out through nginx to three instances ---------------------------------------------------


def _fan_out_scenario(bench: LabBench, settings: Settings, budget: common.Budget) -> dict[str, Any]:
    try:
        services = _behind_nginx(bench, settings.instances, "fan")
    except ServiceFailed as exc:
        return {"skipped": str(exc)[:300]}
    proxy, *cluster = services
    result: dict[str, Any] = {
        "instances": len(cluster),
        "source_addresses": settings.sources,
        "open_files_limit": _limits(proxy, cluster),
        "idle": _servers_state(proxy, cluster),
    }
    try:
        result["steps"] = asyncio.run(_fan_out_steps(proxy, cluster, settings, budget))
    finally:
        # Read after the clients have gone: what nginx complained of while they were on.
        result["nginx_problems"] = _nginx_problems(proxy.log_text())
        common.stop_services(services)
    return result


async def _fan_out_steps(
    proxy: Service, cluster: list[Service], settings: Settings, budget: common.Budget
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with LoadClient(proxy.url, sources=loopback_sources(settings.sources)) as fleet:
        for clients in settings.client_steps:
            step = await common.burst_step(
                fleet, clients, settings.burst_deliveries, budget, lambda: _servers_state(proxy, cluster)
            )
            step["connected"] = fleet.live  # what the per-client figures divide by, in a broken step too
            results[str(clients)] = step  # as JSON keys are, so the record reads the same reloaded
            if "broke" in step:
                step["logs"] = _evidence(proxy, cluster)
                break
    return results


def _servers_state(proxy: Service, cluster: list[Service]) -> dict[str, Any]:
    """Descriptors and memory of nginx (and of each worker) and of each instance, with its clients."""
    online = _online_by_instance(cluster[0])
    workers = [_usage(child.pid) for child in _children(proxy.pid)]
    return {
        "nginx": {**_usage(proxy.pid), "workers": workers},
        "instances": [
            # The count leaves out instances with no clients: absent is 0, unless nobody answered.
            {"name": s.name, "clients": None if online is None else online.get(s.name, 0), **_usage(s.pid)}
            for s in cluster
        ],
    }


def _usage(pid: int) -> dict[str, Any]:
    return {"fds": common.tree_fds(pid), "rss_mb": round(common.tree_rss(pid) / 2**20, 1)}


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []


def _online_by_instance(instance: Service) -> dict[str, int] | None:
    """Clients per instance, as the chapter counts them in Redis: asked of one instance, directly."""
    try:
        return healthz(instance.url, timeout=5).get("online_by_instance")
    except (OSError, ValueError):
        return None  # a busy or dead instance: the counts are missing, the step goes on


def _limits(proxy: Service, cluster: list[Service]) -> dict[str, Any]:
    """What nginx.conf asks for, and the open-files limit each process really runs under."""
    config = (REPO_ROOT / NGINX_CONF).read_text()
    asked = {}
    for name in SIZING:
        found = re.search(rf"^\s*{name}\s+(\S+);", config, re.M)
        asked[name] = found.group(1) if found else None
    return {
        "nginx_conf": asked,
        "nginx_workers": [common.open_files_limit(child.pid) for child in _children(proxy.pid)],
        "instances": [common.open_files_limit(s.pid) for s in cluster],
    }


def _nginx_problems(log: str, most: int = 8) -> list[dict[str, Any]]:
    """nginx's emerg/alert/crit/error lines, one per kind of message, with how often it came."""
    found = Counter(
        f"[{m[1]}] {m[2].strip()}"[:200] for m in map(NGINX_PROBLEM.search, log.splitlines()) if m
    )
    return [{"line": line, "count": count} for line, count in found.most_common(most)]


def _evidence(proxy: Service, cluster: list[Service]) -> dict[str, Any]:
    """Each server's own words, kept in the record of a step that broke."""
    logs = {proxy.name: common.log_tail(proxy.log_text())}
    for service in cluster:
        logs[service.name] = common.log_errors(service.log_text()) or common.log_tail(service.log_text())
    return logs


# -- verdicts and summary -----------------------------------------------------------------------


def targets(record: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    round_trip = record["round_trip"]
    added = round_trip.get("added_ms", {}).get("p50")
    found = [
        {
            "target": "nginx adds <= 0.2 ms to the ping round trip at p50 (through nginx vs direct)",
            "measured": f"{added} ms"
            if added is not None
            else round_trip.get("broke", round_trip.get("skipped")),
            "pass": (added <= 0.2) if added is not None else (False if "broke" in round_trip else None),
        }
    ]
    steps = record["fan_out"].get("steps", {})
    servers = f"nginx and {settings.instances} instances"
    found.append(common.delivery_target(servers, steps, max(settings.client_steps)))
    return found


def headline(record: dict[str, Any]) -> dict[str, str | None]:
    """What a reader compares across machines: nginx's share of a round trip, what staying on
    long-polling costs, and the fan-out at the largest step."""
    steps = record["fan_out"].get("steps", {})
    clients = max(steps, key=int, default=None)
    burst = steps.get(clients, {}).get("burst", {})
    at = f"{int(clients):,} clients" if clients else "the most clients"
    return {
        "nginx adds at p50 (ms)": report.figure(record["round_trip"].get("added_ms", {}).get("p50")),
        "long-polling ping p50 (ms)": report.figure(
            record.get("polling_cost", {}).get("polling", {}).get("p50_ms")
        ),
        f"deliveries/s, {at}": report.figure(burst.get("deliveries_per_s"), ","),
        f"burst p99 at {at} (ms)": report.figure(burst.get("latency", {}).get("p99_ms"), ".0f"),
    }


def summary_markdown(record: dict[str, Any]) -> str:
    lines = report.machine_line(record, "04")
    lines += _round_trip_lines(record["round_trip"])
    lines += _polling_cost_lines(record.get("polling_cost", {}))
    fan_out = record["fan_out"]
    if "skipped" in fan_out:
        lines.append(f"Fan-out through nginx: not measured ({fan_out['skipped']}).\n")
    else:
        lines += _fan_out_lines(fan_out)
        lines += _descriptor_lines(fan_out, record["machine"]["fd_limit"])
    lines.append(report.targets_table(record["targets"]))
    return "\n".join(lines)


def _polling_cost_lines(data: dict[str, Any]) -> list[str]:
    if "polling" not in data:
        return [f"Polling vs WebSocket: not measured ({data.get('broke') or data.get('skipped')}).\n"]
    rows = [
        [label, data[t]["count"], data[t]["http_requests_per_ping"], data[t]["p50_ms"], data[t]["p99_ms"]]
        for t, label in (
            ("websocket", "WebSocket (the chapter's nginx)"),
            ("polling", "long-polling (no Upgrade headers)"),
        )
    ]
    header = [
        "`ping` round trip, one client",
        "round trips",
        "HTTP requests per ping",
        "p50 (ms)",
        "p99 (ms)",
    ]
    return [
        report.markdown_table(header, rows),
        "Both clients start on long-polling, as browsers do; only the chapter's nginx lets one "
        "upgrade. Their pings took turns. A WebSocket is one request in nginx's log, for its whole "
        "life.\n",
    ]


def _round_trip_lines(data: dict[str, Any]) -> list[str]:
    if "added_ms" not in data:
        return [f"Added round trip: not measured ({data.get('broke') or data.get('skipped')}).\n"]
    rows = [
        [path, data[path]["count"], data[path]["p50_ms"], data[path]["p99_ms"]] for path in (DIRECT, PROXIED)
    ]
    header = ["`ping` round trip, one instance", "round trips", "p50 (ms)", "p99 (ms)"]
    added = data["added_ms"]
    noise = common.p50_noise(data[DIRECT], data[PROXIED], min(data[DIRECT]["count"], data[PROXIED]["count"]))
    return [
        report.markdown_table(header, rows),
        f"nginx adds {_added(added['p50'], 'p50', noise)} and {_added(added['p99'], 'p99')}: the round "
        "trips took turns between the two paths, one at a time, on the same instance.\n",
    ]


def _added(ms: float | None, at: str, noise: float | None = None) -> str:
    """What nginx adds at one percentile, in words; a proxy cannot make a round trip faster.

    `noise` (common.p50_noise) is known for the p50 only: a difference within it is no cost.
    """
    if ms is None:
        return f"an unmeasured amount at {at}"
    if noise is not None and abs(ms) <= noise:
        return f"nothing measurable at {at} ({ms:+.3f} ms, within this run's noise of ±{noise:.2f} ms)"
    if ms < 0:
        return f"nothing measurable at {at} (the difference, {ms} ms, is noise)"
    return f"{ms} ms at {at}"


def _fan_out_lines(fan_out: dict[str, Any]) -> list[str]:
    rows = []
    for clients, step in fan_out["steps"].items():
        burst = step.get("burst", {})
        latency = burst.get("latency", {})
        connect = step.get("connect", {})
        rows.append(
            [
                f"{int(clients):,}",
                _clients_per_instance(step),
                connect.get("seconds"),
                connect.get("failed"),
                f"{burst['deliveries_per_s']:,}" if burst.get("deliveries_per_s") else None,
                f"{burst['delivered']:,} of {burst['expected']:,}" if burst else None,
                f"{latency['p50_ms']:.0f} / {latency['p99_ms']:.0f}" if latency.get("count") else None,
                burst.get("disorder"),
                step.get("broke") or "all delivered",
            ]
        )
    header = ["clients", "per instance", "connect (s)", "failed", "deliveries/s", "delivered"]
    header += ["burst p50 / p99 (ms)", "out of order", "result"]
    intro = (
        f"Fan-out: every client connects to nginx, from {fan_out['source_addresses']} loopback "
        f"addresses; nginx hashes each address to one of {fan_out['instances']} instances.\n"
    )
    return [intro, report.markdown_table(header, rows)]


def _clients_per_instance(step: dict[str, Any]) -> str | None:
    counts = [instance.get("clients") for instance in step.get("instances", [])]
    return " / ".join(f"{c:,}" for c in counts) if counts and None not in counts else None


def _descriptor_lines(fan_out: dict[str, Any], bench_limit: dict[str, Any]) -> list[str]:
    """Open descriptors per process at each step: what the open-files limits must hold."""
    idle = fan_out["idle"]
    rows = []
    for step in fan_out["steps"].values():
        if "nginx" not in step:
            continue
        connected = step["connected"]
        nginx_added = step["nginx"]["fds"] - idle["nginx"]["fds"]
        held = [i["fds"] - j["fds"] for i, j in zip(step["instances"], idle["instances"], strict=True)]
        rows.append(
            [
                f"{connected:,}",
                " + ".join(f"{w['fds']:,}" for w in step["nginx"]["workers"]),
                round(nginx_added / connected, 2) if connected else None,
                " / ".join(f"{i['fds']:,}" for i in step["instances"]),
                round(sum(held) / connected, 2) if connected else None,
                f"{step['nginx']['rss_mb']} / " + " / ".join(str(i["rss_mb"]) for i in step["instances"]),
            ]
        )
    header = ["clients connected", "nginx workers' fds", "nginx fds per client", "instances' fds"]
    header += ["instance fds per client", "RSS MB: nginx / instances"]
    return [report.markdown_table(header, rows), _limits_sentence(fan_out, bench_limit)]


def _limits_sentence(fan_out: dict[str, Any], bench_limit: dict[str, Any]) -> str:
    limits = fan_out["open_files_limit"]
    asked = limits["nginx_conf"]
    got = ", ".join(f"{w['soft']:,}" if w else "unknown" for w in limits["nginx_workers"])
    text = (
        f"nginx.conf asks for `worker_processes {asked['worker_processes']}`, "
        f"`worker_connections {asked['worker_connections']}` and "
        f"`worker_rlimit_nofile {asked['worker_rlimit_nofile']}`; its {len(limits['nginx_workers'])} "
        f"workers ran with an open-files limit of {got}, the instances and the load client with "
        f"{bench_limit['soft']:,} (hard {bench_limit['hard']:,})."
    )
    problems = fan_out.get("nginx_problems") or []
    if problems:
        said = "; ".join(f"`{p['line']}` ({p['count']}x)" for p in problems)
        text += f" nginx logged: {said}."
    return text + "\n"
