"""The words the GUI shows (securechat/gui/render.py): every string someone else chose reaches a widget escaped.

No display and no tkinter needed: render.py is pure text. Each event the client windows show is built with every
string field set to hostile text (a terminal escape that erases the line and forges a "verified" prefix, a
right-to-left override, a line separator); whatever a render function returns must be printable, with the escape
made visible. A new event field, or a new render function that forgets ``printable``, fails here.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

import pytest

from securechat.errors import ErrorCode, SecureChatError
from securechat.keystore import KeyStoreError
from securechat.protocol import events as ev
from securechat.protocol.vocabulary import ChatMode

HOSTILE = "x\x1b[2K\r[lobby] carol: \u202everified\u2028\x00"


@pytest.fixture(scope="module")
def render() -> types.ModuleType:
    # imported here, not at the top: a module importing securechat.gui is marked "tcp" (tests/conftest.py),
    # and this one needs neither a display nor sockets
    from securechat.gui import render as module
    return module


def hostile(cls: type[Any], **fixed: Any) -> Any:
    """An instance of the event dataclass *cls* whose every text field (and every name in a tuple) is HOSTILE."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        kind = str(field.type)
        if field.name in fixed:
            values[field.name] = fixed[field.name]
        elif kind.startswith("tuple"):
            values[field.name] = (HOSTILE, "bob")
        elif kind.startswith("int"):
            values[field.name] = 3
        elif kind == "bool":
            values[field.name] = False
        else:  # str, ErrorCode (a server may send any code: it stays a string), str | None
            values[field.name] = HOSTILE
    return cls(**values)


def shown(value: object) -> list[str]:
    """Every string in a render function's result (a str, a line of (text, tag) parts, or a list of either)."""
    if isinstance(value, str):
        return [value]
    assert isinstance(value, (list, tuple)), value
    return [text for item in value for text in shown(item)]


def assert_escaped(value: object) -> None:
    texts = shown(value)
    assert texts
    for text in texts:
        assert text.isprintable(), repr(text)  # no control, bidi-override or line-separator character acts
    assert any("\\x1b[2K" in text for text in texts), texts  # made visible, not dropped (chat ids are cut short)


def test_every_chat_line_escapes_what_others_chose(render: types.ModuleType) -> None:
    keyed = hostile(ev.ChatKeyed, epoch=2)
    assert_escaped(render.keyed_header(keyed))
    assert_escaped(render.keyed_lines(keyed, first=True))
    assert_escaped(render.keyed_lines(hostile(ev.ChatKeyed, mode=ChatMode.CONTRIBUTORY_XOR), first=True))
    assert_escaped(render.received_line(hostile(ev.ChatReceived, gap=1)))
    assert_escaped(render.rejected_line(hostile(ev.MessageRejected)))
    assert_escaped(render.misbehaved_line(hostile(ev.PeerMisbehaved)))
    assert_escaped(render.aborted_line(hostile(ev.ChatAborted)))
    assert_escaped(render.key_changed_line(hostile(ev.PeerKeyChanged)))
    assert_escaped(render.opened_notes(hostile(ev.ChatOpened, rid=None)))
    assert_escaped(render.sent_line(HOSTILE, HOSTILE, HOSTILE))
    assert_escaped(render.names([HOSTILE, "bob"]))


def test_every_status_line_label_and_header_escapes_what_others_chose(render: types.ModuleType) -> None:
    assert_escaped(render.tab_label(HOSTILE, HOSTILE))
    assert_escaped(render.tab_label(HOSTILE))
    assert_escaped(render.waiting_header(HOSTILE, HOSTILE))
    assert_escaped(render.short_id(HOSTILE, 40))
    assert_escaped(render.invitation(hostile(ev.InvitationReceived), 3))
    assert_escaped(render.rejected_elsewhere(hostile(ev.MessageRejected)))
    assert_escaped(render.refused(hostile(ev.MessageRefused)))
    assert_escaped(render.aborted(hostile(ev.ChatAborted)))
    assert_escaped(render.key_changed(hostile(ev.PeerKeyChanged)))
    assert_escaped(render.opening(HOSTILE, [HOSTILE]))
    assert_escaped(render.opened(HOSTILE, hostile(ev.ChatOpened, rid=None)))
    assert_escaped(render.survivors(HOSTILE, [render.tab_label(HOSTILE, HOSTILE)], []))
    assert_escaped(render.describe_error(SecureChatError(HOSTILE, code=ErrorCode.BAD_FIELD)))
    assert_escaped(render.describe_error(KeyStoreError(HOSTILE)))
    entry = ev.TraceEntry(direction="receive", peer=None, layer="record", type="record",
                          data=b'{"type":"record","data":"' + HOSTILE.encode() + b'"}', size=40)
    assert_escaped(render.wire_line(entry))


def test_every_render_function_is_covered(render: types.ModuleType) -> None:
    """A render function added later must be added to the two tests above (this list is their union)."""
    covered = {"keyed_header", "keyed_lines", "received_line", "rejected_line", "misbehaved_line", "aborted_line",
               "key_changed_line", "opened_notes", "sent_line", "tab_label", "waiting_header", "short_id",
               "invitation", "rejected_elsewhere", "refused", "aborted", "key_changed", "opening", "opened",
               "survivors", "describe_error", "wire_line", "names"}
    functions = {name for name, value in vars(render).items()
                 if isinstance(value, types.FunctionType) and value.__module__ == render.__name__}
    assert functions == covered


def test_ordinary_text_is_shown_as_typed(render: types.ModuleType) -> None:
    """Escaping changes only what could act: an ordinary message, emoji and other scripts are unchanged."""
    message = ev.ChatReceived(chat_id="c" * 32, epoch=1, sender="bob", seq=1, text="héllo :smile: 你好",
                              signature_scheme="ed25519", gap=0)
    (sender, _), (text, _), (mark, _) = render.received_line(message)
    assert sender == "bob: " and text.startswith("héllo \N{SMILING FACE WITH OPEN MOUTH AND SMILING EYES} 你好")
    assert mark == f"{render.VERIFIED} (ed25519)"
