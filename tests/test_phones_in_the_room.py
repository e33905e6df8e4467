"""`serve --host 0.0.0.0`: phones on the room's network open the chapter's pages at the address
serve prints, the apps trust that address and no other name, and the control room stays on loopback."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest
import requests

from lab import serve
from lab.haproxy import render_config as haproxy_config
from lab.nginx import render_config as nginx_config
from lab.processes import REPO_ROOT


def test_a_phone_opens_the_printed_address_and_the_control_room_stays_on_loopback(serving):
    """`serve --host 0.0.0.0` prints the address a phone opens; it gets the page, other names a 400.

    Each page's address on the machine's network is printed beside its loopback one; a request
    under that Host gets the page and its Socket.IO handshake, and the control room listens on
    127.0.0.1 alone. Every request goes to loopback: the pages listen on every address."""
    phones = serve.phone_address("0.0.0.0")
    demo = serving("01", "--twin", "broadcast", "--host", "0.0.0.0")
    printed = "".join(demo.output)
    if phones is None:
        assert "no phone can reach its pages" in printed
        pytest.skip("this machine has no network but loopback: no address a phone could open")
    # One phone address per page, beside its loopback one.
    pages = dict(
        re.findall(rf"(http://127\.0\.0\.1:\d+)/  phones: (http://{re.escape(phones)}:\d+)/", printed)
    )
    assert len(pages) == 2, printed
    assert f"the apps trust {phones} too" in printed

    for loopback, phone in pages.items():
        port = phone.rsplit(":", 1)[1]
        # The page, asked for by the name a phone uses, on any address: 127.0.0.2 too.
        as_a_phone = {"Host": f"{phones}:{port}"}
        assert requests.get(f"{loopback}/", headers=as_a_phone, timeout=5).status_code == 200
        assert requests.get(f"http://127.0.0.2:{port}/", headers=as_a_phone, timeout=5).status_code == 200
        # The page's own Socket.IO handshake, from the phone's origin.
        handshake = requests.get(
            f"{loopback}/socket.io/?EIO=4&transport=polling",
            headers={**as_a_phone, "Origin": phone},
            timeout=5,
        )
        assert handshake.status_code == 200, handshake.text
        # Nothing wider: any other name is still refused.
        other = requests.get(f"{loopback}/", headers={"Host": f"evil.example:{port}"}, timeout=5)
        assert (other.status_code, other.text) == (400, "untrusted host: add it to TRUSTED_HOSTS")

    # The control room listens on 127.0.0.1 alone: at any other address, nothing answers.
    room = demo.control_room()
    assert room.startswith("http://127.0.0.1:")
    assert requests.get(f"{room}/api/state", timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.2:{room.rsplit(':', 1)[1]}/api/state", timeout=5)
    demo.stop()


class FakeUDP:
    """socket.socket for a UDP socket whose connect() the kernel would route: no send, ever."""

    route: str | None = "192.168.1.20"  # the address the route leaves from; None: no route
    asked: list[tuple[str, int]] = []

    def __init__(self, family: int, kind: int):
        assert (family, kind) == (serve.socket.AF_INET, serve.socket.SOCK_DGRAM)

    def __enter__(self) -> FakeUDP:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def connect(self, address: tuple[str, int]) -> None:
        FakeUDP.asked.append(address)
        if self.route is None:
            raise OSError(errno.ENETUNREACH, "Network is unreachable")

    def getsockname(self) -> tuple[str, int]:
        return (self.route, 40000)


@pytest.fixture
def routes(monkeypatch):
    FakeUDP.asked = []
    monkeypatch.setattr(serve.socket, "socket", FakeUDP)
    return FakeUDP


def test_the_phone_address_is_where_the_route_to_a_private_network_leaves(routes, monkeypatch):
    """The phone address is where this machine's route to a private network leaves from; none on loopback.

    For 0.0.0.0 a UDP connect(), which sends nothing, finds it; without a route there is none,
    and an address given to --host is its own phone address."""
    assert serve.phone_address("0.0.0.0") == "192.168.1.20"
    assert [serve.ipaddress.ip_address(host).is_private for host, _ in routes.asked] == [True]
    monkeypatch.setattr(routes, "route", None)
    assert serve.phone_address("0.0.0.0") is None
    # An address given as is is the phone address; loopback has none, and asks no route.
    routes.asked.clear()
    assert serve.phone_address("192.168.1.7") == "192.168.1.7"
    assert serve.phone_address("127.0.0.1") is None
    assert serve.phone_address("localhost") is None
    assert routes.asked == []


def test_serve_refuses_a_host_that_is_not_an_ipv4_address():
    """--host takes an IPv4 address or localhost; a name or an IPv6 one is refused before anything starts."""
    for host in ("my-laptop.local", "::"):
        with pytest.raises(SystemExit) as refused:
            serve.main(["01", "--host", host])
        assert refused.value.code == 2


def test_a_balancer_listens_where_serve_host_says(tmp_path: Path):
    """nginx's listen line and HAProxy's bind line take serve's --host; loopback stays the default."""
    nginx = (REPO_ROOT / "chapters/04_nginx_lb/nginx.conf").read_text()
    assert re.search(
        r"listen 0\.0\.0\.0:5080\b", nginx_config(nginx, 5080, ["127.0.0.1:5001"], tmp_path, "0.0.0.0")
    )
    assert re.search(r"listen 127\.0\.0\.1:5080\b", nginx_config(nginx, 5080, ["127.0.0.1:5001"], tmp_path))
    haproxy = (REPO_ROOT / "chapters/04_nginx_lb/haproxy.cfg").read_text()
    assert re.search(
        r"bind 0\.0\.0\.0:5080\b", haproxy_config(haproxy, 5080, [("chat-1", "127.0.0.1:5001")], "0.0.0.0")
    )
