"""Each chapter's topology: what the demo server and the bench start for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lab.apps import start_app, under_gunicorn
from lab.celery_workers import CHAPTER05, start_beat, start_worker
from lab.haproxy import start_haproxy
from lab.hosts import Network
from lab.nginx import start_nginx
from lab.processes import REPO_ROOT, LabBench, Service
from lab.redis_server import start_redis

BALANCERS = {"nginx": start_nginx, "haproxy": start_haproxy}


@dataclass(frozen=True)
class Ports:
    """The fixed ports of one side of a demo, the same every run and in every chapter's README.

    Side k of a chapter (0 the chapter, then each twin in order) owns 5000 + 100 k and up:
    one instance listens on the base (5000), several on base + 1, + 2, ... (chat-1 on 5001);
    the balancer on base + 80 (5080) and the side's own Redis on base + 90 (5090).
    """

    base: int

    @classmethod
    def of_side(cls, side: int, first: int = 5000) -> Ports:
        return cls(first + 100 * side)

    def instance(self, i: int, count: int) -> int:
        return self.base if count == 1 else self.base + i

    @property
    def balancer(self) -> int:
        return self.base + 80

    @property
    def redis(self) -> int:
        return self.base + 90


@dataclass(frozen=True)
class Topology:
    """One side of a chapter (the correct app or its antipattern): which script, how many instances."""

    script: str
    instances: int = 1
    needs_redis: bool = False
    env: dict[str, str] = field(default_factory=dict)
    # One address in front of the instances: ("nginx" or "haproxy", its config file).
    balancer: tuple[str, str] | None = None
    # Celery: how many workers of which app module (`celery -A`), and whether beat runs too.
    workers: int = 0
    worker_app: str = str(CHAPTER05 / "make_celery.py")
    beat: bool = False
    # Run the instances under gunicorn with this config file instead of `python script`.
    gunicorn: str | None = None
    # It never listens (a deadlock at start-up, on purpose): started, not waited on.
    never_ready: bool = False

    def mistake(self) -> str | None:
        """The antipatterns/ file that holds this side's mistake, or None for a correct side."""
        balancer = self.balancer[1] if self.balancer else None
        for path in (self.script, balancer, self.gunicorn, self.worker_app):
            if path and Path(path).resolve().is_relative_to(REPO_ROOT / "antipatterns"):
                return str(Path(path).resolve().relative_to(REPO_ROOT))
        return None


@dataclass(frozen=True)
class Chapter:
    number: str
    title: str
    correct: Topology
    # Each broken twin, by the label its processes are named after: ("no-queue", Topology(...)).
    antipatterns: tuple[tuple[str, Topology], ...] = ()
    # What to try in the browsers, printed by `python -m lab.serve` and shown by the control room.
    demo: str = ""
    # `serve NN --hosts`: the sides to run with each process on a host of its own (lab/hosts.py),
    # and what to try then.
    on_hosts: tuple[tuple[str, Topology], ...] = ()
    hosts_demo: str = ""

    @property
    def sides(self) -> tuple[tuple[str, Topology], ...]:
        """The chapter, labelled "chapter", then each twin: side k of the demo owns Ports.of_side(k)."""
        return (("chapter", self.correct), *self.antipatterns)


# Chapter 05's processes share one signing key, so a token from one instance opens them all.
CELERY_ENV = {"SECRET_KEY": "serve-05", "STEP_SECONDS": "0.5"}

CHAPTER04 = "chapters/04_nginx_lb/app.py"
CHAPTER04_NGINX = "chapters/04_nginx_lb/nginx.conf"
CHAPTER06 = "chapters/06_delivery_guarantees/app.py"
CHAPTER04_HAPROXY = "chapters/04_nginx_lb/haproxy.cfg"


def behind_nginx(config: str, script: str = CHAPTER04) -> Topology:
    """Three instances of `script` (chapter 04's app unless told) and Redis, behind nginx running `config`."""
    return Topology(script, instances=3, needs_redis=True, balancer=("nginx", config))


