"""Pin files fail closed (PROTOCOL.md 4.2 and 7.9): written atomically, a damaged one is a clear error and never
trust on first use, and a server key given with --server-key is pinned."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from securechat import client as cli
from securechat.crypto.kdf import FAST_SCRYPT
from securechat.keystore import KeyStore, PinFileError, write_server_key_file
from securechat.net.tcp_server import TcpServer
from securechat.protocol.limits import ServerConfig
from securechat.store import MemoryRegistry, new_server_key

KEY_A, KEY_B = b"\x30\x82server-a", b"\x30\x82server-b"


def test_damaged_known_servers_is_an_error_not_trust_on_first_use(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.pin_server("a:1", KEY_A, "ed25519")
    store.pin_server("b:2", KEY_B, "ed25519")
    path = tmp_path / "known_servers.json"
    good = path.read_text()
    path.write_text(good[: len(good) // 2])  # a write cut short
    with pytest.raises(PinFileError) as raised:
        store.pinned_server("a:1")
    assert "known_servers.json" in str(raised.value) and "damaged" in str(raised.value)
    with pytest.raises(PinFileError):
        store.pinned_server("c:3")  # not "no pin": that would accept any key for c:3
    with pytest.raises(PinFileError):
        store.pin_server("c:3", KEY_A, "ed25519")  # a rewrite would drop a:1 and b:2
    assert path.read_text() == good[: len(good) // 2]
    path.write_text(json.dumps({"a:1": {"key": 5}}))
    with pytest.raises(PinFileError):
        store.pinned_server("a:1")


def test_damaged_peer_pins_are_an_error(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.save_pins("alice", {"bob": "0000:0000:0000:0000:0000:0000:0000:0000"})
    path = store.user_dir("alice") / "known_peers.json"
    path.write_text("{\"bob\": ")
    with pytest.raises(PinFileError):
        store.load_pins("alice")  # not {}: every peer's next key would be pinned on first sight
    path.write_text("[]")
    with pytest.raises(PinFileError):
        store.load_pins("alice")
    assert KeyStore(tmp_path).load_pins("nobody") == {}  # absent is "nothing pinned yet"


def test_every_pin_file_is_replaced_by_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renamed: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        renamed.append((Path(src), Path(dst)))
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", spy)
    store = KeyStore(tmp_path)
    store.pin_server("a:1", KEY_A, "ed25519")
    store.pin_server("b:2", KEY_B, "ed25519")
    store.save_pins("alice", {"bob": "1111:1111:1111:1111:1111:1111:1111:1111"})
    write_server_key_file(tmp_path / "server.json", KEY_A, "ed25519")
    targets = [dst.name for _, dst in renamed]
    assert targets == ["known_servers.json", "known_servers.json", "known_peers.json", "server.json"]
    assert all(src.parent == dst.parent and src != dst for src, dst in renamed)
    assert store.pinned_server("a:1") == (KEY_A, "ed25519") and store.pinned_server("b:2") == (KEY_B, "ed25519")
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_a_failed_write_keeps_the_old_pins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeyStore(tmp_path)
    store.pin_server("a:1", KEY_A, "ed25519")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        store.pin_server("b:2", KEY_B, "ed25519")
    monkeypatch.undo()
    assert store.pinned_server("a:1") == (KEY_A, "ed25519") and store.pinned_server("b:2") is None
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_cli_refuses_to_start_on_a_damaged_pin_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "known_servers.json").write_text("{not json")
    assert cli.main(["--keys-dir", str(tmp_path), "--port", "9"]) == 1
    err = capsys.readouterr().err
    assert "known_servers.json" in err and "damaged" in err and "could not connect" not in err


@pytest.mark.tcp
def test_cli_pins_a_key_given_with_server_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_server_key()
    srv = TcpServer(server_key=key, registry=MemoryRegistry(), config=ServerConfig(scrypt=FAST_SCRYPT)).start()
    try:
        host, port = srv.address
        key_file = tmp_path / "server-key.json"
        write_server_key_file(key_file, key.public_der, key.scheme.value)
        keys_dir = tmp_path / "keys"
        monkeypatch.setattr("sys.stdin", io.StringIO("/quit\n"))
        assert cli.main(["--keys-dir", str(keys_dir), "--host", host, "--port", str(port),
                         "--server-key", str(key_file)]) == 0
        assert KeyStore(keys_dir).pinned_server(f"{host}:{port}") == (key.public_der, key.scheme.value)
    finally:
        srv.stop()
