"""Tests of securechat.simulation: determinism, the trace, Eve's view and every Mallory helper.

Each attack test builds a fresh two-user chat (alice and bob) from keys generated once per module, then
checks the documented effect: a record that is not the next one, intact, closes the connection with
``bad_record`` (docs/THREATS.md 30-33), and end-to-end checks turn a replayed chat message into ``replay``.
"""

from __future__ import annotations

import json
import random

import pytest

from securechat.crypto.signatures import SignatureScheme
from securechat.protocol import events as ev
from securechat.protocol import messages as m
from securechat.protocol.client import ClientProtocol
from securechat.protocol.codec import decode_message, encode_frame
from securechat.protocol.identity import UserKeys, generate_user_keys
from securechat.simulation import (
    SERVER,
    Frame,
    Simulation,
    capture,
    chain,
    delay,
    drop,
    duplicate,
    flip_bit,
    inject_frame,
    modify,
    reflect,
    reorder,
    replay,
    tamper,
)


@pytest.fixture(scope="module")
def keys() -> dict[str, UserKeys]:
    rng = random.Random(99)
    return {
        "alice": generate_user_keys(SignatureScheme.RSA_PSS_SHA256, random_bytes=rng.randbytes),
        "bob": generate_user_keys(SignatureScheme.DSA_SHA256, random_bytes=rng.randbytes),
    }


def chat_pair(keys: dict[str, UserKeys], seed: int = 7) -> tuple[Simulation, str]:
    """alice and bob online, in one chat; returns the simulation and the chat id."""
    sim = Simulation(seed=seed)
    sim.keys.update(keys)
    alice = sim.register_and_login("alice", "pw-a")
    sim.register_and_login("bob", "pw-b")
    alice.open_chat(["bob"])
    sim.run_until_idle()
    return sim, sim.last_event("alice", ev.ChatOpened).chat_id


def closed_code(sim: Simulation, name: str) -> str | None:
    closed: ev.ConnectionClosed = sim.last_event(name, ev.ConnectionClosed)
    return closed.code


def send_two(sim: Simulation, chat_id: str, name: str = "alice") -> None:
    """Two chat messages from *name*, each in its own record."""
    client = sim.client(name)
    client.send_chat(chat_id, "first")
    sim.flush()
    client.send_chat(chat_id, "second")
    sim.run_until_idle()


# --- determinism and the trace ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_trace_bytes(keys: dict[str, UserKeys]) -> None:
    runs = []
    for _ in range(2):
        sim, chat_id = chat_pair(keys, seed=11)
        sim.client("alice").send_chat(chat_id, "hello")
        sim.run_until_idle()
        runs.append([(r.source, r.target, r.time, r.data) for r in sim.trace])
    assert runs[0] == runs[1]
    other, _ = chat_pair(keys, seed=12)
    assert [r.data for r in other.trace] != [d for *_, d in runs[0]]


def test_user_keys_from_the_seed_are_deterministic() -> None:
    a, b = Simulation(seed=3), Simulation(seed=3)
    assert a.user_keys("x").signing_public == b.user_keys("x").signing_public


def test_trace_records_who_what_and_how_big(keys: dict[str, UserKeys]) -> None:
    sim, chat_id = chat_pair(keys)
    first = sim.trace[0]
    assert (first.source, first.target, first.types, first.action) == ("alice", SERVER, ("client_hello",),
                                                                         "delivered")
    assert first.size == len(first.data) > 0
    assert sim.trace[1].types == ("server_hello",)
    kinds = [r.inner for r in sim.trace if r.source == "alice"]
    assert ("register",) in kinds and ("login",) in kinds and ("chat_open",) in kinds
    assert all(r.label.startswith("record[") for r in sim.trace[2:] if r.inner)


def test_eavesdropper_sees_no_inner_types_after_the_handshake(keys: dict[str, UserKeys]) -> None:
    sim, chat_id = chat_pair(keys)
    sim.client("alice").send_chat(chat_id, "secret canary 12345")
    sim.run_until_idle()
    view = sim.eavesdropper_view()
    assert view[0]["visible_types"] == ("client_hello",)
    assert set(view[0]["clear_fields"]) == {"type", "version", "random", "key_share", "key_exchange"}
    after = [row for row in view if row["visible_types"] not in (("client_hello",), ("server_hello",))]
    assert after and all(row["visible_types"] == ("record",) for row in after)
    assert all(row["clear_fields"] == ("type", "data") for row in after)
    wire = b"".join(r.data for r in sim.trace)
    assert b"canary" not in wire and b"chat_send" not in wire and b"pw-a" not in wire


