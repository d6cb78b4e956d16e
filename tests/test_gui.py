"""The tkinter GUI, headless under Xvfb: two windows register, log in, chat and leave.

Starts its own Xvfb on a free display (:90..:99), builds the app in-process with ``launch``, drives it by
invoking buttons, asserts on widget contents, and saves a screenshot to artifacts/gui-session.png. Every wait is
bounded; the server, the Tk root and Xvfb are stopped in the fixture's teardown. Without Xvfb (or tkinter) the
test SKIPS with the reason on a developer's machine, and FAILS under ``CI=true``, where .ci/run installs both.
"""

from __future__ import annotations

import gc

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.tcp  # other processes and real sockets (tests/conftest.py)

ROOT = Path(__file__).resolve().parent.parent
ARTIFACT = ROOT / "artifacts" / "gui-session.png"
WAIT = 30.0
TEXT = "Hi bob :smile: this is signed and encrypted"


def missing(reason: str) -> None:
    """No X server here: skip with the reason on a developer's machine, fail in CI (CI=true), where .ci/run
    installs Xvfb, so the GUI is never silently untested there."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI=true: the GUI test must run)")
    pytest.skip(reason)


def _free_display() -> int:
    for n in range(90, 100):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    pytest.fail("no free X display number in :90..:99")


@pytest.fixture(scope="module")
def xvfb() -> Iterator[str]:
    """One Xvfb for the module: a Tk interpreter that outlived its display would abort the process (XIO)."""
    binary = shutil.which("Xvfb")
    if binary is None:
        missing("Xvfb is not installed: the GUI test needs it (apt-get install -y xvfb; .ci/run does this)")
    try:
        import tkinter  # noqa: F401
    except ImportError:
        missing("tkinter is not installed: the GUI test needs it (apt-get install -y python3-tk)")
    assert binary is not None
    n = _free_display()
    display = f":{n}"
    proc = subprocess.Popen([binary, display, "-screen", "0", "1366x768x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    old = os.environ.get("DISPLAY")
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{n}").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Xvfb did not start on {display}")
            time.sleep(0.05)
        os.environ["DISPLAY"] = display
        yield display
    finally:
        if old is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = old
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def screenshot(display: str, path: Path) -> None:
    """``import -window root`` when real ImageMagick is there, else Pillow's X11 grab (Pillow comes with matplotlib)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    magick = shutil.which("import")
    if magick is not None:
        version = subprocess.run([magick, "-version"], capture_output=True, text=True, timeout=10)
        if "ImageMagick" in version.stdout:
            subprocess.run([magick, "-display", display, "-window", "root", str(path)], check=True, timeout=30)
            return
    from PIL import ImageGrab
    ImageGrab.grab(xdisplay=display).save(path)


def accept_invitation(app: Any, window: Any, inviter: str) -> None:
    """The invitation bar appears in *window* naming *inviter*; press Accept."""
    app.pump_until(lambda: window.invitations.shown() and inviter in window.invitations.text(), WAIT,
                   f"{inviter}'s invitation shown")
    window.invitations.accept_button.invoke()


def assert_tiled_on_screen(app: object, width: int, height: int) -> None:
    """Every window lies inside the screen and no two overlap (the windows are tiled, PROTOCOL-free check)."""
    boxes = []
    for win in [app.root] + [c.win for c in app.clients]:  # type: ignore[attr-defined]
        win.update_idletasks()
        x, y, w, h = win.winfo_x(), win.winfo_y(), win.winfo_width(), win.winfo_height()
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height, (win.title(), x, y, w, h)
        boxes.append((x, y, x + w, y + h))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)


