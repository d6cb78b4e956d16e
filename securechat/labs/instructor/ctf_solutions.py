"""INSTRUCTOR SOLUTIONS to the capture-the-flag server (securechat.labs.ctf, PROTOCOL.md 16.2).

Lives in ``securechat/labs/instructor/``, which the package build leaves out (pyproject.toml), so an installed
securechat does not hand students the solutions. Owns: one solver per
challenge, built from the attacks of ``securechat.labs.attacks``. Each returns the flag text or raises
``AttackFailed``; against a CTF run with ``weak=False`` (default server and clients) every solver fails. Must
not: read the CTF server's memory (a solver sees only what a student's client and its own servers see).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

from ...crypto.encoding import b64e
from ...crypto.kdf import FAST_SCRYPT
from ...net.tcp_client import TcpClient
from ...protocol import events as ev
from ...protocol import messages as m
from ...protocol.codec import decode_message
from ...protocol.constructions import chat_header, chat_signed_bytes
from ...protocol.identity import UserKeys
from ...protocol.limits import ServerConfig
from ...store import MemoryRegistry, new_server_key
from .. import attacks
from ..attacks import AttackFailed
from ..player import CtfPlayer
from ..ctf import ARCHIVE_PREFIX, ARCHIVIST, DAN, DISPATCHER, VAULT, order_bytes
from ..flags import find_flags

WAIT_SECONDS = 20.0


def solve_dsa_nonce(player: CtfPlayer) -> str:
    """Two of dan's signatures share r: recover his key, sign the order, vault pays out."""
    player.wait_text(lambda e: e.sender == DAN and "nonce" in e.text, "dan's second message")
    player.wait_text(lambda e: e.sender == VAULT, "vault's instructions")
    frames = attacks.signatures_from_trace(player.frames, DAN)[:2]
    if len(frames) < 2:
        raise AttackFailed("fewer than two messages from dan")
    signed = [(chat_signed_bytes(chat_header(chat_id=f.chat_id, epoch=f.epoch, sender=f.sender, seq=f.seq,
                                             suite="aes-256-gcm"), f.ciphertext), f.signature) for f in frames]
    book = player.client.protocol.book
    assert book is not None
    dan_public = book.certificates[DAN][0].signing_key
    x = attacks.recover_dsa_key(dan_public, signed[0], signed[1])
    order = attacks.forge_dsa_signature(dan_public, x, order_bytes(player.name))
    player.client.send(player.chats[VAULT], "!order " + b64e(order))
    return player.flag_from(VAULT, "dsa-nonce")


def solve_no_rekey(player: CtfPlayer) -> str:
    """Keep the ops key, leave ops, read alice's flag message from the archive with the kept key."""
    welcome = player.wait_text(lambda e: e.text.startswith(f"{player.name}: welcome to ops"), "the ops chat")
    player.client.wait_for_key(welcome.chat_id, 1)
    kept = attacks.keep_key(player.client.protocol, welcome.chat_id)
    player.client.leave(welcome.chat_id)
    deadline = time.monotonic() + WAIT_SECONDS
    done = 0
    while time.monotonic() < deadline:
        player.pump(0.2)
        archived = [e for e in player.seen if e.sender == ARCHIVIST and e.text.startswith(ARCHIVE_PREFIX)]
        for event in archived[done:]:
            message = decode_message(event.text[len(ARCHIVE_PREFIX):].encode("utf-8"))
            if not isinstance(message, m.ChatMessage) or message.sender == player.name:
                continue
            text = attacks.read_after_leave(kept, message)  # AttackFailed once the chat was rekeyed
            if find_flags(text):
                return find_flags(text)[0]
        done = len(archived)
    raise AttackFailed("no archived message held the flag")


def solve_login_replay(player: CtfPlayer, ctf_address: tuple[str, int], pinned: tuple[bytes, str]) -> str:
    """Run our own server, make carol log in there, replay her proof to the CTF server, vault pays out."""
    player.wait_text(lambda e: e.sender == DISPATCHER, "the dispatcher")
    player.wait_text(lambda e: e.sender == VAULT, "vault's instructions")
    with attacks.login_catcher(MemoryRegistry(), new_server_key(), ServerConfig(scrypt=FAST_SCRYPT)) as catcher:
        host, port = catcher.server.address
        player.client.send(player.chats[DISPATCHER], f"!visit {host} {port}")
        player.wait_text(lambda e: e.sender == DISPATCHER and e.text.startswith("carol visited"), "carol's visit")
        captured = catcher.captured()
    if not captured:
        raise AttackFailed("carol's login never reached our server")
    attacks.replay_login(*ctf_address, captured[0], server_key=pinned)
    return player.flag_from(VAULT, "login-replay")


__all__ = ["CtfPlayer", "solve_dsa_nonce", "solve_login_replay", "solve_no_rekey"]
