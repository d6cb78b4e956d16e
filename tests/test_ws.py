"""The WebSocket binding (docs/PROTOCOL.md section 15): the layer alone (sans-I/O, time passed in), the server's
WebSocket port beside TCP, interop with the independent ``websockets`` library in both directions, wss:// with
a throwaway certificate, and the terminal client registering, logging in and chatting over ws://.

Servers bind 127.0.0.1 port 0; every server, client, process and thread is stopped in a finally or a fixture.
Bad input over WebSocket (unmasked frames, text, oversize, floods, plain HTTP) is in tests/adversarial.
"""

from __future__ import annotations

import datetime
import re
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from securechat.crypto.kdf import FAST_SCRYPT
from securechat.crypto.signatures import SignatureScheme
from securechat.net import ws
from securechat.net.tcp_client import TcpClient
from securechat.net.tcp_server import TcpServer
from securechat.net.transport import Scheme, Transport, TransportError, parse_url
from securechat.protocol import events as ev
from securechat.protocol.client import ClientProtocol
from securechat.protocol.codec import frame, split_frames
from securechat.protocol.limits import ServerConfig
from securechat.scenario import user_keys
from securechat.store import MemoryRegistry, new_server_key
from tests.live import Cli, pinned, run_python, server_args, stop_process

RSA = SignatureScheme.RSA_PSS_SHA256
TIMEOUT = 10.0


@pytest.fixture
def server() -> Iterator[TcpServer]:
    srv = TcpServer(server_key=new_server_key(), registry=MemoryRegistry(), config=ServerConfig(scrypt=FAST_SCRYPT),
                    ws_port=0).start()
    try:
        yield srv
    finally:
        srv.stop()


def ws_url(srv: TcpServer, scheme: str = "ws", host: str = "127.0.0.1") -> str:
    assert srv.ws_address is not None
    return f"{scheme}://{host}:{srv.ws_address[1]}/securechat"


def online(url: str, name: str, srv: TcpServer, **kw: object) -> TcpClient:
    client = TcpClient(url=url, server_key=pinned(srv), timeout=TIMEOUT, **kw)  # type: ignore[arg-type]
    keys = user_keys(name, RSA)
    client.register(name, "pw-" + name, keys)
    client.login(name, "pw-" + name, keys)
    return client


# --- the layer alone (no sockets, time passed in) ----------------------------------------------------------------

def _handshaken(now: float = 0.0) -> tuple[ws.WsServerEndpoint, ws.WsClientEndpoint]:
    server, client = ws.WsServerEndpoint(now), ws.WsClientEndpoint("example.org", now)
    server.receive_data(client.data_to_send(), now)
    client.receive_data(server.data_to_send(), now)
    assert server.state is ws.WsState.OPEN and client.state is ws.WsState.OPEN and server.take_opened()
    return server, client


def test_the_layer_carries_one_frame_per_binary_message_both_ways() -> None:
    server, client = _handshaken()
    two = frame(b"first") + frame(b"second")
    client.send(two)
    wire = client.data_to_send()
    assert wire.count(b"\x82") >= 2  # two binary messages (FIN + opcode 2), not one
    server.receive_data(wire, 1.0)
    assert server.app_data() == two
    server.send(frame(b"x" * 70_000))  # a 64-bit length on the wire, one message
    client.receive_data(server.data_to_send(), 1.0)
    assert split_frames(client.app_data()) == [b"x" * 70_000]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70_000])
def test_the_servers_own_binary_frame_encoder_matches_wsproto(size: int) -> None:
    from wsproto.frame_protocol import FrameProtocol
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert ws.server_binary_frame(payload) == FrameProtocol(client=False, extensions=[]).send_data(payload, fin=True)


@pytest.mark.parametrize("seed", range(6))
def test_the_servers_inbound_fast_path_agrees_with_wsproto_under_any_chunking(seed: int) -> None:
    """Whole binary frames are unmasked by the server itself, everything else by wsproto (ws.py): the
    securechat stream and the answers (pongs) must not depend on how TCP cut the bytes."""
    import random

    from wsproto.frame_protocol import FrameProtocol
    rng = random.Random(seed)
    client = FrameProtocol(client=True, extensions=[])
    wire, expected, pongs = b"", b"", 0
    for _ in range(40):
        body = rng.randbytes(rng.choice([1, 20, 121, 122, 123, 124, 125, 126, 127, 500, 65531, 65532, 70_000]))
        one = frame(body)
        kind = rng.random()
        if kind < 0.6:
            wire += client.send_data(one, fin=True)
        elif kind < 0.8:  # fragmented, with a ping in between
            cut = rng.randrange(1, len(one))
            wire += client.send_data(one[:cut], fin=False) + client.ping(b"p") + client.send_data(one[cut:], fin=True)
            pongs += 1
        else:
            wire += client.ping(rng.randbytes(rng.randrange(0, 126)))
            wire += client.send_data(one, fin=True)
            pongs += 1
        expected += one
    server, _ = _handshaken()
    server.data_to_send()
    offset = 0
    while offset < len(wire):
        step = rng.choice([1, 2, 3, 7, 100, 4096, 65536, len(wire)])
        server.receive_data(wire[offset:offset + step], 1.0)
        offset += step
    assert server.state is ws.WsState.OPEN
    assert server.app_data() == expected
    assert server.data_to_send().count(b"\x8a") >= pongs  # every ping answered


