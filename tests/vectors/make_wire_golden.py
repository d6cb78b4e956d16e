"""Make tests/vectors/wire_golden.json: every frame of one seeded simulated session, as a fingerprint.

The session (``session()``): alice, bob and carol register and log in; alice opens a chat with both in each mode
(server-key, contributory, hybrid, contributory-xor); alice and bob send, carol leaves, alice sends again. The
simulation's randomness and clock are seeded (securechat/teaching/simulation.py), so the same code gives the same
bytes. ``tests/test_wire_golden.py`` replays it: a refactor must leave both the frames' shapes and their bytes as
they were (docs/PROTOCOL.md describes them byte for byte).

Regenerate only for a deliberate wire change, and say so in docs/PROTOCOL.md:
``python tests/vectors/make_wire_golden.py``. The byte fingerprints also depend on how pycryptodome turns the
seeded random stream into keys, so the file records the pycryptodome version it was made with; the test
compares the bytes only under that version and the shapes always.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "wire_golden.json"
MODES = ("server-key", "contributory", "hybrid", "contributory-xor")


def _shape(direction: str, layer: str, data: bytes) -> str:
    """One frame without its values: the server sends or receives it, at which layer (clear, record, inner), its
    type and its field names in wire order."""
    body = data if data[:1] == b"{" else data[4:]  # sent frames carry their 4-byte length prefix in the trace
    message = json.loads(body)
    return f"{direction} {layer} {message['type']}: {','.join(message)}"


def session() -> dict[str, Any]:
    from securechat.teaching.simulation import Simulation

    sim = Simulation(seed=7)
    for name in ("alice", "bob", "carol"):
        sim.register_and_login(name, "pw-" + name)
    alice = sim.client("alice")
    for mode in MODES:
        before = set(alice.book.chats)
        alice.open_chat(["bob", "carol"], mode=mode)
        sim.run_until_idle()
        (chat_id,) = set(alice.book.chats) - before
        alice.send_chat(chat_id, "hello in " + mode)
        sim.run_until_idle()
        sim.client("bob").send_chat(chat_id, "a reply")
        sim.run_until_idle()
        sim.client("carol").leave(chat_id)
        sim.run_until_idle()
        alice.send_chat(chat_id, "after carol left")
        sim.run_until_idle()
    wire = [record.data for record in sim.trace]
    frames = [entry for entry in sim.server_trace]
    return {
        "wire_sha256": hashlib.sha256(b"".join(len(d).to_bytes(4, "big") + d for d in wire)).hexdigest(),
        "frames_sha256": hashlib.sha256(b"".join(len(e.data).to_bytes(4, "big") + e.data for e in frames)).hexdigest(),
        "shapes": [_shape(e.direction, e.layer, e.data) for e in frames],
    }


def pycryptodome_version() -> str:
    import Crypto

    return str(Crypto.__version__)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    golden = {"about": "tests/vectors/make_wire_golden.py", "pycryptodome": pycryptodome_version(), **session()}
    GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {GOLDEN.relative_to(ROOT)}: {len(golden['shapes'])} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
