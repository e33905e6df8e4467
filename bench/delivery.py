"""Chapter 06 under load: what a returning page's replay takes, what the log costs Redis and each message.

Redis runs as the chapter's README runs it: `--appendonly yes --appendfsync always`, so each write
is on disk before Redis answers. On it, two instances of the chapter and two of chapter 04, each
chapter on its own channel, as processes.

- Replay: one room's log is filled with the largest count of messages through the chapter's own
  roomlog.RoomLog.append, loaded by path (the app's `message` handler refuses more than MAX_TEXT
  characters; the log itself has no limit), at each text size. A page then connects to the first
  chapter instance with its cursor N messages back, in the connect `auth`; timed from the start of its
  connection to `replay_done`, and every entry checked: each once, in order. Sizes and counts take
  turns within each repetition. Beside each replay, the same pages read by RoomLog.after from the
  bench process: the share of the time that is the log's read (Redis and redis-py).
- Memory: when each room is filled, `MEMORY USAGE <stream> SAMPLES 0` over XLEN, and INFO's
  used_memory before and after over the messages (it holds the per-message de-duplication keys too).
- The write path: clients on both instances of each chapter join one room; a sender on the first
  instance sends numbered messages, the way each chapter's page sends them: chapter 04's with no
  ack, chapter 06's with an id and an ack. The two chapters take turns block by block: a block is
  messages one at a time (the latency from the send to each receipt, on the other instance apart),
  then a burst (messages per second).
- The drills: tests/chapter06/test_drills.py, run as `nox -s chapter06` runs it; each test's
  counts (pytest's record_property) go under `drills.<test>.<chapter06|chapter04>`.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import statistics
import sys
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import psutil
import redis
from tqdm import tqdm

from bench import common, plots, report, stats
from bench.drills import run_drills
from bench.loadclient import LeanConnection, LoadClient, latency_summary
from lab.apps import start_app
from lab.delivery import roomlog
from lab.processes import REPO_ROOT, LabBench, Service, ServiceFailed
from lab.redis_server import start_redis

NAME = "06-delivery"  # docs/bench/<NAME>.json
PLOT = plots.delivery  # its figures, drawn again by --report-only
CHAPTER_DIR = REPO_ROOT / "chapters" / "06_delivery_guarantees"
CHAPTER = CHAPTER_DIR / "app.py"
BASELINE = REPO_ROOT / "chapters" / "04_nginx_lb" / "app.py"
DRILLS = "tests/chapter06/test_drills.py"
SIDES = ("chapter04", "chapter06")  # the write path's two sides, baseline first
CHANNEL = "flask-socketio"  # the chapter's default SOCKETIO_CHANNEL: its log keys start with it
# The largest change per message in the write path worth a verdict, either way (bench/stats.py).
SMALLEST_CHANGE = 0.10
REPLAY, REPLAY_DONE = b'42["replay",', b'42["replay_done",'
MESSAGE = b'42["message",'
TEXT_MARK = b'"text":"#'
RETRY_SECONDS = 0.1  # a refused message is sent again this much later, as lab.delivery's Sender does


@dataclass(frozen=True)
class Settings:
    missed: tuple[int, ...]  # messages a returning page missed; the largest is what each room holds
    text_sizes: tuple[int, ...]  # characters of text per message, one room each
    replay_repeats: int  # of every (size, missed) pair, taking turns
    clients_per_instance: int  # in the write path, the sender included
    blocks: int  # in the write path, per chapter, taking turns
    rounds: int  # messages one at a time per block, after the warm-up
    warmup_rounds: int
    burst: int  # messages back to back per block
    write_text: int  # characters per message in the write path
    drills: str  # the drills' test file, run with pytest
    total_seconds: float


FULL = Settings((10, 100, 1000, 10_000), (100, 1000), 20, 5, 20, 50, 20, 500, 100, DRILLS, 15 * 60)
QUICK = Settings((10, 100), (100, 1000), 2, 2, 2, 5, 3, 20, 100, DRILLS, 60)


def run(quick: bool, out: str | None) -> dict[str, Any]:
    settings = QUICK if quick else FULL
    record: dict[str, Any] = common.new_record("06", quick, settings)
    record["machine"]["packages"]["pytest"] = common.package_version("pytest")
    budget = common.Budget(settings.total_seconds)
    with tqdm(total=3, desc="bench 06", unit="scenario", file=sys.stderr) as bar:
        with LabBench(common.log_dir("06")) as bench:
            try:
                lab = Deployment.start(bench, max(settings.missed))
            except ServiceFailed as exc:
                why = {"skipped": str(exc)[:300]}
                record.update(replay=why, memory={}, write_path=why)
            else:
                bar.set_postfix_str("replay and memory")
                record.update(_replay_scenario(lab, settings, budget))
                bar.update(1)
                bar.set_postfix_str("write path, chapter 04 and 06 in turns")
                record["write_path"] = _write_path_scenario(lab, settings, budget)
                bar.update(1)
        # Its own processes, as `nox -s chapter06` starts them: after the bench's have stopped.
        bar.set_postfix_str("the drills")
        record["drills"], record["drills_run"] = run_drills(settings.drills, common.log_dir("06-drills"))
        bar.update(1)
    record["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    record["targets"] = targets(record)
    out_dir = common.output_dir(quick, out)
    common.write_results(record, out_dir, NAME, PLOT, summary_markdown, headline)
    return record


def app_constant(name: str) -> int:
    """A number the chapter's app.py sets at the top (`REPLAY_PAGE = 500`), as the app reads it."""
    found = re.search(rf"^{name} = (\d+)$", CHAPTER.read_text(), re.MULTILINE)
    if not found:
        raise LookupError(f"{CHAPTER.relative_to(REPO_ROOT)} sets no {name} = <number>")
    return int(found.group(1))


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- replay and memory ----------------------------------------------------------------------------