def test_a_data_frame_announcing_too_much_is_refused_from_its_header() -> None:
    server, _ = _handshaken()
    header = bytes([0x82, 0xFF]) + (ws.MAX_MESSAGE_BYTES + 1).to_bytes(8, "big") + b"mask"
    server.receive_data(header, 1.0)  # no payload at all yet
    assert server.closed is not None and server.closed.code == ws.CloseCode.MESSAGE_TOO_BIG


def test_the_layer_refuses_a_message_that_is_not_exactly_one_frame() -> None:
    from wsproto.frame_protocol import FrameProtocol
    server, _ = _handshaken()
    wire = FrameProtocol(client=True, extensions=[]).send_data(frame(b"a") + frame(b"b"), fin=True)
    server.receive_data(wire, 1.0)
    assert server.app_data() == b"" and server.closed is not None
    assert server.closed.code == ws.CloseCode.PROTOCOL_ERROR and server.state is ws.WsState.CLOSING


def test_the_layer_pings_when_quiet_and_closes_an_idle_peer() -> None:
    server, client = _handshaken(now=100.0)
    server.handle_timer(100.0 + ws.PING_INTERVAL_SECONDS - 1)
    assert server.data_to_send() == b""
    server.handle_timer(100.0 + ws.PING_INTERVAL_SECONDS + 1)
    ping = server.data_to_send()
    assert ping[:1] == b"\x89"  # FIN + ping
    client.receive_data(ping, 121.5)
    pong = client.data_to_send()
    assert pong[:1] == b"\x8a"  # the client answers with a pong on its own
    server.receive_data(pong, 122.0)
    server.handle_timer(122.0 + ws.IDLE_TIMEOUT_SECONDS - 1)
    assert server.state is ws.WsState.OPEN
    server.handle_timer(122.0 + ws.IDLE_TIMEOUT_SECONDS + 1)
    assert server.state is ws.WsState.CLOSING and server.closed is not None
    assert server.closed.code == ws.CloseCode.POLICY_VIOLATION
    server.handle_timer(122.0 + ws.IDLE_TIMEOUT_SECONDS + 1.5)  # the grace period starts
    server.handle_timer(122.0 + ws.IDLE_TIMEOUT_SECONDS + 2 + ws.CLOSE_GRACE_SECONDS)
    assert server.state is ws.WsState.CLOSED


def test_a_trickled_message_is_closed_at_the_message_deadline() -> None:
    from wsproto.frame_protocol import FrameProtocol
    server, _ = _handshaken()
    wire = FrameProtocol(client=True, extensions=[]).send_data(frame(b"x" * 1000), fin=True)
    for i in range(40):  # a byte every half second: never idle, never finished
        server.receive_data(wire[i:i + 1], i / 2)
        server.handle_timer(i / 2)
    assert server.state is ws.WsState.OPEN
    server.receive_data(wire[40:41], ws.MESSAGE_DEADLINE_SECONDS + 5)
    server.handle_timer(ws.MESSAGE_DEADLINE_SECONDS + 5)
    assert server.state is ws.WsState.CLOSING and server.closed is not None
    assert server.closed.code == ws.CloseCode.POLICY_VIOLATION and server.app_data() == b""


def test_the_handshake_deadline_answers_408() -> None:
    server = ws.WsServerEndpoint(0.0)
    server.receive_data(b"GET /securechat HTTP/1.1\r\nHost: x\r\n", 1.0)  # and then nothing
    server.handle_timer(ws.HANDSHAKE_DEADLINE_SECONDS - 1)
    assert server.state is ws.WsState.HANDSHAKE
    server.handle_timer(ws.HANDSHAKE_DEADLINE_SECONDS + 1)
    assert server.state is ws.WsState.CLOSED and server.data_to_send().startswith(b"HTTP/1.1 408 ")


