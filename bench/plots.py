"""The bench's figures, drawn from its JSON record with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter

# Plain numbers on log axes (1,000 rather than 10^3).
PLAIN = FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}")

COLORS = {
    "threading": "tab:orange",
    "gevent": "tab:blue",
    "eventlet": "tab:green",
    "gunicorn-gevent": "tab:purple",
    "node": "tab:gray",
}


def _figure(title: str, xlabel: str, ylabel: str, machine: dict[str, Any]):
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    _machine_line(fig, machine)
    return fig, ax


def _machine_line(fig, machine: dict[str, Any]) -> None:
    """Which machine the figure was measured on, in small print at the bottom."""
    fig.text(
        0.01,
        0.01,
        f"{machine['cpu_model']}, {machine['cores_logical']} cores, Python {machine['python']}, "
        f"{machine['date'][:10]}",
        fontsize=7,
        color="gray",
    )


def _plain_log(axis) -> None:
    axis.set_major_formatter(PLAIN)
    axis.set_minor_formatter(NullFormatter())


def _save(fig, path: Path) -> None:
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def _label(mode: str, data: dict[str, Any]) -> str:
    broke = data.get("broke")
    return f"{mode} (stopped at {broke['clients']:,})" if broke else mode


def _series(data: dict[str, Any], pick) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for step in data["steps"]:
        value = pick(step)
        if value is not None:
            xs.append(step["clients"])
            ys.append(value)
    return xs, ys


def async_modes(record: dict[str, Any], out: Path) -> list[Path]:
    """Chapter 02's figures: latency, deliveries/s, memory per connection, round trips."""
    machine = record["machine"]
    modes = record["modes"]
    written = []

    fig, ax = _figure("Broadcast latency (solid: p99, dashed: p50)", "clients", "ms", machine)
    for mode, data in modes.items():
        color = COLORS.get(mode)
        for key, style in (("p99_ms", "-"), ("p50_ms", "--")):
            xs, ys = _series(data, lambda s, key=key: _latency(s, key))
            label = _label(mode, data) if key == "p99_ms" else None
            ax.plot(xs, ys, style, marker="o", color=color, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax.xaxis)
    _plain_log(ax.yaxis)
    ax.legend()
    written.append(out / "02-broadcast-latency.png")
    _save(fig, written[-1])

    fig, ax = _figure("Deliveries per second in a burst", "clients", "deliveries/s", machine)
    for mode, data in modes.items():
        xs, ys = _series(data, lambda s: s.get("burst", {}).get("deliveries_per_s"))
        ax.plot(xs, ys, marker="o", color=COLORS.get(mode), label=_label(mode, data))
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    ax.yaxis.set_major_formatter(PLAIN)
    ax.legend()
    written.append(out / "02-deliveries-per-second.png")
    _save(fig, written[-1])

    fig, ax = _figure("Server memory per connection (RSS growth / clients)", "clients", "KB", machine)
    for mode, data in modes.items():
        xs, ys = _series(data, lambda s: s.get("memory_per_connection_kb"))
        ax.plot(xs, ys, marker="o", color=COLORS.get(mode), label=_label(mode, data))
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    ax.legend()
    written.append(out / "02-memory-per-connection.png")
    _save(fig, written[-1])

    written.append(out / "02-round-trips.png")
    _round_trips(record, written[-1])
    return written


def _latency(step: dict[str, Any], key: str) -> float | None:
    return step.get("latency", {}).get("latency", {}).get(key)