@dataclass
class Deployment:
    """One Redis with its AOF; two instances of each chapter on it, each chapter on its own channel.

    Chapter 06's first instance also serves the replays. Its log holds `held` messages per room
    (LOG_MAXLEN), and the bench's RoomLog is built as the app builds its own.
    """

    store: Service
    instances: dict[str, list[Service]]  # by side, chapter04 and chapter06
    held: int

    @classmethod
    def start(cls, bench: LabBench, held: int) -> Deployment:
        store = start_redis(bench, name="redis", durable=True)
        env = {"REDIS_URL": store.url, **common.FLOOD_ENV}
        channels = {
            "chapter04": {"SOCKETIO_CHANNEL": "bench-chapter04"},
            "chapter06": {"LOG_MAXLEN": str(held)},
        }
        scripts = {"chapter04": BASELINE, "chapter06": CHAPTER}
        instances = {
            side: [
                start_app(bench, scripts[side], name=f"{side}-{i}", env={**env, **channels[side]})
                for i in (1, 2)
            ]
            for side in SIDES
        }
        return cls(store, instances, held)

    def log(self) -> Any:
        # The app's DEDUPE_SECONDS: a retry is recognised for a day.
        return roomlog().RoomLog(
            self.store.url, prefix=CHANNEL, maxlen=self.held, window_seconds=3600, dedupe_seconds=86400
        )


def _replay_scenario(lab: Deployment, settings: Settings, budget: common.Budget) -> dict[str, Any]:
    """Fill one room per size, then replay from chapter 06's first instance, the pairs taking turns."""
    log = lab.log()
    found: dict[str, Any] = {"redis": _redis_facts(log.redis, lab.store), "memory": {}}
    rooms: dict[int, list[str]] = {}
    for size in settings.text_sizes:
        rooms[size], found["memory"][str(size)] = _fill(log, f"text-{size}", lab.held, size)
    load_at_start = _load_average()
    url = lab.instances["chapter06"][0].url
    found["replay"] = asyncio.run(_replays(url, log, rooms, settings, budget))
    found["replay"]["load_average"] = {"start": load_at_start, "end": _load_average()}
    return found