CHAPTERS: dict[str, Chapter] = {
    "01": Chapter(
        "01",
        "basic chat",
        correct=Topology("chapters/01_basic_chat/app.py"),
        antipatterns=(
            ("broadcast", Topology("antipatterns/01_broadcast_to_everyone.py")),
            ("unguarded", Topology("antipatterns/01_unguarded_handler.py")),
        ),
        demo=(
            "Join room 'a' in one window and room 'b' in another, then send messages.\n"
            "On the chapter app a message stays in its room; on broadcast it leaks into both.\n"
            "unguarded chats like the chapter: its flaw shows only to a hostile client (its log)."
        ),
    ),
    "02": Chapter(
        "02",
        "async modes",
        correct=Topology("chapters/02_async_modes/run_gevent.py"),
        antipatterns=(
            ("blocking-sleep", Topology("antipatterns/02_blocking_sleep.py")),
            ("cpu-bound", Topology("antipatterns/02_cpu_bound_handler.py")),
            ("late-patch", Topology("antipatterns/02_late_monkey_patch.py", never_ready=True)),
        ),
        demo=(
            "Open each URL in two windows and watch the ping readout in the second window.\n"
            "Click 'slow I/O (3 s)' in the first: on the chapter app the ping stays in milliseconds;\n"
            "on blocking-sleep it freezes for 3 s, for every window; on cpu-bound, 'CPU work' does.\n"
            "late-patch never listens: its log shows gevent's MonkeyPatchWarning, then nothing."
        ),
    ),
    "03": Chapter(
        "03",
        "Redis scaling",
        correct=Topology("chapters/03_redis_scaling/app.py", instances=2, needs_redis=True),
        antipatterns=(
            ("no-queue", Topology("antipatterns/03_no_message_queue.py", instances=2, needs_redis=True)),
            (
                "counter-in-memory",
                Topology("antipatterns/03_counter_in_process_memory.py", instances=2, needs_redis=True),
            ),
        ),
        demo=(
            "Open chapter-1 and chapter-2 side by side, then no-queue-1 and no-queue-2.\n"
            "Broadcast from one window: on the chapter both instances get it; on no-queue\n"
            "only the sender's instance does. The chapter pages count users across both instances;\n"
            "counter-in-memory counts only its own."
        ),
    ),
    "04": Chapter(
        "04",
        "nginx, sticky sessions",
        correct=behind_nginx(CHAPTER04_NGINX),
        antipatterns=(
            ("round-robin", behind_nginx("antipatterns/04_round_robin.conf")),
            ("ip-hash", behind_nginx("antipatterns/04_ip_hash.conf")),
            ("no-upgrade", behind_nginx("antipatterns/04_no_upgrade_headers.conf")),
            (
                "gunicorn-w4",
                Topology(
                    CHAPTER04, needs_redis=True, gunicorn="antipatterns/04_gunicorn_many_workers.conf.py"
                ),
            ),
        ),
        demo=(
            "Open the nginx addresses (chapter-nginx, round-robin-nginx, ...), each in two windows.\n"
            "Behind the chapter's sticky nginx, each page names its instance and goes to websocket.\n"
            "Behind round-robin nginx (and gunicorn-w4), the pages flap between connected and\n"
            "disconnected: each long-poll lands on another instance (400 Invalid session).\n"
            "Behind no-upgrade nginx the pages stay on polling. Then kill the instance a chapter\n"
            "page names: the page moves to another instance and keeps chatting."
        ),
        on_hosts=(
            ("chapter", Topology(CHAPTER04, 3, needs_redis=True, balancer=("haproxy", CHAPTER04_HAPROXY))),
            (
                "healthz-deaf",
                Topology(
                    "antipatterns/04_healthz_deaf_to_the_queue.py",
                    3,
                    needs_redis=True,
                    balancer=("haproxy", CHAPTER04_HAPROXY),
                ),
            ),
        ),
        hosts_demo=(
            "Each process runs on a host of its own; HAProxy checks each instance's /healthz.\n"
            "Open each side's HAProxy address in two windows, and note the instance each page names.\n"
            "Press 'cut from Redis' on that instance: Redis's host forgets its connections and the\n"
            "link goes dark. The chapter's instance answers 503 within seconds, HAProxy closes its\n"
            "connections and the page comes back on another instance. The twin's stays green, and\n"
            "its page hears nothing from the others, still after 'heal', for 30 s and more."
        ),
    ),
    "05": Chapter(
        "05",
        "Celery",
        correct=Topology(
            "chapters/05_celery/app.py", instances=2, needs_redis=True, env=CELERY_ENV, workers=2, beat=True
        ),
        antipatterns=(
            (
                "no-queue",
                Topology(
                    "chapters/05_celery/app.py",
                    instances=1,
                    needs_redis=True,
                    env=CELERY_ENV,
                    workers=1,
                    worker_app="antipatterns/05_worker_without_queue.py",
                    beat=True,
                ),
            ),
            (
                "emit-to-sid",
                Topology(
                    "antipatterns/05_emit_to_sid.py",
                    instances=2,
                    needs_redis=True,
                    env=CELERY_ENV,
                    workers=1,
                    beat=True,
                ),
            ),
            (
                "duplicates",
                Topology(
                    "antipatterns/05_duplicate_background_tasks.py",
                    instances=2,
                    needs_redis=True,
                    env=CELERY_ENV,
                    workers=1,  # the reports still need one; the figures come from the instances
                ),
            ),
        ),
        demo=(
            "Log in on chapter-1 and start a report: the bar moves to done. Log in as the same\n"
            "user on chapter-2: the same task's events reach that page too; another user sees none.\n"
            "no-queue-1: the bar never moves, though the worker's log says the task succeeded.\n"
            "emit-to-sid-1: start a report, then reload the page and log in again mid-task: the\n"
            "result never comes. duplicates-1 and -2: the dashboard shows figures from both\n"
            "instances, two a second, where the chapter shows one from celery beat."
        ),
    ),
    "06": Chapter(
        "06",
        "delivery guarantees",
        correct=behind_nginx(CHAPTER04_NGINX, CHAPTER06),
        antipatterns=(
            ("replay-before-join", behind_nginx(CHAPTER04_NGINX, "antipatterns/06_replay_before_join.py")),
            ("no-dedupe-on-retry", behind_nginx(CHAPTER04_NGINX, "antipatterns/06_no_dedupe_on_retry.py")),
            ("apply-on-arrival", behind_nginx(CHAPTER04_NGINX, "antipatterns/06_apply_on_arrival.py")),
        ),
        demo=(
            "Open chapter-nginx in two windows, join one room in both, and chat. Take one window\n"
            "offline (DevTools, Network, Offline), send from both, then back online: it replays what\n"
            "it missed, each message once and in number order, and sends what it typed offline, once.\n"
            "Kill the instance a page names (the control room): it moves to another, missing nothing.\n"
            "replay-before-join: a page back online replays, then joins: what it typed offline is\n"
            "refused, and what is said in between reaches it only as a gap it fetches ('gap filled').\n"
            "no-dedupe-on-retry chats like the chapter until an ack is lost (its test loses one on\n"
            "purpose): kill the page's instance as you press Send, and every page may show it twice.\n"
            "apply-on-arrival shows a message twice whenever one comes again (a gap fetched, a retry\n"
            "after a lost ack; its test loses a live copy on purpose): by hand, a race, as above."
        ),
    ),
}