@pytest.mark.parametrize("error, code", [(None, 1000), ("frame_too_large", 1009), ("server_busy", 1013),
                                         ("bad_record", 1008), ("auth_failed", 1008), ("internal_error", 1011)])
def test_close_codes_follow_the_table(error: str | None, code: int) -> None:
    from securechat.errors import ErrorCode
    assert ws.close_code_for(ErrorCode(error) if error else None) == code


@pytest.mark.parametrize("url, scheme, host, port, path", [
    ("ws://127.0.0.1:8080/securechat", Scheme.WS, "127.0.0.1", 8080, "/securechat"),
    ("wss://chat.example.org/securechat", Scheme.WSS, "chat.example.org", 443, "/securechat"),
    ("tcp://localhost:5050", Scheme.TCP, "localhost", 5050, ""),
])
def test_urls_parse(url: str, scheme: Scheme, host: str, port: int, path: str) -> None:
    endpoint = parse_url(url)
    assert (endpoint.scheme, endpoint.host, endpoint.port, endpoint.path) == (scheme, host, port, path)


@pytest.mark.parametrize("url", ["http://x:1/", "tcp://x", "tcp://x:1/path", "ws://:80/securechat",
                                 "ws://u:p@x:1/securechat", "ws://x:99999/securechat"])
def test_bad_urls_are_refused_in_plain_words(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)


# --- the server's WebSocket port beside TCP ---------------------------------------------------------------------

@pytest.mark.tcp
def test_tcp_and_websocket_users_chat_in_one_chat(server: TcpServer) -> None:
    alice = online(ws_url(server), "alice", server)
    bob = online(f"tcp://127.0.0.1:{server.address[1]}", "bob", server)
    carol = online(ws_url(server), "carol", server)
    try:
        opened = alice.open_chat(["bob", "carol"], mode="contributory")
        for client in (bob, carol):
            client.wait_for_key(opened.chat_id, 1)
        alice.send(opened.chat_id, "from the WebSocket side")
        for client in (bob, carol):
            got = client.wait_for(ev.ChatReceived, lambda e: e.sender == "alice")
            assert got.text == "from the WebSocket side"
        bob.send(opened.chat_id, "from the TCP side")
        assert alice.wait_for(ev.ChatReceived, lambda e: e.sender == "bob").text == "from the TCP side"
        assert sorted(alice.who()) == ["alice", "bob", "carol"]
        carol.logout()
        assert alice.wait_for(ev.PresenceChanged, lambda e: e.username == "carol" and not e.online)
    finally:
        for client in (alice, bob, carol):
            client.close()


@pytest.mark.tcp
def test_websocket_port_is_only_open_when_asked() -> None:
    srv = TcpServer(server_key=new_server_key(), registry=MemoryRegistry(), config=ServerConfig(scrypt=FAST_SCRYPT))
    with srv:
        assert srv.ws_address is None


# --- interop with an independent implementation -----------------------------------------------------------------

@pytest.mark.tcp
def test_the_websockets_library_completes_the_handshake_and_logs_in(server: TcpServer) -> None:
    from websockets.sync.client import connect

    protocol = ClientProtocol(server_key=pinned(server))
    keys = user_keys("dave", RSA)
    with connect(ws_url(server), subprotocols=[ws.SUBPROTOCOL], open_timeout=TIMEOUT,  # type: ignore[list-item]
                 max_size=ws.MAX_MESSAGE_BYTES) as sock:
        assert sock.subprotocol == ws.SUBPROTOCOL

        def send_all() -> None:
            data = protocol.data_to_send()
            for body in split_frames(data) if data else []:
                sock.send(frame(body))  # one frame per binary message, length prefix included

        def until(kind: type[ev.Event]) -> ev.Event:
            for _ in range(50):
                message = sock.recv(timeout=TIMEOUT)
                assert isinstance(message, bytes)  # never a text message
                assert len(split_frames(message)) == 1  # exactly one securechat frame
                protocol.receive_data(message, time.time())
                send_all()
                for event in iter(protocol.next_event, None):
                    if isinstance(event, kind):
                        return event
            raise AssertionError(f"no {kind.__name__}")

        protocol.connect()
        send_all()
        assert isinstance(until(ev.HandshakeCompleted), ev.HandshakeCompleted)
        protocol.register("dave", "pw-dave", keys)
        send_all()
        until(ev.RegistrationSucceeded)
        protocol.login("dave", "pw-dave", keys)
        send_all()
        logged_in = until(ev.LoggedIn)
        assert isinstance(logged_in, ev.LoggedIn) and logged_in.username == "dave"