def test_two_windows_register_login_chat_and_leave(xvfb: str) -> None:
    from securechat.emoji import render
    from securechat.gui.app import launch
    from securechat.crypto.signatures import SCHEMES as SCHEME_TABLE
    from securechat.crypto.signatures import SignatureScheme
    from securechat.gui.chat_tab import VERIFIED
    from securechat.gui.client_window import SCHEMES

    app = launch(clients=2, scrypt_n=2**10)
    try:
        alice, bob = app.clients
        app.pump_until(lambda: alice.client is not None and bob.client is not None, WAIT, "connections")
        assert_tiled_on_screen(app, 1366, 768)
        # every scheme of the signature table is offered at registration
        offered = {scheme for _label, scheme in SCHEMES}
        assert offered == {s for s, p in SCHEME_TABLE.items() if p.user_selectable} and len(offered) == 4
        assert list(alice.form.scheme_choice.cget("values")) == [label for label, _ in SCHEMES]
        labels = {scheme: label for label, scheme in SCHEMES}
        for window, password, scheme in ((alice, "pw-alice-gui", SignatureScheme.RSA_PSS_SHA256),
                                         (bob, "pw-bob-gui", SignatureScheme.DSA_SHA256)):
            window.form.password_entry.insert(0, password)
            window.form.scheme_var.set(labels[scheme])
            window.form.register_button.invoke()
        app.pump_until(lambda: all("registered" in w.status.cget("text") for w in (alice, bob)), WAIT,
                       "registrations")
        for window in (alice, bob):
            window.form.login_button.invoke()
        app.pump_until(lambda: alice.username == "alice" and bob.username == "bob", WAIT, "logins")
        app.pump_until(lambda: "bob" in alice.roster.users.get(0, "end"), WAIT, "bob in alice's online list")

        alice.select_users(["bob"])
        alice.roster.open_button.invoke()
        accept_invitation(app, bob, "alice")  # nobody joins a chat without consent (PROTOCOL.md 7.11)
        app.pump_until(lambda: len(alice.tabs) == 1 and len(bob.tabs) == 1, WAIT, "chat tabs")
        (chat_id, alice_tab), = alice.tabs.items()
        bob_tab = bob.tabs[chat_id]
        app.pump_until(lambda: alice_tab.epoch >= 1 and bob_tab.epoch >= 1, WAIT, "chat keys")

        alice_tab.entry.insert(0, TEXT)
        alice_tab.send_button.invoke()
        app.pump_until(lambda: render(TEXT) in bob_tab.text(), WAIT, "bob receiving the message")
        line = next(l for l in bob_tab.text().splitlines() if render(TEXT) in l)
        assert "alice:" in line and f"{VERIFIED} (rsa-pss" in line.lower()
        assert "\N{SMILING FACE WITH OPEN MOUTH AND SMILING EYES}" in line  # :smile: rendered

        wire = alice.wire.get("1.0", "end-1c").splitlines()
        assert any("sent" in l and " B " in l for l in wire), wire
        assert not any("Hi bob" in l or "signed and encrypted" in l for l in wire)
        log = app.server_window.text()
        assert "relayed" in log and "Hi bob" not in log

        bob_tab.leave_button.invoke()
        app.pump_until(lambda: "left bob" in alice_tab.text(), WAIT, "alice seeing the rekey")
        assert "epoch 2" in alice_tab.text() and "you left" in bob_tab.text()
        assert "rekeyed: epoch 2" in app.server_window.text()

        alice_tab.entry.insert(0, "Still here, just the two of us")
        alice_tab.send_button.invoke()

        # a contributory chat chosen in the mode combobox; the tab header shows the mode
        alice.select_users(["bob"])
        alice.roster.mode_var.set("contributory")
        alice.roster.open_button.invoke()
        accept_invitation(app, bob, "alice")
        app.pump_until(lambda: len(alice.tabs) == 2 and len(bob.tabs) == 2, WAIT, "contributory chat tabs")
        new_id = next(c for c in alice.tabs if c != chat_id)
        c_alice, c_bob = alice.tabs[new_id], bob.tabs[new_id]
        app.pump_until(lambda: c_alice.epoch >= 1 and c_bob.epoch >= 1, WAIT, "contributory key agreement")
        assert "mode contributory" in c_alice.header.cget("text") and "mode contributory" in c_bob.header.cget("text")
        assert "key agreed by every member" in c_bob.text()
        c_alice.entry.insert(0, "agreed, not issued")
        c_alice.send_button.invoke()
        app.pump_until(lambda: "agreed, not issued" in c_bob.text(), WAIT, "bob receiving in contributory mode")
        line = next(l for l in c_bob.text().splitlines() if "agreed, not issued" in l)
        assert "alice:" in line and VERIFIED in line
        app.pump(0.5)
        screenshot(xvfb, ARTIFACT)
        assert ARTIFACT.stat().st_size > 10_000
    finally:
        app.close()
        # Tk variables must be freed on the thread that made them: collect them here, on the main thread,
        # not later in some other test's thread (which Tk reports as "main thread is not in main loop").
        del app
        gc.collect()