def _round_trips(record: dict[str, Any], path: Path) -> None:
    seconds = record["settings"]["work_seconds"]
    rows = [(label, data) for label, data in record["round_trips"].items() if "skipped" not in data]
    fig, ax = _figure(
        f"Longest ping round trip while another client works for {seconds:g} s",
        "ms (log)",
        "",
        record["machine"],
    )
    height = 0.38
    for offset, work, color in ((-height / 2, "slow_io", "tab:blue"), (height / 2, "cpu_work", "tab:red")):
        values = [(data[work] or {}).get("max_ms") or 0 for _, data in rows]
        ax.barh([i + offset for i in range(len(rows))], values, height, color=color, label=f"during {work}")
    ax.axvline(seconds * 1000, color="black", linestyle=":", label="the work's own duration")
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def _p50_p99_bars(ax, latencies: dict[str, dict[str, Any]]) -> None:
    """A pair of bars per label, p50 beside p99, from latency summaries (`p50_ms`, `p99_ms`)."""
    labels = list(latencies)
    width = 0.38
    for offset, key, color in ((-width / 2, "p50_ms", "tab:blue"), (width / 2, "p99_ms", "tab:red")):
        values = [latencies[label][key] for label in labels]
        ax.bar([i + offset for i in range(len(labels))], values, width, color=color, label=key[:3])
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.legend()


def redis_scaling(record: dict[str, Any], out: Path) -> list[Path]:
    """Chapter 03's figures: same- vs cross-instance latency, and deliveries/s per instance count."""
    machine = record["machine"]
    written = []

    latency = record.get("latency", {})
    labels = [label for label, data in latency.items() if data.get("latency", {}).get("count")]
    fig, ax = _figure("Broadcast latency, 10 clients per instance: p50 and p99", "", "ms", machine)
    _p50_p99_bars(ax, {label: latency[label]["latency"] for label in labels})
    written.append(out / "03-cross-instance-latency.png")
    _save(fig, written[-1])

    fig, ax = _figure(
        "Deliveries per second in a burst, by instance count", "instances", "deliveries/s", machine
    )
    for clients, series in record.get("throughput", {}).items():
        points = [(int(n), run["burst"]["deliveries_per_s"]) for n, run in series.items() if "burst" in run]
        if points:
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot(xs, ys, marker="o", label=f"{int(clients):,} clients")
    ax.set_xticks([1, 2, 3])
    ax.yaxis.set_major_formatter(PLAIN)
    ax.legend()
    written.append(out / "03-throughput.png")
    _save(fig, written[-1])
    return written


def nginx_lb(record: dict[str, Any], out: Path) -> list[Path]:
    """Chapter 04's figures: the round trip direct vs through nginx, and fan-out through nginx."""
    machine = record["machine"]
    written = []

    round_trip = record.get("round_trip", {})
    paths = [path for path in ("direct", "through nginx") if round_trip.get(path, {}).get("count")]
    fig, ax = _figure("ping round trip, one instance: direct vs through nginx", "", "ms", machine)
    _p50_p99_bars(ax, {path: round_trip[path] for path in paths})
    written.append(out / "04-round-trip.png")
    _save(fig, written[-1])

    # Another client (python-socketio's, which can long-poll), so another figure.
    cost = record.get("polling_cost", {})
    transports = [t for t in ("websocket", "polling") if cost.get(t, {}).get("count")]
    title = "ping round trip through nginx: WebSocket vs stuck on long-polling"
    fig, ax = _figure(title, "", "ms", machine)
    _p50_p99_bars(ax, {t: cost[t] for t in transports})
    written.append(out / "04-polling-cost.png")
    _save(fig, written[-1])

    steps = record.get("fan_out", {}).get("steps", {})
    bursts = [(int(clients), step["burst"]) for clients, step in steps.items() if "burst" in step]
    instances = record.get("fan_out", {}).get("instances")
    title = f"Fan-out through nginx to {instances} instances: a burst of broadcasts"
    fig, ax = _figure(title, "clients", "deliveries/s", machine)
    xs = [clients for clients, _ in bursts]
    ax.plot(
        xs, [b["deliveries_per_s"] for _, b in bursts], marker="o", color="tab:blue", label="deliveries/s"
    )
    # p99 on its own axis: another unit, over the same client counts.
    right = ax.twinx()
    p99 = [b["latency"]["p99_ms"] for _, b in bursts]
    right.plot(xs, p99, "--", marker="s", color="tab:red", label="p99 delivery latency (ms)")
    right.set_ylabel("ms")
    if xs:  # a log axis with no points cannot be drawn; a skipped fan-out leaves the frame empty
        ax.set_xscale("log")
        ax.set_xticks(xs)
        _plain_log(ax.xaxis)
    ax.yaxis.set_major_formatter(PLAIN)
    ax.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower center")
    written.append(out / "04-fan-out.png")
    _save(fig, written[-1])
    return written


