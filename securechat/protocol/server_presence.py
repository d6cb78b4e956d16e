"""Who is online on the server, and their certified encryption keys (PROTOCOL.md 6.4).

Owns: the map from each logged-in username to its connection, the RSA-OAEP key of its certificate (chat keys
are wrapped to it, PROTOCOL.md 7.2), and the ``presence`` broadcast when someone arrives or leaves. Must not:
decide who may log in (``Accounts``) or what happens to their chats (``ChatRelay``).
"""

from __future__ import annotations

from ..crypto.key_types import EncryptionPublicKey
from . import messages as m
from .codec import encode_frame
from .server_outbox import Outbox


class Presence:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self.online: dict[str, int] = {}                   # username -> peer id
        self._encryption_keys: dict[str, EncryptionPublicKey] = {}      # online users' certified RSA-OAEP keys

    def __contains__(self, username: str) -> bool:
        return username in self.online

    def peer_of(self, username: str) -> int | None:
        return self.online.get(username)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.online))

    def encryption_key(self, username: str) -> EncryptionPublicKey:
        return self._encryption_keys[username]

    def arrive(self, username: str, peer: int, encryption_key: EncryptionPublicKey) -> None:
        self.online[username] = peer
        self._encryption_keys[username] = encryption_key

    def leave(self, username: str, peer: int) -> bool:
        """Take *username* offline if *peer* is its connection; False if it was not (nothing changed)."""
        if self.online.get(username) != peer:
            return False
        del self.online[username]
        self._encryption_keys.pop(username, None)
        return True

    def broadcast(self, username: str, online: bool) -> None:
        """Tell every other online user that *username* came or went."""
        frame = encode_frame(m.Presence(username=username, online=online))
        for name, peer in self.online.items():
            if name != username:
                self._outbox.queue_to(peer, frame, "presence")