@pytest.mark.tcp
def test_our_client_layer_speaks_to_a_websockets_server() -> None:
    from websockets.sync.server import serve

    def echo(connection) -> None:  # type: ignore[no-untyped-def]
        for message in connection:
            connection.send(message)

    with serve(echo, "127.0.0.1", 0, subprotocols=[ws.SUBPROTOCOL]) as wss:  # type: ignore[list-item]
        thread = threading.Thread(target=wss.serve_forever, daemon=True)
        thread.start()
        try:
            port = wss.socket.getsockname()[1]
            transport = Transport(parse_url(f"ws://127.0.0.1:{port}/securechat"), timeout=TIMEOUT)
            try:
                transport.send(frame(b"one") + frame(b"two"))
                got = b""
                for _ in range(10):
                    if len(got) >= len(frame(b"one") + frame(b"two")):
                        break
                    chunk = transport.recv()
                    assert chunk
                    got += chunk
                assert split_frames(got) == [b"one", b"two"]
            finally:
                transport.close()
        finally:
            wss.shutdown()
            thread.join(5)


# --- wss:// ---------------------------------------------------------------------------------------------------------

def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.tcp
def test_wss_with_a_certificate_and_a_refused_unknown_ca(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    srv = TcpServer(server_key=new_server_key(), registry=MemoryRegistry(), config=ServerConfig(scrypt=FAST_SCRYPT),
                    ws_port=0, tls=tls).start()
    try:
        url = ws_url(srv, "wss", "localhost")
        trusting = ssl.create_default_context(cafile=str(cert))
        alice = online(url, "alice", srv, tls=trusting)
        bob = online(f"tcp://127.0.0.1:{srv.address[1]}", "bob", srv)
        try:
            opened = alice.open_chat(["bob"])
            bob.wait_for_key(opened.chat_id, 1)
            bob.send(opened.chat_id, "through TLS and WebSocket")
            assert alice.wait_for(ev.ChatReceived).text == "through TLS and WebSocket"
        finally:
            alice.close()
            bob.close()
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            TcpClient(url=url, server_key=pinned(srv), timeout=TIMEOUT)  # the system CAs do not know it
        with pytest.raises(TransportError):  # plain ws:// to a TLS port: no handshake answer it can read
            TcpClient(url=ws_url(srv, "ws", "localhost"), server_key=pinned(srv), timeout=3)
        assert sorted(online(url, "carol", srv, tls=trusting).who()) == ["carol"]  # still serving
    finally:
        srv.stop()


# --- the terminal client over ws:// -----------------------------------------------------------------------------

@pytest.mark.tcp
def test_terminal_client_registers_logs_in_and_chats_over_ws(tmp_path: Path) -> None:
    log = (tmp_path / "server.log").open("w")
    server = run_python(server_args(tmp_path, "--ws-port", "0"), stderr=log)
    clients: list[Cli] = []
    try:
        lines = [server.stdout.readline() for _ in range(2)]  # type: ignore[union-attr]
        tcp_port = int(re.search(r":(\d+)\s", lines[0]).group(1))  # type: ignore[union-attr]
        url = re.search(r"websocket: (ws://\S+)", lines[1]).group(1)  # type: ignore[union-attr]
        common = ["--keys-dir", str(tmp_path / "keys"), "--server-key", str(tmp_path / "key.json")]
        bob = Cli(["-m", "securechat.client", "--url", url, *common])
        clients.append(bob)
        bob.wait_for(r"connected to .*ws://")
        bob.type("/register bob ed25519 pw-bob", "/login bob pw-bob")
        bob.wait_for(r"logged in as bob")
        alice = Cli(["-m", "securechat.client", "--port", str(tcp_port), *common])  # a TCP user in the same chat
        clients.append(alice)
        alice.type("/register alice ed25519 pw-alice", "/login alice pw-alice")
        alice.wait_for(r"logged in as alice")
        bob.type("/chat alice")
        invited = alice.wait_for(r"bob invites you to a \S+ chat (\w+): /accept").group(1)  # PROTOCOL.md 7.11
        alice.type(f"/accept {invited}")
        bob.wait_for(r"chat \w+ .*with .*alice")
        alice.wait_for(r"chat \w+ \[server-key.*epoch 1: members (alice, bob|bob, alice)")
        bob.type("hello from a websocket")
        alice.wait_for(r"bob: hello from a websocket .*verified")
        alice.type("hello from tcp")
        bob.wait_for(r"alice: hello from tcp .*verified")
    finally:
        outputs = [c.stop() for c in clients]
        try:
            stop_process(server)
        finally:
            server.stdout.close()  # type: ignore[union-attr]
            log.close()
    assert all("Traceback" not in out for out in outputs), outputs
