"""Property-based robustness (hypothesis): arbitrary input yields only events or securechat errors.

The invariant of h11's fuzz/afl-server.py, applied at every layer: the codec raises only RemoteProtocolError;
ServerProtocol.receive_data and ClientProtocol.receive_data never raise at all, and after each input a logged-in
sanity client still gets an answer (tlsfuzzer's sanity conversation).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securechat.errors import RemoteProtocolError, SecureChatError
from securechat.protocol import codec
from securechat.protocol import messages as m
from securechat.protocol.client import ClientProtocol
from securechat.protocol.codec import MAX_FRAME_BYTES, FrameDecoder, decode_message, message_from_dict
from securechat.protocol.states import ClientState
from securechat.simulation import SERVER, Simulation
from tests.helpers import (
    assert_serves,
    login_user,
    make_simulation,
    password_of,
    peer_of,
    register_only,
    sample_messages,
    send_record_plaintext,
    user_keys,
)

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

SAMPLE_DICTS: dict[str, dict[str, Any]] = {k: codec.message_to_dict(v) for k, v in sample_messages().items()}
TYPES = sorted(m.MESSAGE_TYPES)

# --- strategies ----------------------------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(sorted({k for d in SAMPLE_DICTS.values() for k in d}) + ["", "admin", "\ud800"])


@st.composite
def message_dicts(draw: st.DrawFn, types: list[str] = TYPES, junk_types: bool = True) -> dict[str, Any]:
    """A valid sample of a random type, then mutated: fields dropped, replaced, added; sometimes a junk type."""
    kind = draw(st.sampled_from(types))
    value = dict(SAMPLE_DICTS[kind])
    mutations = draw(st.sampled_from([0, 0, 1, 1, 2, 3]))  # often valid, so handlers are reached too
    for name in draw(st.lists(st.sampled_from(sorted(value)), max_size=mutations, unique=True)):
        action = draw(st.sampled_from(["drop", "replace", "replace"]))
        if action == "drop":
            value.pop(name, None)
        else:
            value[name] = draw(json_values)
    if draw(st.integers(0, 3)) == 0:
        value[draw(field_names)] = draw(json_values)
    if junk_types and draw(st.integers(0, 9)) == 0:
        value["type"] = draw(st.sampled_from([None, 7, "admin_shutdown", "", "WHO", ["who"]]))
    return value


def to_body(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=80).map(lambda t: t.encode("utf-8", "surrogatepass")),
    message_dicts().map(to_body),
    st.just(b"{"),
)
_to_server = message_dicts(types=sorted(m.CLIENT_TO_SERVER)).map(to_body)
_to_client = message_dicts(types=sorted(m.SERVER_TO_CLIENT)).map(to_body)
inner_bodies = st.one_of(_to_server, _to_server, _to_server, raw_bodies)
server_bodies = st.one_of(*[_to_client] * 6, raw_bodies)  # a client closes on any malformed frame (9.1)


@st.composite
def byte_streams(draw: st.DrawFn, bodies: st.SearchStrategy[bytes] = raw_bodies) -> bytes:
    """Either arbitrary bytes, or frames whose bodies are arbitrary, optionally with a damaged prefix."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    data = b"".join(codec.frame(body) for body in draw(st.lists(bodies, min_size=1, max_size=3)))
    if draw(st.integers(0, 4)) == 0:
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(max_size=8))
    return data


# --- (1) and (2): the codec alone ---------------------------------------------------------------------------------


@FUZZ
@given(data=byte_streams(), chunk=st.integers(1, 64), limit=st.sampled_from([codec.MAX_HANDSHAKE_FRAME_BYTES,
                                                                                MAX_FRAME_BYTES]))
def test_arbitrary_bytes_raise_only_remote_protocol_errors(data: bytes, chunk: int, limit: int) -> None:
    decoder = FrameDecoder(max_frame_bytes=limit)
    try:
        for start in range(0, len(data), chunk):
            decoder.feed(data[start:start + chunk])
            while (body := decoder.next_frame()) is not None:
                try:
                    message = decode_message(body)
                except RemoteProtocolError:
                    continue
                assert decode_message(codec.encode_message(message)) == message
    except RemoteProtocolError:
        pass
    assert decoder.buffered <= len(data)


@FUZZ
@given(value=message_dicts())
def test_json_like_dicts_raise_only_remote_protocol_errors(value: dict[str, Any]) -> None:
    try:
        message = decode_message(to_body(value))
    except RemoteProtocolError:
        message = None
    if isinstance(value.get("type"), str) and value["type"] in m.MESSAGE_TYPES:
        try:
            direct = message_from_dict(value)
        except RemoteProtocolError:
            direct = None
        if direct is not None and message is not None:
            assert direct == message
    if message is not None:
        body = codec.encode_message(message)
        assert decode_message(body) == message  # whatever decodes re-encodes canonically
        assert codec.encode_message(decode_message(body)) == body


@FUZZ
@given(plaintext=st.one_of(st.binary(max_size=100),
                           st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=4).map(
                               lambda bodies: b"".join(codec.frame(b) for b in bodies))))
def test_split_frames_raises_only_remote_protocol_errors(plaintext: bytes) -> None:
    try:
        bodies = codec.split_frames(plaintext)
    except RemoteProtocolError:
        return
    assert b"".join(codec.frame(b) for b in bodies) == plaintext


# --- (3) the server in a simulation ---------------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


def server_sim() -> Simulation:
    """One simulation for the whole module: alice is the sanity client, "fuzzer" the attacker's account."""
    if "sim" not in _STATE:
        sim = make_simulation("alice")
        register_only(sim, "fz-setup", "fuzzer")
        sim.disconnect("fz-setup")
        sim.run_until_idle()
        _STATE.update(sim=sim, count=0, fuzzer=None)
    return _STATE["sim"]


