"""The top of a client window: user name, password, the identity key's scheme, Register / Log in / Safety
numbers, and the connection indicator.

Owns: those widgets, the list of schemes a user may pick (from the one table in crypto/signatures.py) and the
connection states with their words and colours. Must not: keep the password anywhere but in its entry (the window
holds it in memory for reconnecting), or run anything itself: the buttons call the window.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from enum import StrEnum
from tkinter import ttk

from ..crypto.signatures import SCHEMES as SCHEME_TABLE
from ..crypto.signatures import SignatureScheme
from ..display import printable

# Every scheme a user may pick for an identity key, from the one table in crypto/signatures.py.
SCHEMES: tuple[tuple[str, SignatureScheme], ...] = tuple(
    (params.name, scheme) for scheme, params in SCHEME_TABLE.items() if params.user_selectable)


class ConnectionState(StrEnum):
    """Where a client window's connection is (the indicator at the top right)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"        # handshake done, not logged in
    ONLINE = "online"              # logged in: commands are usable
    DISCONNECTED = "disconnected"  # dropped, and nothing to log in again with
    RECONNECTING = "reconnecting"  # dropped while online: logging in again with bounded backoff
    CLOSED = "closed"              # we logged out


STATES: dict[ConnectionState, tuple[str, str]] = {  # state -> (indicator text, colour)
    ConnectionState.CONNECTING: ("connecting ...", "#8a6d00"),
    ConnectionState.CONNECTED: ("connected (not logged in)", "#1f5fa8"),
    ConnectionState.ONLINE: ("online", "#1a7f37"),
    ConnectionState.DISCONNECTED: ("DISCONNECTED", "#b00020"),
    ConnectionState.RECONNECTING: ("reconnecting ...", "#8a6d00"),
    ConnectionState.CLOSED: ("closed", "#555555"),
}


class LoginPanel:
    def __init__(self, parent: tk.Misc, name: str, *, register: Callable[[], None], login: Callable[[], None],
                 trust: Callable[[], None]) -> None:
        form = ttk.Frame(parent, padding=(4, 2))
        form.pack(fill="x")
        # packed first, so a narrow window shortens the entries, never the connection state
        self.state_label = tk.Label(form, text="", anchor="e", font=("TkDefaultFont", 9, "bold"))
        self.state_label.pack(side="right")
        ttk.Label(form, text="user").pack(side="left")
        self.username_entry = ttk.Entry(form, width=10)
        self.username_entry.insert(0, name)
        self.username_entry.pack(side="left", padx=2)
        ttk.Label(form, text="password").pack(side="left")
        self.password_entry = ttk.Entry(form, width=10, show="*")
        self.password_entry.pack(side="left", padx=2)
        row = ttk.Frame(parent, padding=(4, 0))
        row.pack(fill="x")
        ttk.Label(row, text="key").pack(side="left")
        self.scheme_var = tk.StringVar(value=SCHEMES[0][0])
        self.scheme_choice = ttk.Combobox(row, textvariable=self.scheme_var, values=[label for label, _ in SCHEMES],
                                          state="readonly", width=20)
        self.scheme_choice.pack(side="left", padx=2)
        self.register_button = ttk.Button(row, text="Register", command=register, width=8)
        self.register_button.pack(side="left")
        self.login_button = ttk.Button(row, text="Log in", command=login, width=6)
        self.login_button.pack(side="left", padx=2)
        self.trust_button = ttk.Button(row, text="Safety numbers", command=trust, state="disabled")
        self.trust_button.pack(side="left")

    def credentials(self) -> tuple[str, str] | None:
        """The typed user name (stripped) and password; None unless both are there."""
        name, password = self.username_entry.get().strip(), self.password_entry.get()
        return (name, password) if name and password else None

    def scheme(self) -> SignatureScheme:
        return dict(SCHEMES)[self.scheme_var.get()]

    def show_state(self, state: ConnectionState, *, username: str | None, detail: str = "") -> None:
        """The indicator; Safety numbers is usable only online."""
        text, colour = STATES[state]
        if state is ConnectionState.ONLINE and username:
            text = f"online as {printable(username)}"
        self.state_label.configure(text=f"\N{BLACK CIRCLE} {text}{(' ' + detail) if detail else ''}",
                                   foreground=colour)
        self.trust_button.configure(state="normal" if state is ConnectionState.ONLINE else "disabled")

    def logged_in(self) -> None:
        """The password leaves the screen (the window keeps it in memory); Register and Log in are done."""
        self.password_entry.delete(0, "end")
        self.register_button.configure(state="disabled")
        self.login_button.configure(state="disabled")