def start_topology(
    bench: LabBench,
    topology: Topology,
    *,
    prefix: str,
    ports: Ports | None = None,
    host: str = "127.0.0.1",
    lan_address: str | None = None,
    timeout: float = 30.0,
    network: Network | None = None,
) -> list[Service]:
    """Start Redis if the topology needs it, its app instances, named <prefix>-1 ... <prefix>-N,
    its balancer, <prefix>-nginx (or -haproxy), which comes first in the list returned, and its
    Celery workers and beat, which come last. Redis, <prefix>-redis, is not in the list.

    With `ports`, each listens on its fixed port (the demo); without, on OS-assigned ones.
    The side's pages (its balancer, else its instances) listen on `host`, the rest on loopback;
    with `lan_address`, the instances answer `Host: <lan_address>` too (TRUSTED_HOSTS), and no other.
    With `network`, Redis and each instance run on a host of their own (<prefix>-redis,
    <prefix>-1, ...), on their usual ports there, and the balancer on the machine's address on
    that network.
    """
    env = dict(topology.env)
    if network:
        host = lan_address = network.gateway
    if lan_address:
        env["TRUSTED_HOSTS"] = f"127.0.0.1,localhost,{lan_address}"
    pages = {"HOST": host} if topology.balancer is None and not network else {}
    if topology.needs_redis:
        on = network.host(f"{prefix}-redis") if network else None
        redis = start_redis(
            bench, name=f"{prefix}-redis", port=ports.redis if ports and not on else None, on=on
        )
        env["REDIS_URL"] = redis.url

    def instance(i: int) -> Service:
        on = network.host(f"{prefix}-{i}") if network else None
        trusted = {"TRUSTED_HOSTS": f"{env['TRUSTED_HOSTS']},{on.address}"} if on else {}
        return start_app(
            bench,
            topology.script,
            name=f"{prefix}-{i}",
            env={**env, **pages, **trusted},
            port=ports.instance(i, topology.instances) if ports and not on else None,
            wait_ready=not topology.never_ready,
            timeout=timeout,
            on=on,
            **under_gunicorn(topology.gunicorn, f"{prefix}-{i}") if topology.gunicorn else {},
        )

    instances = [instance(i) for i in range(1, topology.instances + 1)]
    workers = [
        start_worker(bench, topology.worker_app, name=f"{prefix}-worker-{i}", env=env)
        for i in range(1, topology.workers + 1)
    ]
    if topology.beat:
        workers.append(start_beat(bench, topology.worker_app, name=f"{prefix}-beat", env=env))
    if topology.balancer is None:
        return [*instances, *workers]
    kind, config = topology.balancer
    port = ports.balancer if ports else None
    balancer = BALANCERS[kind](bench, config, instances, name=f"{prefix}-{kind}", port=port, host=host)
    return [balancer, *instances, *workers]
