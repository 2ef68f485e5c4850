"""network.matchDNSQueries in a real container in the guest kernel: queries refused by name, and the ways around it.

The container asks a DNS server on its own loopback (port 53, which
containerd's default capabilities let it bind) and sends hand-made queries
every way a program can: sendto and send on a connected socket, IPv4 and
IPv6, UDP and TCP, the query spread over buffers, names in any case, two
questions in one query, two messages in one TCP send. glibc's resolver
(getent) shows the search domains: it asks for the name followed by each
of them first.
"""

from __future__ import annotations

import textwrap

import pytest

from images.testguest.containers import GuestContainers
from images.testguest.vm import TestGuest
from kadapter_api import agent_pb2
from tests.guest.support import DENIED, PolicyApplier, alert_for, alert_stream, nginx_policy, no_alert_for

pytestmark = pytest.mark.guest

RESOLV_CONF = (  # for printf
    "nameserver 127.0.0.1\\nsearch default.svc.cluster.local svc.cluster.local\\n"
    "options ndots:5 timeout:1 attempts:1\\n"
)

# Answers every A query with 10.1.2.3 and every other type with no record, over UDP and TCP on 127.0.0.1:53.
RESPONDER = textwrap.dedent("""\
    import os, socket, struct, threading
    def answer(query):
        end = 12
        while query[end]:
            end += query[end] + 1
        end += 5
        qtype = struct.unpack(">H", query[end - 4:end - 2])[0]
        record = b"\\xc0\\x0c\\x00\\x01\\x00\\x01\\x00\\x00\\x00\\x3c\\x00\\x04" + bytes([10, 1, 2, 3])
        count = 1 if qtype == 1 else 0
        header = query[:2] + b"\\x81\\x80" + query[4:6] + struct.pack(">HHH", count, 0, 0)
        return header + query[12:end] + record * count
    def serve_tcp(listener):
        while True:
            peer, _ = listener.accept()
            with peer:
                data = peer.recv(4096)
                while len(data) >= 2 and len(data) >= 2 + struct.unpack(">H", data[:2])[0]:
                    size = struct.unpack(">H", data[:2])[0]
                    reply = answer(data[2:2 + size])
                    peer.sendall(struct.pack(">H", len(reply)) + reply)
                    data = data[2 + size:]
    listener = socket.create_server(("127.0.0.1", 53))
    threading.Thread(target=serve_tcp, args=(listener,), daemon=True).start()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 53))
    open("/tmp/dns-ready", "w").write(str(os.getpid()))
    while True:
        query, peer = udp.recvfrom(4096)
        udp.sendto(answer(query), peer)
""")

# For each (way, name) pair of its arguments, sends one query and prints "way name: sent" (or denied, or the errno).
CLIENT = textwrap.dedent("""\
    import socket, struct, sys
    def query(name, questions=1):
        labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split(".") if part) + b"\\0"
        question = labels + struct.pack(">HH", 1, 1)
        return struct.pack(">HHHHHH", 0x1234, 0x0100, questions, 0, 0, 0) + question * questions
    def udp(family=socket.AF_INET):
        return socket.socket(family, socket.SOCK_DGRAM)
    def tcp():
        return socket.create_connection(("127.0.0.1", 53))
    def framed(message):
        return struct.pack(">H", len(message)) + message
    WAYS = {
        "sendto": lambda name: udp().sendto(query(name), ("127.0.0.1", 53)),
        "connected": lambda name: (lambda s: (s.connect(("127.0.0.1", 53)), s.send(query(name))))(udp()),
        "ipv6": lambda name: udp(socket.AF_INET6).sendto(query(name), ("::1", 53)),
        "buffers": lambda name: (lambda m, s: s.sendmsg([m[:12], m[12:15], m[15:]], [], 0, ("127.0.0.1", 53)))(
            query(name), udp()),
        "scattered": lambda name: (lambda m, s: s.sendmsg([m[i:i + 1] for i in range(len(m))], [], 0,
                                                          ("127.0.0.1", 53)))(query(name), udp()),
        "two-questions": lambda name: udp().sendto(query(name, 2), ("127.0.0.1", 53)),
        "tcp": lambda name: tcp().sendall(framed(query(name))),
        "tcp-two-messages": lambda name: tcp().sendall(framed(query("allowed.test")) + framed(query(name))),
        "tcp-length-alone": lambda name: (lambda s: (s.send(framed(query(name))[:2]), s.send(query(name))))(tcp()),
    }
    for way, name in zip(sys.argv[1::2], sys.argv[2::2]):
        try:
            WAYS[way](name)
            print(f"{way} {name}: sent")
        except PermissionError:
            print(f"{way} {name}: denied")
        except OSError as error:
            print(f"{way} {name}: errno {error.errno}")
""")


