"""The command-line side of the lab variants (PROTOCOL.md 16): ``--lab NAME`` and the banners.

Owns: the ``--lab``/``--student``/``--keylog`` options the server and client CLIs add, turning them into an
explicit ``LabMode`` (the only place the acknowledgement is given on the user's behalf: typing ``--lab NAME``
is the acknowledgement), and the banner both print. The switches themselves live in
``securechat.protocol.lab``; the attacks in ``securechat.labs.attacks``. Must not: weaken anything itself.
"""

from __future__ import annotations

import argparse
import logging

from ..protocol.lab import CLIENT_VARIANTS, LAB_ACKNOWLEDGEMENT, SERVER_VARIANTS, LabMode, parse_variants

CTF = "ctf"  # securechat-server --lab ctf: the capture-the-flag server (securechat.labs.ctf)

WHAT_EACH_DOES = {
    "unbound-login": "login proofs are not bound to the channel: a captured proof logs in elsewhere",
    "dsa-nonce-reuse": "this client signs with ONE DSA nonce: two signatures reveal its private key",
    "no-rekey-on-leave": "a member who leaves keeps a working key: it can read what is said afterwards",
    "no-replay-window": "this server accepts a replayed record: a network attacker repeats a command",
    "unpinned-client": "this client accepts ANY server key: a rogue server gets its password",
    "no-key-commitment": "this client skips the key commitment: a sender can show members different texts",
    CTF: "capture-the-flag server with scripted bots and weakened variants",
}


def add_lab_arguments(parser: argparse.ArgumentParser, side: str) -> None:
    """Add ``--lab NAME`` (repeatable) for *side* ("server" or "client"), and the side's lab tools."""
    names = sorted(v.value for v in (SERVER_VARIANTS if side == "server" else CLIENT_VARIANTS))
    if side == "server":
        names.append(CTF)
    group = parser.add_argument_group("course labs (INSECURE on purpose; PROTOCOL.md 16)")
    group.add_argument("--lab", action="append", default=[], choices=names, metavar="NAME",
                       help="run a deliberately weakened variant for a lab (repeatable): " + ", ".join(names))
    if side == "server":
        group.add_argument("--student", default="self-study",
                           help="with --lab ctf: the student whose flags this server hands out")
    else:
        group.add_argument("--keylog", metavar="FILE",
                           help="LAB TOOL: append this connection's record keys to FILE (created 0600) so "
                                "`python -m securechat.labs.proxy --keylog FILE` can decrypt the traffic")


def lab_mode(names: list[str], side: str) -> LabMode | None:
    """The LabMode the user asked for with ``--lab`` (None without it). ``ctf`` is not a variant: skipped."""
    variants = [n for n in names if n != CTF]
    if not variants:
        return None
    return LabMode(parse_variants(variants), side, LAB_ACKNOWLEDGEMENT)


def banner(lab: LabMode) -> str:
    """The loud multi-line warning both CLIs print (and log) at start-up."""
    lines = ["!" * 78, f"!! {lab.label}",
             "!! This securechat is deliberately weakened for a course lab. Never use it for real chats."]
    lines += [f"!!   {v.value}: {WHAT_EACH_DOES.get(v.value, '')}" for v in sorted(lab.variants)]
    lines.append("!" * 78)
    return "\n".join(lines)


def announce(lab: LabMode | None, log: logging.Logger) -> None:
    """Print the banner and write the log line; nothing when *lab* is None."""
    if lab is None:
        return
    print(banner(lab), flush=True)
    log.warning("%s", lab.label)


__all__ = ["CTF", "WHAT_EACH_DOES", "add_lab_arguments", "announce", "banner", "lab_mode"]