def test_a_window_joins_a_remote_server_over_websocket(xvfb: str, tmp_path: Path) -> None:
    """``python -m securechat.gui --url ws://...``: the client window connects, registers and logs in over the
    server's WebSocket port (docs/PROTOCOL.md 15)."""
    from securechat.crypto.kdf import FAST_SCRYPT
    from securechat.gui.app import launch
    from securechat.net.tcp_server import TcpServer
    from securechat.protocol.limits import ServerConfig
    from securechat.store import MemoryRegistry, new_server_key

    server = TcpServer(server_key=new_server_key(), registry=MemoryRegistry(), config=ServerConfig(scrypt=FAST_SCRYPT),
                       ws_port=0).start()
    app = None
    try:
        assert server.ws_address is not None
        url = f"ws://127.0.0.1:{server.ws_address[1]}/securechat"
        app = launch(clients=1, url=url, keys_dir=str(tmp_path / "keys"))
        (alice,) = app.clients
        app.pump_until(lambda: alice.client is not None, WAIT, "the WebSocket connection")
        assert alice.client.endpoint.scheme.value == "ws"
        alice.form.password_entry.insert(0, "pw-alice-ws")
        alice.form.register_button.invoke()
        app.pump_until(lambda: "registered" in alice.status.cget("text"), WAIT, "registration")
        alice.form.login_button.invoke()
        app.pump_until(lambda: alice.username == "alice", WAIT, "login")
    finally:
        if app is not None:
            app.close()
            del app
            gc.collect()
        server.stop()


# --- after a dropped connection; the trust dialog, unread markers and safe display --------------------------
# The connection is dropped by closing alice's socket under her window; the window must then disable Send (keeping
# what was typed), reconnect with bounded backoff, log in again with the password it holds in memory (nothing is
# asked), and say which chats survived (the lobby, which the server rejoins on login) and which were lost (a
# server-key chat: the server removed her when the connection dropped). A pin that does not match bob's key then
# raises the safety-number dialog, which accepts only the fingerprint of the key the server offers.

KEPT = "typed while the connection was down"


def online_pair(app: Any) -> tuple[Any, Any]:
    alice, bob = app.clients
    app.pump_until(lambda: alice.client is not None and bob.client is not None, WAIT, "connections")
    for window, password in ((alice, "pw-alice-gui"), (bob, "pw-bob-gui")):
        window.form.password_entry.insert(0, password)
        window.form.register_button.invoke()
    app.pump_until(lambda: all("registered" in w.status.cget("text") for w in (alice, bob)), WAIT, "registrations")
    for window in (alice, bob):
        window.form.login_button.invoke()  # the password typed for the registration is still in the field
    app.pump_until(lambda: alice.username == "alice" and bob.username == "bob", WAIT, "logins")
    app.pump_until(lambda: "bob" in alice.roster.users.get(0, "end"), WAIT, "bob in alice's online list")
    return alice, bob