@pytest.fixture
def nginx(containers: GuestContainers, pods: dict[str, str]) -> str:
    """Give the nginx container a pod's resolv.conf and a DNS server on its loopback; return its id."""
    container = pods["nginx-1"]
    setup = (  # the server stays up from one test to the next: its pid is in /tmp/dns-ready
        f"rm -f /etc/resolv.conf && printf '{RESOLV_CONF}' > /etc/resolv.conf && "
        "{ [ -s /tmp/dns-ready ] && kill -0 $(cat /tmp/dns-ready) && exit 0; "
        "nohup /usr/bin/python3 /tmp/dns-responder.py >/dev/null 2>&1 & "
        "for i in $(seq 100); do [ -s /tmp/dns-ready ] && exit 0; sleep 0.1; done; exit 1; }"
    )
    for name, text in (("dns-responder.py", RESPONDER), ("dns-client.py", CLIENT)):
        containers.exec(container, ["/usr/bin/python3", "-c", f"open('/tmp/{name}', 'w').write({text!r})"])
    assert containers.shell(container, setup).returncode == 0
    return container


def ask_all(containers: GuestContainers, container: str, cases: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Send one query per (way, name) from the container; return "sent", "denied" or an errno for each."""
    result = containers.exec(
        container, ["/usr/bin/python3", "/tmp/dns-client.py", *(word for case in cases for word in case)]
    )
    answers = {}
    for line in result.stdout.splitlines():
        case, _, answer = line.partition(": ")
        way, _, name = case.partition(" ")
        answers[way, name] = answer
    assert list(answers) == cases, result
    return answers


def ask(containers: GuestContainers, container: str, way: str, name: str) -> str:
    """Send one query for name the given way from the container; return "sent", "denied" or an errno."""
    return ask_all(containers, container, [(way, name)])[way, name]


BLOCK_EXAMPLE = """\
  network:
    matchDNSQueries:
    - domain: Example.COM
      severity: 8
      tags: ["dns"]
      message: no example.com
  action: Block
"""


# (way, name) -> what happens under BLOCK_EXAMPLE.
BLOCKED_OR_NOT = {
    ("sendto", "example.com"): "denied",  # the domain
    ("sendto", "www.example.com"): "denied",  # a name in it
    ("sendto", "a.b.c.d.e.f.g.h.i.j.k.example.com"): "denied",  # twelve labels deep
    ("sendto", "WwW.ExAmPlE.cOm"): "denied",  # DNS names have no case
    ("sendto", "example.com.default.svc.cluster.local"): "denied",  # followed by a search domain
    ("sendto", "notexample.com"): "sent",  # a longer label is another domain
    ("sendto", "example.com.evil"): "sent",  # a domain below example.com's name that is no search domain
    ("sendto", "example.org"): "sent",
    ("connected", "www.example.com"): "denied",  # connect() then send()
    ("connected", "example.org"): "sent",
    ("ipv6", "www.example.com"): "denied",
    ("buffers", "www.example.com"): "denied",  # the query spread over three buffers
    ("buffers", "example.org"): "sent",
    ("scattered", "example.org"): "denied",  # one byte per buffer: not read whole, and a rule blocks
    ("two-questions", "example.org"): "denied",  # a second question would go unread
    ("tcp", "www.example.com"): "denied",
    ("tcp", "example.org"): "sent",
    ("tcp-two-messages", "www.example.com"): "denied",  # an allowed message hiding a blocked one behind it
    ("tcp-length-alone", "example.org"): "denied",  # the length prefix sent on its own
}


def test_a_blocked_domain_is_refused_however_the_query_is_sent(
    policies: PolicyApplier, containers: GuestContainers, nginx: str
) -> None:
    """Block example.com: every query for a name in it is refused, other names pass, unreadable queries are refused."""
    policies.apply(nginx_policy("no-example", BLOCK_EXAMPLE))
    assert ask_all(containers, nginx, list(BLOCKED_OR_NOT)) == BLOCKED_OR_NOT


def test_the_resolver_fails_for_a_blocked_name_and_the_alert_names_it(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, nginx: str, pods: dict[str, str]
) -> None:
    """getent: a blocked name is not resolved and alerted field by field; others resolve, in the other pod too."""
    policies.apply(nginx_policy("no-example", BLOCK_EXAMPLE))
    with alert_stream(guest) as alerts:
        refused = containers.shell(nginx, "getent hosts www.example.com")
        assert refused.returncode != 0 and "10.1.2.3" not in refused.stdout, refused
        alert = alert_for(alerts, "www.example.com.default.svc.cluster.local")  # ndots:5: the search domain first
        assert "10.1.2.3" in containers.shell(nginx, "getent hosts allowed.test").stdout
        no_alert_for(alerts, "allowed.test.default.svc.cluster.local")
    fields = (alert.operation, alert.action, alert.result, alert.policy_name, alert.severity, list(alert.tags))
    assert fields == ("Network", agent_pb2.ACTION_BLOCK, DENIED, "no-example", 8, ["dns"])
    assert alert.data == "lsm=SOCKET_SENDMSG domain=www.example.com.default.svc.cluster.local"
    assert (alert.message, alert.pod_name, alert.container_name) == ("no example.com", "nginx-1", "nginx")
    assert alert.process_name == "/usr/bin/getent"


def test_an_allowed_domain_makes_an_allow_list_under_the_network_posture(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, nginx: str
) -> None:
    """Allow api.test: names in it pass, others are refused (block posture) or only reported (audit posture)."""
    body = """\
  network:
    matchDNSQueries:
    - domain: api.test
  action: Allow
"""
    policies.apply(nginx_policy("only-api", body))
    assert ask(containers, nginx, "sendto", "v1.api.test") == "sent"
    assert ask(containers, nginx, "sendto", "api.test.default.svc.cluster.local") == "sent"
    assert ask(containers, nginx, "sendto", "example.org") == "denied"
    assert "10.1.2.3" in containers.shell(nginx, "getent hosts v1.api.test").stdout
    policies.apply(nginx_policy("only-api", body), default_posture="audit")
    with alert_stream(guest) as alerts:
        assert ask(containers, nginx, "sendto", "example.org") == "sent"
        alert = alert_for(alerts, "example.org")
    assert (alert.policy_name, alert.action, alert.result) == ("DefaultPosture", agent_pb2.ACTION_AUDIT, "Passed")


def test_dns_rules_from_a_source_and_audit(
    policies: PolicyApplier, guest: TestGuest, containers: GuestContainers, nginx: str
) -> None:
    """Block example.com for getent only (python may ask); audit example.org for everyone, never refusing it."""
    body = """\
  network:
    matchDNSQueries:
    - domain: example.com
      fromSource:
      - path: /usr/bin/getent
      action: Block
    - domain: example.org
      action: Audit
"""
    policies.apply(nginx_policy("sources-and-audit", body))
    assert ask(containers, nginx, "sendto", "www.example.com") == "sent"
    assert containers.shell(nginx, "getent hosts www.example.com").returncode != 0
    with alert_stream(guest) as alerts:
        assert ask(containers, nginx, "sendto", "example.org") == "sent"
        alert = alert_for(alerts, "example.org")
    assert (alert.policy_name, alert.action, alert.result) == ("sources-and-audit", agent_pb2.ACTION_AUDIT, "Passed")
    assert ask(containers, nginx, "scattered", "example.org") == "denied"  # a Block rule exists: unread is refused