def celery_tasks(record: dict[str, Any], out: Path) -> list[Path]:
    """Chapter 05's figures: a no-op task's latency distribution, and tasks/s by worker setup."""
    machine = record["machine"]
    written = []

    samples = record.get("latency", {}).get("samples_ms", {})
    # The reference, bench/celery_reference: the same path with none of the chapter (older runs lack it).
    reference = (record.get("latency", {}).get("reference") or {}).get("samples_ms", {})
    fig, ax = _figure("No-op Celery task, one at a time: share of tasks done by", "ms", "", machine)
    for values, label, color in (
        (samples.get("start_to_ack", []), "`start` to its ack (queued)", "tab:gray"),
        (samples.get("start_to_result", []), "`start` to `result` at the page", "tab:blue"),
        (
            reference.get("start_to_result", []),
            "the reference, no chapter code: `start` to `result`",
            "tab:green",
        ),
    ):
        if values:
            shares = [(i + 1) / len(values) for i in range(len(values))]
            ax.step(values, shares, where="post", color=color, label=label)
    target = record["settings"].get("latency_target_ms")
    if target:
        ax.axvline(target, color="black", linestyle=":", label=f"target for p50: {target:g} ms")
    ax.axhline(0.5, color="gray", linewidth=0.8)
    ax.set_xlim(left=0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.0%}"))
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right")
    written.append(out / "05-latency.png")
    _save(fig, written[-1])

    runs = {label: run for label, run in record.get("throughput", {}).items() if run.get("tasks_per_s")}
    fig, ax = _figure("No-op Celery tasks per second, by workers x processes", "", "tasks/s", machine)
    bars = ax.bar(range(len(runs)), [run["tasks_per_s"] for run in runs.values()], color="tab:blue")
    ax.bar_label(bars, fmt="{:,.0f}")
    ax.set_xticks(range(len(runs)), list(runs))
    ax.yaxis.set_major_formatter(PLAIN)
    written.append(out / "05-throughput.png")
    _save(fig, written[-1])
    return written


def knobs(record: dict[str, Any], out: Path) -> list[Path]:
    """The knobs' timeline: each broadcast round at the largest step, against the collections."""
    clients = str(max(record["settings"]["client_steps"]))
    rows = [(key, row) for key, row in record["rows"].items() if row.get("gc") and key in TIMELINE_ROWS]
    if not rows:
        return []
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 2.4 * len(rows) + 0.8), dpi=110, sharex=True)
    axes = list(axes) if len(rows) > 1 else [axes]
    for ax, (key, row) in zip(axes, rows, strict=True):
        at = row["steps"][clients].get("rounds_at", [])
        if len(at) < 2:
            continue
        start, end = at[0], at[-1]
        spans = list(itertools.pairwise(at))
        lengths = [(b - a) * 1000 for a, b in spans]
        ax.bar(
            [a - start for a in at[:-1]],
            lengths,
            width=[b - a for a, b in spans],
            align="edge",
            color="tab:blue",
            alpha=0.7,
            label="one broadcast to every client (ms)",
        )
        for began, generation, ms in row["gc"].get("events", []):
            if start <= began <= end:
                ax.axvspan(
                    began - start,
                    began - start + ms / 1000,
                    color="tab:red" if generation == 2 else "tab:orange",
                    alpha=0.35 if generation == 2 else 0.25,
                    lw=0,
                )
        ax.set_title(
            f"{key}: {len(lengths)} broadcasts one at a time to {int(clients):,} clients", fontsize=9
        )
        ax.set_ylabel("ms")
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("seconds since the first broadcast (red: full collections; orange: generation 1)")
    _machine_line(fig, record["machine"])
    path = out / "knobs-gc-timeline.png"
    _save(fig, path)
    return [path]