def test_gui_reconnects_keeps_typed_text_reports_lost_chats_and_trusts_by_fingerprint(
        xvfb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from securechat.gui import client_window
    from securechat.gui.app import launch
    from securechat.protocol import events as ev

    monkeypatch.setattr(client_window, "RECONNECT_DELAYS", (0.6, 1.0))  # bounded: the last value repeats
    monkeypatch.setattr(client_window, "SURVIVAL_WAIT_MS", 800)
    app = launch(clients=2, scrypt_n=2**10, lobby=True)
    try:
        alice, bob = online_pair(app)
        assert alice.form.password_entry.get() == ""  # the password is not left on screen
        assert "online as alice" in alice.form.state_label.cget("text")
        app.pump_until(lambda: "lobby" in alice.tabs and "lobby" in bob.tabs, WAIT, "lobby tabs")
        alice.select_users(["bob"])
        alice.roster.open_button.invoke()
        accept_invitation(app, bob, "alice")
        app.pump_until(lambda: len(alice.tabs) == 2 and all(t.epoch >= 1 for t in alice.tabs.values())
                       and len(alice.tabs[next(c for c in alice.tabs if c != "lobby")].members) == 2, WAIT,
                       "a server-key chat with bob")
        chat_id = next(c for c in alice.tabs if c != "lobby")
        lobby = alice.tabs["lobby"]

        # unread markers: bob looks at another tab; alice writes in the lobby
        app.pump_until(lambda: chat_id in bob.tabs, WAIT, "bob's tab of the chat")
        bob.chats.notebook.select(bob.tabs[chat_id])
        app.pump(0.2)
        lobby.entry.insert(0, "hello lobby")
        lobby.send_button.invoke()
        app.pump_until(lambda: "hello lobby" in bob.tabs["lobby"].text(), WAIT, "bob receiving in the lobby")
        assert bob.chats.notebook.tab(bob.tabs["lobby"], "text").startswith("\N{BLACK CIRCLE}")
        assert "(1)" in bob.chats.notebook.tab(bob.tabs["lobby"], "text")
        bob.chats.notebook.select(bob.tabs["lobby"])
        app.pump(0.2)
        assert bob.chats.notebook.tab(bob.tabs["lobby"], "text") == "lobby"

        # untrusted text is made visible, never acted on (display.printable)
        alice.on_event(ev.ChatReceived(chat_id="lobby", epoch=lobby.epoch, sender="bob\x1b[2K", seq=99,
                                       text="ok\x1b[2K\r[lobby] carol: \u202everified", signature_scheme="ed25519",
                                       gap=0))
        assert "\x1b" not in lobby.text() and "\u202e" not in lobby.text()
        assert "\\x1b[2K\\r[lobby] carol: <U+202E>verified" in lobby.text()
        alice.on_event(ev.InvitationReceived(chat_id="c\x1b[2K" + "0" * 28, inviter="mallory\u202e",
                                             mode="server-key\r", suite="aes-256-gcm", expires_in=30))
        app.pump(0.2)
        assert alice.invitations.shown() and alice.invitations.text().isprintable()
        assert "mallory<U+202E> invites you to a server-key\\r chat c\\x1b[2K" in alice.invitations.text()
        alice.invitations.take()  # not answered: only its display mattered
        # an invitation the server forgets after expires_in (PROTOCOL.md 7.11) leaves the bar then, unanswered
        alice.on_event(ev.InvitationReceived(chat_id="e" * 32, inviter="bob", mode="server-key",
                                             suite="aes-256-gcm", expires_in=1))
        app.pump(0.2)
        assert alice.invitations.shown() and "bob invites you" in alice.invitations.text()
        app.pump_until(lambda: not alice.invitations.shown(), WAIT, "the expired invitation leaving the bar")
        assert alice.invitations.take() is None

        # the connection drops: Send is disabled, the typed text stays
        lobby.entry.insert(0, KEPT)
        alice.client.close()
        app.pump_until(lambda: alice.state == "reconnecting", WAIT, "alice noticing the drop")
        assert str(lobby.send_button.cget("state")) == "disabled" and lobby.entry.get() == KEPT
        assert "reconnecting" in alice.form.state_label.cget("text")
        assert str(alice.roster.open_button.cget("state")) == "disabled"
        # errors are wrapped to the window, not cut
        assert 0 < int(str(alice.status.cget("wraplength"))) <= alice.win.winfo_width()

        # it logs in again by itself and says what survived
        app.pump_until(lambda: "Chats still open" in alice.status.cget("text"), WAIT, "the reconnection report")
        report = alice.status.cget("text")
        assert "Chats still open: lobby" in report and "Lost" in report and chat_id[:6] in report.split("Lost")[1]
        assert alice.state == "online" and alice.username == "alice" and alice.form.password_entry.get() == ""
        assert "lost when the connection dropped" in alice.tabs[chat_id].text()
        assert str(alice.tabs[chat_id].send_button.cget("state")) == "disabled"
        assert str(lobby.send_button.cget("state")) == "normal" and lobby.entry.get() == KEPT
        lobby.send_button.invoke()
        app.pump_until(lambda: KEPT in bob.tabs["lobby"].text(), WAIT, "bob receiving what was kept")
        app.pump_until(lambda: lobby.entry.get() == "", WAIT, "the entry cleared once sent")
        app.pump(0.3)
        screenshot(xvfb, ARTIFACT.with_name("gui-reconnected.png"))

        # the safety-number dialog: a number for a pinned peer; a changed key accepted only by its fingerprint
        app.pump_until(lambda: "bob" in alice.client.pins, WAIT, "bob pinned")
        alice.form.trust_button.invoke()
        app.pump_until(lambda: alice.trust is not None, WAIT, "the safety-number dialog")
        alice.trust.select("bob")
        shown = alice.trust.detail.cget("text")
        assert "Safety number with bob" in shown and alice.client.safety_number("bob") in shown
        assert str(alice.trust.trust_button.cget("state")) == "disabled"  # nothing to accept: no change pending

        # the pin saved for bob no longer matches the key the server presents (as after a key change)
        real = alice.client.pins["bob"]
        app.keystore.save_pins("alice", {"bob": "00" * 16})
        alice.client.close()  # the next session loads the saved pins
        app.pump_until(lambda: alice.state == "reconnecting", WAIT, "the second drop")
        app.pump_until(lambda: "Chats still open" in alice.status.cget("text"), WAIT, "alice back online")
        alice.select_users(["bob"])
        alice.roster.open_button.invoke()
        accept_invitation(app, bob, "alice")
        app.pump_until(lambda: "bob" in alice.client.pending_key_changes(), WAIT, "the key change")
        app.pump_until(lambda: alice.trust is not None and "DIFFERENT key" in alice.trust.detail.cget("text"),
                       WAIT, "the dialog showing bob's change")
        assert str(alice.trust.trust_button.cget("state")) == "normal"
        assert alice.client.safety_number("bob", offered=True) in alice.trust.detail.cget("text")
        alice.trust.fingerprint.insert(0, "11" * 16)
        alice.trust.trust_button.invoke()
        app.pump_until(lambda: "NOT trusted" in alice.trust.message.cget("text"), WAIT, "a wrong fingerprint refused")
        assert "bob" in alice.client.pending_key_changes()
        alice.trust.fingerprint.delete(0, "end")
        alice.trust.fingerprint.insert(0, real)
        alice.trust.trust_button.invoke()
        app.pump_until(lambda: "now trusted" in alice.trust.message.cget("text"), WAIT, "the right one accepted")
        assert alice.client.pins["bob"] == real and "bob" not in alice.client.pending_key_changes()
        app.pump_until(lambda: app.keystore.load_pins("alice").get("bob") == real, WAIT, "the pin saved")
        app.pump(0.3)
        screenshot(xvfb, ARTIFACT.with_name("gui-trust.png"))
    finally:
        app.close()
        del app
        gc.collect()


def test_a_key_change_reported_before_the_login_reply_is_handled_still_opens_the_dialog(
        xvfb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a loaded machine the lobby's key (with bob's certificate, which no longer matches alice's pin) can reach
    alice's window before her login reply does; the window is not online yet then, so the warning cannot open the
    safety-number dialog. Logging in must catch up and open it: a substituted key is never just a status line that
    the next message overwrites. The login reply is delayed here to make that order certain."""
    from securechat.gui.app import launch

    app = launch(clients=2, scrypt_n=2**10, lobby=True)
    try:
        alice, bob = app.clients
        app.pump_until(lambda: alice.client is not None and bob.client is not None, WAIT, "connections")
        for window, password in ((alice, "pw-alice-gui"), (bob, "pw-bob-gui")):
            window.form.password_entry.insert(0, password)
            window.form.register_button.invoke()
        app.pump_until(lambda: all("registered" in w.status.cget("text") for w in (alice, bob)), WAIT,
                       "registrations")
        bob.form.login_button.invoke()
        app.pump_until(lambda: bob.username == "bob", WAIT, "bob's login")
        app.keystore.save_pins("alice", {"bob": "00" * 16})  # pinned in an earlier session: not bob's key now

        run = app.run

        def late(executor: Any, work: Any, done: Any, failed: Any) -> Any:
            return run(executor, work, lambda result: app.root.after(1500, done, result), failed)
        monkeypatch.setattr(app, "run", late)
        alice.form.login_button.invoke()
        app.pump_until(lambda: alice.client is not None and "bob" in alice.client.pending_key_changes(), WAIT,
                       "the key change")
        assert alice.state != "online" and alice.trust is None  # the reply is still on its way
        app.pump_until(lambda: alice.trust is not None and "DIFFERENT key" in alice.trust.detail.cget("text"),
                       WAIT, "the dialog showing bob's change")
        assert alice.state == "online" and alice.trust.selected() == "bob"
    finally:
        app.close()
        del app
        gc.collect()
