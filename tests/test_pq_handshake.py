"""The post-quantum hybrid handshake (PROTOCOL.md 4.4): X25519 + ML-KEM-768 through HKDF."""

from __future__ import annotations

import functools
import json

from securechat.crypto.encoding import b64d, b64e
from securechat.errors import ErrorCode
from securechat.protocol import events as ev
from securechat.protocol.client import ClientProtocol
from securechat.protocol.limits import ServerConfig
from securechat.simulation import Frame, Simulation
from tests.helpers import user_keys as cached_keys

PQ = functools.partial(ClientProtocol, key_exchange="x25519+mlkem768")


def _closed(sim: Simulation, name: str) -> ev.ConnectionClosed:
    return sim.last_event(name, ev.ConnectionClosed)


def test_hybrid_handshake_then_the_whole_story_works() -> None:
    sim = Simulation(seed=21)
    sim.keys["alice"] = cached_keys("alice")
    sim.keys["bob"] = cached_keys("bob")
    alice = sim.add_client("alice", client_class=PQ)
    sim.run_until_idle()
    done = sim.last_event("alice", ev.HandshakeCompleted)
    assert done.key_exchange == "x25519+mlkem768"
    hello = json.loads(sim.trace[0].data[4:])
    assert hello["key_exchange"] == "x25519+mlkem768" and len(b64d(hello["kem_key"])) == 1184
    assert len(b64d(json.loads(sim.trace[1].data[4:])["kem_ciphertext"])) == 1088
    alice.register("alice", "pw", sim.keys["alice"])
    sim.run_until_idle()
    alice.login("alice", "pw", sim.keys["alice"])
    sim.run_until_idle()
    bob = sim.register_and_login("bob", "pw")  # a classical client on the same server
    alice.open_chat(["bob"])
    sim.run_until_idle()
    chat = sim.last_event("alice", ev.ChatOpened).chat_id
    alice.send_chat(chat, "post-quantum channel")
    sim.run_until_idle()
    assert sim.last_event("bob", ev.ChatReceived).text == "post-quantum channel"
    assert bob.state.name == "ONLINE"


def test_classical_stays_the_default() -> None:
    sim = Simulation(seed=22)
    sim.add_client("alice")
    sim.run_until_idle()
    assert sim.last_event("alice", ev.HandshakeCompleted).key_exchange == "x25519"
    assert "kem_key" not in json.loads(sim.trace[0].data[4:])


def test_server_can_require_the_hybrid_exchange() -> None:
    sim = Simulation(seed=23, config=ServerConfig(require_post_quantum=True))
    sim.add_client("old")
    sim.run_until_idle()
    assert _closed(sim, "old").code == ErrorCode.HANDSHAKE_FAILED
    sim.add_client("new", client_class=PQ)
    sim.run_until_idle()
    assert sim.last_event("new", ev.HandshakeCompleted).key_exchange == "x25519+mlkem768"


def _rewrite_hello(change):  # type: ignore[no-untyped-def]
    state = {"done": False}

    def intercept(frame: Frame) -> list[Frame]:
        if state["done"] or frame.source == "server":
            return [frame]
        state["done"] = True
        body = json.loads(frame.data[4:])
        change(body)
        data = json.dumps(body).encode()
        return [Frame(source=frame.source, target=frame.target, data=len(data).to_bytes(4, "big") + data,
                      sent_at=frame.sent_at, index=frame.index)]

    return intercept


def test_stripping_ml_kem_from_the_hello_is_detected() -> None:
    """A MITM that downgrades to classical X25519 changes the transcript the server signs."""
    sim = Simulation(seed=24)

    def strip(body: dict) -> None:  # type: ignore[type-arg]
        body["key_exchange"] = "x25519"
        del body["kem_key"]

    sim.intercept = _rewrite_hello(strip)
    sim.add_client("alice", client_class=PQ)
    sim.run_until_idle()
    assert _closed(sim, "alice").code == ErrorCode.HANDSHAKE_FAILED
    assert not sim.events_of("alice", ev.HandshakeCompleted)


def test_kem_key_without_the_hybrid_exchange_is_refused() -> None:
    sim = Simulation(seed=25)

    def add(body: dict) -> None:  # type: ignore[type-arg]
        body["kem_key"] = b64e(bytes(1184))

    sim.intercept = _rewrite_hello(add)
    sim.add_client("alice")
    sim.run_until_idle()
    assert _closed(sim, "alice").code == ErrorCode.HANDSHAKE_FAILED


def test_tampered_kem_ciphertext_fails_the_server_signature() -> None:
    sim = Simulation(seed=26)
    state = {"done": False}

    def tamper(frame: Frame) -> list[Frame]:
        if state["done"] or frame.source != "server":
            return [frame]
        state["done"] = True
        body = json.loads(frame.data[4:])
        ct = bytearray(b64d(body["kem_ciphertext"]))
        ct[10] ^= 1
        body["kem_ciphertext"] = b64e(bytes(ct))
        data = json.dumps(body).encode()
        return [Frame(source=frame.source, target=frame.target, data=len(data).to_bytes(4, "big") + data,
                      sent_at=frame.sent_at, index=frame.index)]

    sim.intercept = tamper
    sim.add_client("alice", client_class=PQ)
    sim.run_until_idle()
    assert _closed(sim, "alice").code == ErrorCode.HANDSHAKE_FAILED