def test_messages_of_decodes_the_endpoint_view(keys: dict[str, UserKeys]) -> None:
    sim, _ = chat_pair(keys)
    (login,) = sim.messages_of("alice", "send", "login")
    assert isinstance(login, m.Login) and login.username == "alice" and login.password == "pw-a"
    assert any(isinstance(msg, m.ChatKey) for msg in sim.messages_of("bob", "receive"))


def test_run_until_idle_is_bounded() -> None:
    sim = Simulation(seed=1)
    sim.add_client("alice")
    with pytest.raises(RuntimeError):
        sim.run_until_idle(max_steps=1)


def test_add_client_accepts_a_modified_client_class() -> None:
    class Quiet(ClientProtocol):
        pass

    sim = Simulation(seed=1)
    assert isinstance(sim.add_client("mallory", client_class=Quiet), Quiet)
    sim.run_until_idle()
    assert sim.events_of("mallory", ev.HandshakeCompleted)


# --- Mallory ---------------------------------------------------------------------------------------------------


def test_duplicated_record_closes_the_connection_with_bad_record(keys: dict[str, UserKeys]) -> None:
    sim, chat_id = chat_pair(keys)
    sim.intercept = duplicate(source="alice", carrying="chat_send")
    sim.client("alice").send_chat(chat_id, "once")
    sim.run_until_idle()
    assert [r.action for r in sim.trace if "chat_send" in r.inner] == ["delivered", "replayed"]
    assert closed_code(sim, "alice") == "bad_record"
    assert any(isinstance(e, ev.ErrorSent) and e.code == "bad_record" and e.fatal for e in sim.server_events)
    assert [e.text for e in sim.events_of("bob", ev.ChatReceived)] == ["once"]  # processed at most once


def test_replay_later_is_detected_too(keys: dict[str, UserKeys]) -> None:
    sim, chat_id = chat_pair(keys)
    sim.intercept = replay(after=5.0, source="alice", carrying="chat_send")
    sim.client("alice").send_chat(chat_id, "once")
    sim.run_until_idle()
    actions = [r.action for r in sim.trace if "chat_send" in r.inner]
    assert actions == ["delivered", "held", "replayed"]
    assert closed_code(sim, "alice") == "bad_record"


def test_dropped_record_makes_the_next_one_fail(keys: dict[str, UserKeys]) -> None:
    sim, chat_id = chat_pair(keys)
    sim.intercept = drop(source="alice", carrying="chat_send")
    send_two(sim, chat_id)
    assert [r.action for r in sim.trace if "chat_send" in r.inner] == ["dropped", "delivered"]
    assert closed_code(sim, "alice") == "bad_record"
    assert sim.events_of("bob", ev.ChatReceived) == []


def test_reordered_records_fail(keys: dict[str, UserKeys]) -> None:
    sim, chat_id = chat_pair(keys)
    sim.intercept = reorder(source="alice", carrying="chat_send")
    send_two(sim, chat_id)
    assert [r.action for r in sim.trace if "chat_send" in r.inner] == ["held", "delivered", "reordered"]
    assert closed_code(sim, "alice") == "bad_record"


def test_delay_lets_later_chunks_overtake(keys: dict[str, UserKeys]) -> None:
    sim, chat_id = chat_pair(keys)
    sim.intercept = delay(2.0, source="alice", carrying="chat_send", nth=1)
    start = sim.now
    send_two(sim, chat_id)
    chunks = [r for r in sim.trace if "chat_send" in r.inner]
    assert [r.action for r in chunks] == ["held", "delivered", "delayed"]
    assert chunks[-1].time >= start + 2.0
    assert closed_code(sim, "alice") == "bad_record"


def test_delay_alone_only_costs_time(keys: dict[str, UserKeys]) -> None:
    sim, chat_id = chat_pair(keys)
    sim.intercept = delay(3.0, source="alice", carrying="chat_send")
    start = sim.now
    sim.client("alice").send_chat(chat_id, "slow")
    sim.run_until_idle()
    assert sim.last_event("bob", ev.ChatReceived).text == "slow"
    assert sim.now >= start + 3.0


def test_tampered_ciphertext_fails_the_record_layer(keys: dict[str, UserKeys]) -> None:
    sim, chat_id = chat_pair(keys)
    sim.intercept = tamper(offset=5, source="alice", carrying="chat_send")
    sim.client("alice").send_chat(chat_id, "pay 100")
    sim.run_until_idle()
    assert closed_code(sim, "alice") == "bad_record"
    assert sim.events_of("bob", ev.ChatReceived) == []