def fresh_label(prefix: str) -> str:
    _STATE["count"] += 1
    return f"{prefix}{_STATE['count']}"


def retire(sim: Simulation, label: str) -> None:
    """Close *label*'s connection on both sides and forget it, so the simulation stays small."""
    sim.disconnect(label)
    sim.run_until_idle()
    for table in (sim.clients, sim.events, sim.client_trace):
        table.pop(label, None)


def fuzzer_online(sim: Simulation) -> str:
    label = _STATE["fuzzer"]
    if label is not None and sim.clients[label].state is ClientState.ONLINE and "fuzzer" in sim.server.online \
            and sim.server.online["fuzzer"] == peer_of(sim, label):
        return label
    if label is not None:
        retire(sim, label)
    label = fresh_label("fz")
    client = sim.add_client(label)
    sim.run_until_idle()
    client.login("fuzzer", password_of("fuzzer"), user_keys("fuzzer"))
    sim.run_until_idle()
    assert client.state is ClientState.ONLINE, sim.events_of(label)
    _STATE["fuzzer"] = label
    return label


def sanity(sim: Simulation) -> None:
    assert sim.clients["alice"].state is ClientState.ONLINE
    assert "alice" in assert_serves(sim, "alice")


@FUZZ
@given(data=byte_streams(), after_handshake=st.booleans(), split=st.integers(0, 400))
def test_server_survives_arbitrary_bytes_on_a_new_connection(data: bytes, after_handshake: bool, split: int) -> None:
    sim = server_sim()
    label = fresh_label("raw")
    sim.add_client(label)
    if after_handshake:
        sim.run_until_idle()  # the real client_hello went through; the garbage lands in the record phase
    else:
        sim.in_flight.clear()  # the garbage is the first thing the server sees
    peer = peer_of(sim, label)
    sim.server.receive_data(peer, data[:split], sim.now)  # must never raise
    if data[split:]:
        sim.server.receive_data(peer, data[split:], sim.now)
    sim.run_until_idle()
    sanity(sim)
    retire(sim, label)


@FUZZ
@given(bodies=st.lists(inner_bodies, min_size=1, max_size=4), framing=st.integers(0, 9), tail=st.binary(max_size=6))
def test_server_survives_arbitrary_inner_frames_after_login(bodies: list[bytes], framing: int, tail: bytes) -> None:
    sim = server_sim()
    label = fuzzer_online(sim)
    plaintext = b"".join(codec.frame(body) for body in bodies)
    if framing == 0:
        plaintext += tail  # a badly framed record (fatal, bad_frame)
    send_record_plaintext(sim, label, plaintext)  # inside: ServerProtocol.receive_data must not raise
    sanity(sim)


# --- (4) the client ------------------------------------------------------------------------------------------------------


@FUZZ
@given(data=byte_streams(bodies=server_bodies), chunk=st.integers(1, 50), pinned=st.booleans())
def test_client_survives_arbitrary_bytes_before_the_handshake(data: bytes, chunk: int, pinned: bool) -> None:
    client = ClientProtocol(server_key=(b"k" * 44, "ed25519") if pinned else None,
                            random_bytes=__import__("random").Random(len(data)).randbytes)
    client.connect()
    client.data_to_send()
    for start in range(0, len(data), chunk):
        client.receive_data(data[start:start + chunk], 0.0)  # must never raise
    client.receive_data(b"", 0.0)
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    assert client.state is ClientState.CLOSED and events  # it always ends with a ConnectionClosed


def client_sim() -> tuple[Simulation, str]:
    """alice (sanity, on the server) and a logged-in victim whose server is malicious."""
    if "client_sim" not in _STATE:
        sim = make_simulation("alice")
        login_user(sim, "victim")
        _STATE.update(client_sim=sim, victim="victim", vcount=0)
    sim = _STATE["client_sim"]
    label = _STATE["victim"]
    if sim.clients[label].state is not ClientState.ONLINE:
        sim.disconnect(label)
        sim.run_until_idle()
        _STATE["vcount"] += 1
        label = f"victim{_STATE['vcount']}"
        client = sim.add_client(label)
        sim.run_until_idle()
        client.login("victim", password_of("victim"), user_keys("victim"))
        sim.run_until_idle()
        assert client.state is ClientState.ONLINE, sim.events_of(label)
        _STATE["victim"] = label
    return sim, label


@FUZZ
@given(bodies=st.lists(server_bodies, min_size=1, max_size=4), raw=st.integers(0, 7), tail=st.binary(max_size=6))
def test_client_survives_arbitrary_inner_frames_from_a_malicious_server(bodies: list[bytes], raw: int,
                                                                         tail: bytes) -> None:
    sim, label = client_sim()
    client = sim.clients[label]
    peer = sim.server.peers[peer_of(sim, label)]
    assert peer.records is not None and not peer.inner
    plaintext = b"".join(codec.frame(body) for body in bodies) + (tail if raw == 0 else b"")
    sim.inject(SERVER, label, codec.encode_frame(m.Record(data=peer.records.seal(plaintext))))
    sim.run_until_idle()  # delivers it: ClientProtocol.receive_data must not raise
    assert client.state in (ClientState.ONLINE, ClientState.CLOSED)
    if client.state is ClientState.CLOSED:
        assert sim.events_of(label)[-1].__class__.__name__ == "ConnectionClosed"
    assert_serves(sim, "alice")


def test_fuzz_errors_are_securechat_errors() -> None:
    assert issubclass(RemoteProtocolError, SecureChatError)
