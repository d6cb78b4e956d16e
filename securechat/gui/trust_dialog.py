"""The safety-number and trust dialog of a client window (PROTOCOL.md 7.9).

Owns: the window's one dialog (``SafetyNumbers``: opened on demand or when a peer's key changes, refreshed after
each PeerKey* event, closed with the window; accepting runs on the window's worker thread), and in it showing,
for each peer we pinned or whose key changed, the safety number to read aloud, and, for a changed key, the pinned
and the offered number side by side with the one way to accept it: typing the fingerprint the peer reads out.
Must not: decide trust itself; ``TcpClient.accept_key_change`` pins exactly the fingerprint typed, or refuses.
Every name and fingerprint is untrusted text and goes through ``display.printable``.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from tkinter import ttk

from ..display import explain, printable
from ..errors import SecureChatError
from ..net.tcp_client import TcpClient
from .host import Host
from .render import describe_error

WRAP = 420


class TrustDialog:
    """One Toplevel; ``refresh`` re-reads the client's pins and pending changes (after each PeerKey* event)."""

    def __init__(self, parent: tk.Misc, client: TcpClient, *, accept: Callable[[str, str], None],
                 close: Callable[[], None]) -> None:
        self.client = client
        self._accept = accept
        self.win = tk.Toplevel(parent)
        self.win.title("securechat — safety numbers")
        # over the client window it belongs to, kept on the screen
        width, height = 460, 330
        parent.update_idletasks()
        x = max(0, min(parent.winfo_rootx(), parent.winfo_screenwidth() - width))
        y = max(0, min(parent.winfo_rooty() + 60, parent.winfo_screenheight() - height))
        self.win.geometry(f"{width}x{height}+{x}+{y}")
        self.win.protocol("WM_DELETE_WINDOW", close)
        ttk.Label(self.win, text="Compare these numbers with your contact in person or by phone. "
                                 "If they match, nobody is in the middle.", wraplength=WRAP,
                  padding=6).pack(anchor="w")
        self.peers = tk.Listbox(self.win, height=5, exportselection=False)
        self.peers.pack(fill="x", padx=6)
        self.peers.bind("<<ListboxSelect>>", self._selected_changed)
        self.detail = ttk.Label(self.win, text="", wraplength=WRAP, padding=6, justify="left")
        self.detail.pack(fill="x")
        ttk.Label(self.win, text="fingerprint your contact reads to you (of the new key):",
                  padding=(6, 0)).pack(anchor="w")
        row = ttk.Frame(self.win, padding=(6, 0))
        row.pack(fill="x")
        self.trust_button = ttk.Button(row, text="Trust new key", command=self._trust, state="disabled")
        self.trust_button.pack(side="right")
        self.fingerprint = ttk.Entry(row)
        self.fingerprint.pack(side="left", fill="x", expand=True, padx=(0, 4))
        self.message = ttk.Label(self.win, text="", wraplength=WRAP, padding=6, foreground="#b00020")
        self.message.pack(fill="x")
        self.names: list[str] = []
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected()
        pending = self._pending()
        names = sorted(set(self.client.pins) | set(pending))
        self.names = names
        self.peers.delete(0, "end")
        for name in names:
            mark = "\N{WARNING SIGN} key CHANGED" if name in pending else "pinned"
            self.peers.insert("end", f"{printable(name)}  ({mark})")
        if selected in names:
            self.select(selected)
        self._show()

    def _selected_changed(self, _event: tk.Event[tk.Listbox]) -> None:
        self.message.configure(text="")
        self._show()

    def select(self, name: str) -> None:
        if name in self.names:
            i = self.names.index(name)
            self.peers.selection_clear(0, "end")
            self.peers.selection_set(i)
            self._show()

    def selected(self) -> str | None:
        return next((name for i, name in enumerate(self.names) if self.peers.selection_includes(i)), None)

    def _pending(self) -> dict[str, tuple[str, str]]:
        try:
            return dict(self.client.pending_key_changes())
        except SecureChatError:
            return {}

    def _number(self, name: str, *, offered: bool = False) -> str:
        try:
            return printable(self.client.safety_number(name, offered=offered))
        except SecureChatError as exc:
            return explain(exc.code, str(exc.args[0]))

    def _show(self) -> None:
        name = self.selected()
        if name is None:
            self.detail.configure(text="Select a contact to see your safety number with them.")
            self.trust_button.configure(state="disabled")
            return
        pending = self._pending().get(name)
        if pending is None:
            self.detail.configure(text=f"Safety number with {printable(name)}:\n{self._number(name)}")
            self.trust_button.configure(state="disabled")
            return
        pinned, offered = pending
        self.detail.configure(text=(
            f"The server now presents a DIFFERENT key for {printable(name)}.\n"
            f"pinned key:  {printable(pinned)}\noffered key: {printable(offered)}\n"
            f"Safety number with the offered key (compare this one):\n{self._number(name, offered=True)}\n"
            "Nothing is sent to or accepted from this contact until you trust the new key."))
        self.trust_button.configure(state="normal")

    def _trust(self) -> None:
        name = self.selected()
        typed = self.fingerprint.get().strip()
        if name is None or not typed:
            self.failed("type the fingerprint your contact reads to you first")
            return
        self._accept(name, typed)

    def failed(self, text: str) -> None:
        self.message.configure(text=text, foreground="#b00020")

    def accepted(self, name: str) -> None:
        self.fingerprint.delete(0, "end")
        self.refresh()
        self.message.configure(text=f"the new key of {printable(name)} is now trusted", foreground="#1a7f37")

    def destroy(self) -> None:
        try:
            self.win.destroy()
        except tk.TclError:
            pass


class SafetyNumbers:
    """A client window's one ``TrustDialog`` (``dialog`` while it is open). A typed fingerprint is checked by
    ``TcpClient.accept_key_change`` on *worker*; on success *trusted(name)* runs on the Tk thread (the window
    saves its pins and says so), on failure the dialog says "NOT trusted" and why."""

    def __init__(self, parent: tk.Misc, host: Host, worker: ThreadPoolExecutor, *,
                 client: Callable[[], TcpClient | None], trusted: Callable[[str], None]) -> None:
        self._parent, self._host, self._worker = parent, host, worker
        self._client, self._trusted = client, trusted
        self.dialog: TrustDialog | None = None

    def open(self, client: TcpClient, name: str | None = None) -> None:
        """Show the dialog (or bring it up to date), with *name* selected if given."""
        if self.dialog is None:
            self.dialog = TrustDialog(self._parent, client, accept=self._accept, close=self.close)
        else:
            self.dialog.client = client
            self.dialog.refresh()
        if name is not None:
            self.dialog.select(name)

    def refresh(self) -> None:
        if self.dialog is not None:
            self.dialog.refresh()

    def close(self) -> None:
        if self.dialog is not None:
            self.dialog.destroy()
            self.dialog = None

    def _accept(self, name: str, fingerprint: str) -> None:
        client = self._client()
        if client is None:
            return

        def failed(exc: BaseException) -> None:
            if self.dialog is not None:
                self.dialog.failed(f"NOT trusted: {describe_error(exc)}")

        def done(_none: None) -> None:
            if self.dialog is not None:
                self.dialog.accepted(name)
            self._trusted(name)
        self._host.run(self._worker, lambda: client.accept_key_change(name, fingerprint), done, failed)