def _redis_facts(client: redis.Redis, store: Service) -> dict[str, Any]:
    """What the replay and memory figures depend on: Redis's version, its AOF, the disk it syncs to."""
    config = {key: client.config_get(key)[key] for key in ("appendonly", "appendfsync")}
    data_dir = client.config_get("dir")["dir"]
    mounts = [p for p in psutil.disk_partitions(all=True) if data_dir.startswith(p.mountpoint)]
    disk = max(mounts, key=lambda p: len(p.mountpoint), default=None)
    return {
        "version": client.info("server")["redis_version"],
        "binary": store.launch.argv[0],
        **config,
        "aof_filesystem": disk.fstype if disk else None,
    }


def filler(seq: int, size: int) -> str:
    """`size` characters of ASCII text (so as many bytes), numbered: each message its own."""
    head = f"message {seq}: "
    body = "the quick brown fox jumps over the lazy dog; " * (size // 45 + 1)
    return (head + body)[:size]


def _fill(log: Any, room: str, count: int, size: int) -> tuple[list[str], dict[str, Any]]:
    """`count` messages into `room` through RoomLog.append; their ids, and what Redis holds for them."""
    before = log.redis.info("memory")["used_memory"]
    started = perf_counter()
    ids = [
        log.append(room, name="bench", text=filler(seq, size), cid=f"{room}-{seq}")[0]["id"]
        for seq in range(1, count + 1)
    ]
    seconds = perf_counter() - started
    used = log.redis.info("memory")["used_memory"] - before
    stream, _meta = log.keys(room)
    length = log.redis.xlen(stream)
    stream_bytes = log.redis.memory_usage(stream, samples=0)
    dedupe_key = f"{log.prefix}:sent:{{{room}}}:{room}-1"
    return ids, {
        "text_chars": size,
        "messages": length,
        "stream_bytes": stream_bytes,
        "stream_bytes_per_message": round(stream_bytes / length, 1),
        "dedupe_key_bytes": log.redis.memory_usage(dedupe_key, samples=0),
        "used_memory_delta": used,
        "used_memory_per_message": round(used / count, 1),
        "appends_per_s": round(count / seconds),
    }


class ReplayPage(LoadClient):
    """One returning page: connects with its cursor and notes when each replay page and `replay_done` come."""

    def __init__(self, url: str):
        super().__init__(url)
        self.pages: list[tuple[float, bytes]] = []
        self.other: list[bytes] = []  # resync, replay_failed: the replay did not go as asked
        self.done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def on_packet(self, conn: LeanConnection, data: bytes) -> None:
        if data.startswith(REPLAY):
            self.pages.append((perf_counter(), bytes(data)))
        elif data.startswith(REPLAY_DONE):
            if not self.done.done():
                self.done.set_result(perf_counter())
        elif data.startswith((b'42["resync",', b'42["replay_failed",')):
            self.other.append(bytes(data))
        else:
            super().on_packet(conn, data)


async def replay_once(url: str, room: str, cursor: str, missed: int, timeout: float) -> dict[str, Any]:
    """Connect with `cursor`: seconds to `replay_done`; did the `missed` entries come once each, in order?

    Timed from the start of the connection (TCP, WebSocket, Socket.IO's connect with the `auth`), as a
    page waits for it."""
    page = ReplayPage(url)
    auth = {"name": "returning", "rooms": [room], "cursors": {room: cursor}}
    async with page:
        started = perf_counter()
        opened = await page.open(1, timeout=timeout, auth=auth)
        if opened.failed:
            return {"broke": f"did not connect: {opened.errors}"}
        connected = perf_counter()
        try:
            done = await asyncio.wait_for(page.done, timeout)
        except TimeoutError:
            return {"broke": f"no replay_done within {timeout:.0f} s ({len(page.pages)} pages came)"}
    first = int(cursor.split("-")[1]) + 1
    # Read after the clock stopped: what a page would do with them is not the replay's time.
    seqs = [entry["seq"] for _, data in page.pages for entry in json.loads(data[2:])[1]["entries"]]
    wire = sum(len(data) for _, data in page.pages)
    return {
        "seconds": done - started,
        "connect_seconds": connected - started,
        "first_page_seconds": page.pages[0][0] - started if page.pages else None,
        "entries": len(seqs),
        "once_in_order": seqs == list(range(first, first + missed)),
        "wire_bytes_per_entry": round(wire / len(seqs), 1) if seqs else None,
        "unasked": [data[:120].decode(errors="replace") for data in page.other],
    }


def read_once(log: Any, resync: type, room: str, cursor: str, page: int) -> float:
    """Seconds to read what follows `cursor` as the app's replay does: RoomLog.after, `page` at a time."""
    started = perf_counter()
    while True:
        entries = log.after(room, cursor, page)
        if isinstance(entries, resync) or len(entries) < page:
            return perf_counter() - started
        cursor = entries[-1]["id"]


async def _replays(
    url: str, log: Any, rooms: dict[int, list[str]], settings: Settings, budget: common.Budget
) -> dict[str, Any]:
    """Every (size, missed) pair once per repetition, the order turned each time; then each pair's figures."""
    page, resync = app_constant("REPLAY_PAGE"), roomlog().Resync
    pairs = [(size, missed) for size in settings.text_sizes for missed in settings.missed]
    runs: dict[tuple[int, int], list[dict[str, Any]]] = {pair: [] for pair in pairs}
    for size in settings.text_sizes:  # a warm-up, not counted: the app loads its read script on first use
        await replay_once(url, f"text-{size}", rooms[size][-2], 1, timeout=10)
    for repeat in range(settings.replay_repeats):
        if budget.spent():
            break
        shift = repeat % len(pairs)
        for size, missed in pairs[shift:] + pairs[:shift]:
            ids = rooms[size]
            cursor = ids[len(ids) - missed - 1] if missed < len(ids) else "0-0"
            timeout = common.delivery_deadline(budget, missed)
            found = await replay_once(url, f"text-{size}", cursor, missed, timeout)
            found["read_seconds"] = read_once(log, resync, f"text-{size}", cursor, page)
            runs[(size, missed)].append(found)
    result: dict[str, Any] = {"page": page}
    for (size, missed), found in runs.items():
        result.setdefault(str(size), {})[str(missed)] = replay_figures(found, missed)
    return result


def replay_figures(runs: list[dict[str, Any]], missed: int) -> dict[str, Any]:
    """p50, p95 and max of a pair's replays, in ms; how many came whole; the log's read at p50."""
    whole = [r for r in runs if "seconds" in r and r["once_in_order"] and not r["unasked"]]
    figures: dict[str, Any] = {"missed": missed, "repeats": len(runs), "whole": len(whole)}
    if broke := next((r["broke"] for r in runs if "broke" in r), None):
        figures["broke"] = broke
    if not whole:
        return figures
    times = sorted(r["seconds"] for r in whole)
    figures.update(
        p50_ms=round(statistics.median(times) * 1000, 2),
        p95_ms=round(times[math.ceil(0.95 * len(times)) - 1] * 1000, 2),  # nearest rank
        max_ms=round(times[-1] * 1000, 2),
        connect_p50_ms=round(statistics.median(r["connect_seconds"] for r in whole) * 1000, 2),
        read_p50_ms=round(statistics.median(r["read_seconds"] for r in whole) * 1000, 2),
        wire_bytes_per_entry=whole[0]["wire_bytes_per_entry"],
    )
    return figures


# -- the write path: chapter 04's plain emit against chapter 06's log first ------------------------


class RoomFleet(LoadClient):
    """Clients of one room on two instances; the sender's `message` events are the numbered broadcasts.

    What each chapter's page sends: chapter 04's `message` {room, text} with no ack; chapter 06's with
    an id and an ack, sent again under the same id when its ack says it was not stored (as
    lab.delivery's Sender does). Each arrival of a `message` counts as a delivery of the number in
    its text (`#17#`).
    """

    def __init__(self, urls: list[str], room: str, *, with_ids: bool, text_size: int):
        super().__init__(urls)
        self.room, self.with_ids, self.text_size = room, with_ids, text_size
        self.unacked: dict[int, tuple[LeanConnection, dict[str, str]]] = {}  # by ack id
        self.refused = 0  # acks that said "not stored, send again" (chapter 06)
        self.sender = 0  # its position in `connections`, once join_all has run

    async def join_all(self, timeout: float) -> None:
        for conn in self.connections:
            ack = await self.call(
                conn, "join", {"room": self.room, "name": f"user-{conn.index}"}, timeout=timeout
            )
            if not ack.get("ok"):
                raise ConnectionError(f"join refused: {ack}")
        # Connections are listed as they finished connecting: the sender is the first one on instance 1.
        self.sender = next(
            n for n, conn in enumerate(self.connections) if conn.index % len(self.servers) == 0
        )

    async def trigger_broadcast(self, sender: LeanConnection) -> int:
        seq = self.expect_broadcast()
        text = f"#{seq}#" + "x" * max(0, self.text_size - len(str(seq)) - 2)
        self._send_message(
            sender, {"room": self.room, "text": text, **({"id": f"m{seq}"} if self.with_ids else {})}
        )
        return seq

    def _send_message(self, sender: LeanConnection, message: dict[str, str]) -> None:
        if not self.with_ids:
            self._send_event(sender, ["message", message])
            return
        ack_id = next(self._ack_ids)
        self.unacked[ack_id] = (sender, message)
        self._send_event(sender, ["message", message], ack_id)

    def on_packet(self, conn: LeanConnection, data: bytes) -> None:
        if data.startswith(MESSAGE):
            start = data.find(TEXT_MARK) + len(TEXT_MARK)
            if start >= len(TEXT_MARK):
                self._count_delivery(conn, int(data[start : data.index(b"#", start)]), perf_counter())
        elif data[:2] == b"43" and (sent := self.unacked.pop(int(data[2 : data.index(b"[")]), None)):
            if b'"ok":false' in data:
                self.refused += 1
                asyncio.get_running_loop().call_later(RETRY_SECONDS, self._send_message, *sent)
        else:
            super().on_packet(conn, data)


def _write_path_scenario(lab: Deployment, settings: Settings, budget: common.Budget) -> dict[str, Any]:
    load_at_start = _load_average()
    found = asyncio.run(_take_turns(lab.instances, settings, budget))
    return {**found, "load_average": {"start": load_at_start, "end": _load_average()}}


async def _take_turns(
    instances: dict[str, list[Service]], settings: Settings, budget: common.Budget
) -> dict[str, Any]:
    fleets = {
        side: RoomFleet(
            [s.url for s in instances[side]],
            "bench",
            with_ids=side == "chapter06",
            text_size=settings.write_text,
        )
        for side in SIDES
    }
    blocks: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    samples: dict[str, list[list[float]]] = {side: [[], []] for side in SIDES}  # per instance, seconds
    try:
        for side, fleet in fleets.items():
            opened = await fleet.open(2 * settings.clients_per_instance, timeout=30)
            if opened.failed:
                return {"skipped": f"{side}: connection failures: {opened.errors}"}
            await fleet.join_all(timeout=10)
            await fleet.measure(settings.warmup_rounds, sequential=True, timeout=30, sender=fleet.sender)
        for number in range(settings.blocks):
            if budget.spent():
                break
            for side in SIDES if number % 2 == 0 else SIDES[::-1]:
                blocks[side].append(await _block(fleets[side], settings, budget, samples[side]))
    finally:
        for fleet in fleets.values():
            await fleet.close()
    return {
        "sides": {side: _side_figures(blocks[side], samples[side], fleets[side]) for side in SIDES},
        "blocks": blocks,
        "comparison": compare(blocks),
    }


async def _block(
    fleet: RoomFleet, settings: Settings, budget: common.Budget, samples: list[list[float]]
) -> dict:
    """Messages one at a time (each instance's receipts kept apart), then a burst."""
    marks = [len(each) for each in fleet.latencies]
    rounds = await fleet.measure(settings.rounds, sequential=True, timeout=30, sender=fleet.sender)
    for kept, each, mark in zip(samples, fleet.latencies, marks, strict=True):
        kept.extend(each[mark:])
    deliveries = settings.burst * fleet.live
    timeout = common.delivery_deadline(budget, deliveries)
    burst = await fleet.measure(settings.burst, sequential=False, timeout=timeout, sender=fleet.sender)
    return {
        "other_instance_p50_ms": rounds.latency_by_server[1]["p50_ms"],
        "rounds_lost": rounds.lost,
        "burst_seconds": round(burst.seconds, 4),
        "messages_per_s": round(burst.broadcasts / burst.seconds) if burst.seconds > 0 else None,
        "burst_lost": burst.lost,
        "burst_disorder": burst.disorder,
    }


def _side_figures(
    blocks: list[dict[str, Any]], samples: list[list[float]], fleet: RoomFleet
) -> dict[str, Any]:
    rates = [b["messages_per_s"] for b in blocks if b["messages_per_s"]]
    return {
        "same_instance": latency_summary(samples[0]),
        "other_instance": latency_summary(samples[1]),
        "messages_per_s_median": round(statistics.median(rates)) if rates else None,
        "lost": sum(b["rounds_lost"] + b["burst_lost"] for b in blocks),
        # Against the send order: the server handles one connection's events concurrently (chapter 02).
        "out_of_send_order": sum(b["burst_disorder"] for b in blocks),
        "refused": fleet.refused,
        "clients": len(fleet.connections),
    }


def compare(blocks: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Chapter 06 against chapter 04, block by block (each pair seconds apart): the other instance's
    p50, and the burst's seconds per message. Each a Hodges-Lehmann share with its signed-rank
    interval (bench/stats.py), and its verdict against SMALLEST_CHANGE."""
    pairs = list(zip(blocks["chapter04"], blocks["chapter06"], strict=False))
    found: dict[str, Any] = {"pairs": len(pairs)}
    for key, pick in (
        ("other_instance_p50", lambda b: b["other_instance_p50_ms"]),
        ("seconds_per_message", lambda b: 1 / b["messages_per_s"] if b["messages_per_s"] else None),
    ):
        values = [(pick(a), pick(b)) for a, b in pairs if pick(a) and pick(b)]
        if not values:
            found[key] = None
            continue
        share = stats.ratio_interval(values)
        added = stats.signed_rank_interval([b - a for a, b in values])
        unit = 1000 if key == "seconds_per_message" else 1  # both in ms
        found[key] = {
            "change": round(share.estimate, 4),
            "low": round(share.low, 4),
            "high": round(share.high, 4),
            "confidence": round(share.confidence, 4),
            "added_ms": round(added.estimate * unit, 4),
            "verdict": stats.verdict(share, SMALLEST_CHANGE),
        }
    return found


# -- the drills ------------------------------------------------------------------------------------


# -- verdicts and summary -------------------------------------------------------------------------


def _largest(record: dict[str, Any]) -> str:
    return str(max(record["settings"]["missed"]))


def targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    largest = _largest(record)
    for size in record["settings"]["text_sizes"]:
        pair = record.get("replay", {}).get(str(size), {}).get(largest)
        found.append(
            {
                "target": f"a page that missed {int(largest):,} messages of {size:,} characters gets each "
                "once, in order, then `replay_done`, in every repetition",
                "measured": f"{pair['whole']} of {pair['repeats']} whole" if pair else None,
                "pass": (pair["whole"] == pair["repeats"] > 0) if pair else None,
            }
        )
    sides = record.get("write_path", {}).get("sides", {})
    for side, figures in sides.items():
        found.append(
            {
                "target": f"{side}: every message of the write path reaches every client of its room",
                "measured": f"{figures['lost']} deliveries lost; {figures['refused']} refused, sent again",
                "pass": figures["lost"] == 0,
            }
        )
    found.append(_drills_target(record))
    return found


def silent_losses(figures: dict[str, Any]) -> int:
    """Messages a drill's clients lost and were not told of (`told`: what their resyncs said was gone)."""
    return figures.get("lost", 0) - figures.get("told", 0)


def _drills_target(record: dict[str, Any]) -> dict[str, Any]:
    """Every drill passed; chapter 06's clients lost nothing untold, showed nothing twice or out of order."""
    target = "the drills pass; chapter 06's clients: 0 lost untold, 0 shown twice, 0 out of order"
    drills, ran = record.get("drills", {}), record.get("drills_run", {})
    if not drills:
        return {"target": target, "measured": ran.get("skipped") or "no drill ran", "pass": None}
    outcomes = [figures["outcome"] for params in drills.values() for figures in params.values()]
    ours = [params["chapter06"] for params in drills.values() if "chapter06" in params]
    faults = sum(silent_losses(f) + f.get("shown_twice", 0) + f.get("out_of_order", 0) for f in ours)
    return {
        "target": target,
        "measured": f"{outcomes.count('passed')} of {len(outcomes)} passed; chapter 06: {faults} faults",
        "pass": outcomes.count("passed") == len(outcomes) and faults == 0 and ran.get("exit_code") == 0,
    }


def headline(record: dict[str, Any]) -> dict[str, str | None]:
    """What a reader compares across machines: the largest replay, memory per message, the write path."""
    largest = _largest(record)
    found = {}
    for size in record["settings"]["text_sizes"]:
        pair = record.get("replay", {}).get(str(size), {}).get(largest, {})
        found[f"replay of {int(largest):,}, {size:,} chars, p50 (ms)"] = report.figure(
            pair.get("p50_ms"), ".0f"
        )
    for size, memory in record.get("memory", {}).items():
        found[f"Redis bytes per message, {int(size):,} chars"] = report.figure(
            memory.get("used_memory_per_message"), ".0f"
        )
    for side, figures in record.get("write_path", {}).get("sides", {}).items():
        found[f"{side} other instance p50 (ms)"] = report.figure(figures["other_instance"]["p50_ms"], ".2f")
        found[f"{side} messages/s"] = report.figure(figures["messages_per_s_median"], ",")
    return found


def summary_markdown(record: dict[str, Any]) -> str:
    lines = report.machine_line(record, "06")
    lines += _redis_lines(record)
    lines += _replay_lines(record)
    lines += _memory_lines(record)
    lines += _write_path_lines(record)
    lines += _drill_lines(record)
    lines.append(report.targets_table(record["targets"]))
    return "\n".join(lines)


def _redis_lines(record: dict[str, Any]) -> list[str]:
    facts = record.get("redis")
    if not facts:
        return []
    return [
        f"Redis {facts['version']} with `appendonly {facts['appendonly']}` and `appendfsync "
        f"{facts['appendfsync']}`, its append-only file on {facts['aof_filesystem']}: every write "
        "is synced to disk before Redis acknowledges it.\n"
    ]


def _replay_lines(record: dict[str, Any]) -> list[str]:
    replay = record.get("replay", {})
    if "skipped" in replay:
        return [f"Replay: not measured ({replay['skipped']}).\n"]
    rows = []
    for size in record["settings"]["text_sizes"]:
        for missed, pair in replay.get(str(size), {}).items():
            rows.append(
                [
                    f"{size:,}",
                    pair.get("wire_bytes_per_entry"),
                    f"{int(missed):,}",
                    pair.get("p50_ms"),
                    pair.get("p95_ms"),
                    pair.get("max_ms"),
                    pair.get("connect_p50_ms"),
                    pair.get("read_p50_ms"),
                    f"{pair['whole']} of {pair['repeats']}"
                    + (f" ({pair['broke']})" if "broke" in pair else ""),
                ]
            )
    header = ["text (chars)", "bytes per entry, replayed", "missed", "p50 (ms)", "p95 (ms)", "max (ms)"]
    header += ["connect answered, p50 (ms)", "the log's read alone, p50 (ms)", "whole, once each, in order"]
    settings = record["settings"]
    text = (
        f"A page's connect, with its cursor that many messages back, to `replay_done`, "
        f"{settings['replay_repeats']} times each, the sizes and counts taking turns; p95 is the nearest "
        "rank. Connect answered: from the same start to Socket.IO's answer to the connect, which the "
        "replay follows. The log's read alone: the "
        f"same entries read by the chapter's RoomLog.after from the bench process, {replay['page']} at a "
        "time as the app pages them; the rest of the time is the app's sending and the page's receiving. "
        "Bytes per entry: the replay frames' length over their entries (the text, its room, ids, name "
        "and JSON)."
    )
    return [report.markdown_table(header, rows), text + "\n"]


def _memory_lines(record: dict[str, Any]) -> list[str]:
    rows = [
        [
            f"{int(size):,}",
            f"{m['messages']:,}",
            m["stream_bytes_per_message"],
            m["dedupe_key_bytes"],
            m["used_memory_per_message"],
            f"{m['appends_per_s']:,}",
        ]
        for size, m in record.get("memory", {}).items()
    ]
    if not rows:
        return []
    header = ["text (chars)", "messages held", "stream bytes per message", "one de-duplication key (bytes)"]
    header += ["used_memory per message", "appends/s while filling"]
    text = (
        "`MEMORY USAGE <stream> SAMPLES 0` over XLEN, and INFO's `used_memory` before and after the room "
        "was filled, over its messages: the stream, the room's counter, and one de-duplication key per "
        "message (each kept for a day, however short the window)."
    )
    return [report.markdown_table(header, rows), text + "\n"]


def _write_path_lines(record: dict[str, Any]) -> list[str]:
    write = record.get("write_path", {})
    if "sides" not in write:
        return [f"The write path: not measured ({write.get('skipped')}).\n"]
    rows = []
    for side, f in write["sides"].items():
        same, other = f["same_instance"], f["other_instance"]
        rows.append(
            [
                side,
                f"{same['p50_ms']} / {same['p99_ms']}",
                f"{other['p50_ms']} / {other['p99_ms']}",
                f"{f['messages_per_s_median']:,}" if f["messages_per_s_median"] else None,
                f["lost"],
            ]
        )
    header = ["`message`", "sender's instance p50 / p99 (ms)", "other instance p50 / p99 (ms)"]
    header += ["messages/s in a burst (median)", "deliveries lost"]
    s = record["settings"]
    lines = [
        report.markdown_table(header, rows),
        f"{s['clients_per_instance']} clients of one room on each of two instances, the sender among the "
        f"first's; {s['write_text']}-character messages. The two chapters took turns, "
        f"{write['comparison']['pairs']} blocks each: {s['rounds']} messages one at a time (each from its "
        f"send to each receipt), then a burst of {s['burst']}. Messages/s: the burst's messages over the "
        "time from its first send to its last receipt.\n",
    ]
    for key, what in (
        ("other_instance_p50", "p50 on the other instance"),
        ("seconds_per_message", "time per message in a burst"),
    ):
        c = write["comparison"].get(key)
        if c:
            lines.append(
                f"Chapter 06 against chapter 04, {what}, block against block: {c['change']:+.1%} "
                f"({c['low']:+.1%} to {c['high']:+.1%}, {c['confidence']:.1%} signed-rank interval), "
                f"{c['added_ms']:+.3f} ms per message: **{c['verdict']}**.\n"
            )
    return lines


def _drill_lines(record: dict[str, Any]) -> list[str]:
    drills, ran = record.get("drills", {}), record.get("drills_run", {})
    if not drills:
        return [f"The drills: not run ({ran.get('skipped', 'no test ran')}).\n"]
    rows = [
        [
            f"`{test}`",
            param,
            *(f.get(key) for key in ("clients", "messages", "lost", "told", "shown_twice", "out_of_order")),
            f["outcome"],
        ]
        for test, params in drills.items()
        for param, f in params.items()
    ]
    header = ["drill", "side", "clients", "messages", "lost", "told (resync)", "shown twice", "out of order"]
    header.append("test")
    text = (
        f"`{ran['command']}`, {ran['seconds']:.0f} s: each test's counts, summed over its clients (pytest's "
        "record_property). Chapter 04 is the baseline: its page keeps no cursor."
    )
    return [report.markdown_table(header, rows), text + "\n"]