def test_flip_bit_of_the_raw_chunk_closes_the_connection(keys: dict[str, UserKeys]) -> None:
    sim, chat_id = chat_pair(keys)
    sim.intercept = flip_bit(-40, source="alice")
    sim.client("alice").send_chat(chat_id, "x")
    sim.run_until_idle()
    assert sim.client("alice").state.name == "CLOSED"
    assert [r.action for r in sim.trace][-4:].count("modified") == 1


def test_reflected_record_fails_with_per_direction_keys(keys: dict[str, UserKeys]) -> None:
    sim, chat_id = chat_pair(keys)
    sim.intercept = reflect(source="alice", carrying="chat_send")
    sim.client("alice").send_chat(chat_id, "echo")
    sim.run_until_idle()
    reflected = [r for r in sim.trace if r.action == "reflected"]
    assert len(reflected) == 1 and (reflected[0].source, reflected[0].target) == (SERVER, "alice")
    assert closed_code(sim, "alice") == "bad_record"


def test_modified_server_hello_fails_the_handshake() -> None:
    def swap_share(data: bytes) -> bytes:
        hello = decode_message(data[4:])
        assert isinstance(hello, m.ServerHello)
        other = bytes(31) + b"\x09"  # a valid X25519 point (the base point's u = 9), not the server's share
        return encode_frame(m.ServerHello(random=hello.random, key_share=other, server_key=hello.server_key,
                                          server_scheme=hello.server_scheme, signature=hello.signature))

    sim = Simulation(seed=2)
    sim.intercept = modify(swap_share, source=SERVER, carrying="server_hello")
    sim.add_client("alice")
    sim.run_until_idle()
    assert closed_code(sim, "alice") == "handshake_failed"
    assert not sim.events_of("alice", ev.HandshakeCompleted)


def test_injected_garbage_record_is_refused(keys: dict[str, UserKeys]) -> None:
    sim, chat_id = chat_pair(keys)
    fake = encode_frame(m.Record(data=bytes(64)))
    sim.intercept = inject_frame(fake, source="alice", carrying="chat_send", before=True)
    sim.client("alice").send_chat(chat_id, "real")
    sim.run_until_idle()
    assert [r.action for r in sim.trace if r.source == "alice"][-2:] == ["injected", "delivered"]
    assert closed_code(sim, "alice") == "bad_record"


def test_captured_login_replayed_on_a_new_connection_fails(keys: dict[str, UserKeys]) -> None:
    sim = Simulation(seed=4)
    sim.keys.update(keys)
    seen: list[Frame] = []
    sim.intercept = capture(seen, source="alice", carrying="login")
    sim.register_and_login("alice", "pw-a")
    sim.intercept = None
    assert len(seen) == 1
    sim.add_client("mallory")
    sim.run_until_idle()
    sim.inject("mallory", SERVER, seen[0].data)  # docs/THREATS.md 21: different channel keys
    sim.run_until_idle()
    assert closed_code(sim, "mallory") == "bad_record"
    assert "mallory" not in sim.server.online and sim.server.online.get("alice") == sim.peer_id("alice")


def test_chain_and_nth_pick_the_right_chunk(keys: dict[str, UserKeys]) -> None:
    sim, chat_id = chat_pair(keys)
    seen: list[Frame] = []
    sim.intercept = chain(capture(seen, source="alice"), drop(source="alice", carrying="chat_send", nth=2))
    client = sim.client("alice")
    for text in ("one", "two"):
        client.send_chat(chat_id, text)
        sim.run_until_idle()
    assert [e.text for e in sim.events_of("bob", ev.ChatReceived)] == ["one"]
    assert len(seen) == 2 and [r.action for r in sim.trace if "chat_send" in r.inner] == ["delivered", "dropped"]


def test_server_push_replayed_chat_message_is_rejected_end_to_end(keys: dict[str, UserKeys]) -> None:
    sim, chat_id = chat_pair(keys)
    sim.client("alice").send_chat(chat_id, "hi")
    sim.run_until_idle()
    (relayed,) = sim.messages_of("bob", "receive", "chat_message")
    sim.server_push("bob", relayed)  # a malicious server replays a valid signed message (docs/THREATS.md 42)
    sim.run_until_idle()
    rejected = sim.last_event("bob", ev.MessageRejected)
    assert rejected.code == "replay"
    assert [r.action for r in sim.trace][-1] == "pushed"
    assert sim.client("bob").state.name == "ONLINE"


def test_eavesdropper_view_is_json_friendly(keys: dict[str, UserKeys]) -> None:
    sim, _ = chat_pair(keys)
    json.dumps(sim.eavesdropper_view())