TIMELINE_ROWS = ("baseline", "gc-thresholds")


def delivery(record: dict[str, Any], out: Path) -> list[Path]:
    """Chapter 06's figures: replay time against messages missed, and the write path's latency."""
    machine = record["machine"]
    written = []

    fig, ax = _figure("Replay: a returning page's connect to `replay_done`", "messages missed", "ms", machine)
    for size, color in zip(
        record["settings"]["text_sizes"], ("tab:blue", "tab:red", "tab:green"), strict=False
    ):
        pairs = record.get("replay", {}).get(str(size), {})
        points = sorted(
            (int(missed), pair) for missed, pair in pairs.items() if pair.get("p50_ms") is not None
        )
        if not points:
            continue
        xs = [missed for missed, _ in points]
        ax.plot(
            xs, [p["p50_ms"] for _, p in points], "-", marker="o", color=color, label=f"{size:,} chars: p50"
        )
        ax.plot(xs, [p["p95_ms"] for _, p in points], ":", color=color, label=f"{size:,} chars: p95")
        ax.plot(
            xs,
            [p["read_p50_ms"] for _, p in points],
            "--",
            marker="x",
            color=color,
            label=f"{size:,} chars: the log's read alone, p50",
        )
    if ax.lines:  # a log axis with no points cannot be drawn
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log(ax.xaxis)
        _plain_log(ax.yaxis)
        ax.legend(fontsize=8)
    written.append(out / "06-replay.png")
    _save(fig, written[-1])

    sides = record.get("write_path", {}).get("sides", {})
    latencies = {
        f"{side}, {where.replace('_', ' ')}": figures[where]
        for side, figures in sides.items()
        for where in ("same_instance", "other_instance")
        if figures[where].get("count")
    }
    fig, ax = _figure("`message`, one at a time: its send to each receipt (log scale)", "", "ms", machine)
    if latencies:
        _p50_p99_bars(ax, latencies)
        ax.set_yscale("log")  # p50 and p99 can be tens of times apart
        _plain_log(ax.yaxis)
    written.append(out / "06-write-path.png")
    _save(fig, written[-1])
    return written


def hosts(record: dict[str, Any], out: Path) -> list[Path]:
    """Beyond one machine: how long users heard nothing from the other instances, per drill."""
    drills = record.get("drills", {})
    partition = drills.get("test_an_instance_cut_from_redis_says_so_and_its_users_move", {})
    sentinel = drills.get("test_the_chat_fails_over_with_redis", {}).get("-", {})
    bars = [
        (
            "connections forgotten:\ntwin (message_queue=),\nwatch ended",
            partition.get("forgotten-twin", {}),
            "deaf_ms_max",
        ),
        ("connections forgotten:\nchapter 04", partition.get("forgotten-chapter", {}), "deaf_ms_max"),
        (
            "partition:\nchapter 04 (503, HAProxy\nmoves the users)",
            partition.get("partition-chapter", {}),
            "deaf_ms_max",
        ),
        (f"Sentinel failover,\nmedian of {sentinel.get('failovers', 0)}", sentinel, "window_ms_median"),
        (f"Sentinel failover,\nworst of {sentinel.get('failovers', 0)}", sentinel, "window_ms_max"),
    ]
    shown = [
        (label, figures[key] / 1000) for label, figures, key in bars if isinstance(figures.get(key), int)
    ]
    if not shown:
        return []
    fig, ax = _figure(
        "How long users heard nothing from the other instances", "", "seconds", record["machine"]
    )
    colors = ["#c0392b", "#2e86c1", "#2e86c1", "#7d3c98", "#7d3c98"][: len(shown)]
    ax.bar([label for label, _ in shown], [seconds for _, seconds in shown], color=colors)
    ax.tick_params(axis="x", labelsize=7)
    path = out / "hosts-deaf.png"
    _save(fig, path)
    return [path]
