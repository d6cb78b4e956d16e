"""How tests/vectors/hybrid_salamander.json was made: one AES-256-GCM ciphertext that opens under two keys.

AES-GCM is not key-committing ("invisible salamanders": Dodis, Grubbs, Ristenpart and Woodage, CRYPTO 2018;
Albertini, Duong, Gueron, Koelbl, Luykx and Schmieg, USENIX Security 2022). A hybrid-mode sender (docs/PROTOCOL.md
7.7) chooses the message key it wraps for each recipient, so without a key commitment it can wrap key 1 for bob
and key 2 for carol and send ONE signed ciphertext that bob reads as ``pay bob $100 now...`` and carol as
``...pay eve $100 now...``. This script builds such a ciphertext for the AEAD keys that hybrid v2 derives from two
message keys (``hybrid_message_keys``), so the test can show the attack working with the commitment check off
(the lab variant) and refused with it on.

The construction, in three steps:

1. Layout: block 0 is ``pay bob $100 now`` under key 1, block 1 is ``pay eve $100 now`` under key 2; each is
   garbage under the other key. The client only accepts valid UTF-8, so the garbage must be valid too: a
   birthday search over random message-key pairs finds a pair whose keystreams make both garbage blocks ASCII
   (a 32-bit condition on the top bits, met by about one pair in 2^32; 2^16+ keys per side suffice).
2. The GCM tag is E_K(J0) xor GHASH_H(aad, ciphertext) with H = E_K(0^128). Setting tag1 = tag2 is one equation
   over GF(2^128) that is linear in the ciphertext blocks, so a few "free" blocks after the text can satisfy it.
   Over GF(2) it is 128 linear equations in the free blocks' bits.
3. The free blocks must decrypt to valid UTF-8 under both keys. Which bytes can be ASCII on both sides depends on
   the keystreams; a small dynamic programme picks, byte by byte, ASCII, a two- or three-byte UTF-8 lead or a
   continuation byte for each side, consistent with the keystreams. Each choice fixes a few plaintext bits, i.e.
   more linear equations on the ciphertext bits. Gaussian elimination over GF(2) solves all of them at once.

Run it from the repository root: ``python -m tests.vectors.make_salamander`` (about a minute on one core); it
rewrites the JSON file. The test suite only reads the JSON, and checks it with pycryptodome's own AES-GCM.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

from Crypto.Cipher import AES

from securechat.protocol.constructions import chat_header, hybrid_message_keys

VECTOR = Path(__file__).with_name("hybrid_salamander.json")
CHAT_ID, EPOCH, SENDER, SEQ, SUITE = "salamander-lab", 1, "alice", 1, "aes-256-gcm"
TEXT_BOB, TEXT_CAROL = b"pay bob $100 now", b"pay eve $100 now"
FREE_BLOCKS = 4
R = 0xE1 << 120  # the GCM reduction polynomial, in GCM's reflected bit order (NIST SP 800-38D)


def gf_mult(x: int, y: int) -> int:
    """Multiplication in GF(2^128) as GCM defines it (SP 800-38D, Algorithm 1); blocks as big-endian ints."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ R if v & 1 else v >> 1
    return z


def gf_pow(h: int, e: int) -> int:
    out = 1 << 127  # the multiplicative identity: the bit string 1000...0
    for _ in range(e):
        out = gf_mult(out, h)
    return out


def blocks_of(data: bytes) -> list[int]:
    padded = data + bytes(-len(data) % 16)
    return [int.from_bytes(padded[i:i + 16], "big") for i in range(0, len(padded), 16)]


def ghash(h: int, aad: bytes, ciphertext: bytes) -> int:
    x = 0
    for block in blocks_of(aad) + blocks_of(ciphertext) + [(len(aad) * 8 << 64) | (len(ciphertext) * 8)]:
        x = gf_mult(x ^ block, h)
    return x


class KeyView:
    """What the attacker computes from one AEAD key: H, E(J0) and the keystream blocks."""

    def __init__(self, key: bytes, nonce: bytes, n_blocks: int) -> None:
        ecb = AES.new(key, AES.MODE_ECB)
        self.h = int.from_bytes(ecb.encrypt(bytes(16)), "big")
        self.ej0 = int.from_bytes(ecb.encrypt(nonce + (1).to_bytes(4, "big")), "big")
        self.stream = [ecb.encrypt(nonce + (2 + i).to_bytes(4, "big")) for i in range(n_blocks)]

    def tag(self, aad: bytes, ciphertext: bytes) -> bytes:
        return (self.ej0 ^ ghash(self.h, aad, ciphertext)).to_bytes(16, "big")


def top_bits(block: bytes) -> int:
    return int.from_bytes(bytes(b & 0x80 for b in block), "big")


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def birthday(header: bytes, nonce: bytes, random_bytes=os.urandom, per_side: int = 1 << 18):  # type: ignore[no-untyped-def]
    """Message keys (mk1, mk2) whose garbage blocks are ASCII: top bits of (text1 ^ ks1_0) == ks2_0, and of
    ks1_1 == (text2 ^ ks2_1)."""
    side1: dict[tuple[int, int], bytes] = {}
    side2: dict[tuple[int, int], bytes] = {}
    for _ in range(per_side):
        mk1, mk2 = random_bytes(32), random_bytes(32)
        v1 = KeyView(hybrid_message_keys(mk1, header)[0], nonce, 2)
        v2 = KeyView(hybrid_message_keys(mk2, header)[0], nonce, 2)
        s1 = (top_bits(xor(TEXT_BOB, v1.stream[0])), top_bits(v1.stream[1]))
        s2 = (top_bits(v2.stream[0]), top_bits(xor(TEXT_CAROL, v2.stream[1])))
        side1[s1], side2[s2] = mk1, mk2
        if s1 in side2:
            yield mk1, side2[s1]
        if s2 in side1:
            yield side1[s2], mk2


# Byte templates: (kind, bits fixed in the plaintext byte as (mask, value)); pending continuations after it.
ASCII, CONT, LEAD2, LEAD3 = (0x80, 0x00), (0xC0, 0x80), (0xF0, 0xD0), (0xFC, 0xE4)
OPENERS = ((ASCII, 0), (LEAD2, 1), (LEAD3, 2))


def plan(delta: bytes) -> list[tuple[tuple[int, int], tuple[int, int]]] | None:
    """Per byte of the free region, a template for each side so that both plaintexts are valid UTF-8 and the
    fixed bits agree with delta = ks1 ^ ks2 (p1 ^ p2 == delta on every bit both sides fix)."""
    # states: pending continuation bytes (side 1, side 2); search depth-first, ASCII first
    def options(pending: int) -> tuple[tuple[tuple[int, int], int], ...]:
        return ((CONT, pending - 1),) if pending else OPENERS

    memo: dict[tuple[int, int, int], list[tuple[tuple[int, int], tuple[int, int]]] | None] = {}

    def walk(i: int, p1: int, p2: int) -> list[tuple[tuple[int, int], tuple[int, int]]] | None:
        if i == len(delta):
            return [] if p1 == p2 == 0 else None
        key = (i, p1, p2)
        if key in memo:
            return memo[key]
        result = None
        for t1, n1 in options(p1):
            for t2, n2 in options(p2):
                both = t1[0] & t2[0]
                if (t1[1] ^ t2[1]) & both != delta[i] & both:
                    continue  # the two sides fix a shared bit to values the keystreams cannot both give
                rest = walk(i + 1, n1, n2)
                if rest is not None:
                    result = [(t1, t2)] + rest
                    break
            if result is not None:
                break
        memo[key] = result
        return result

    return walk(0, 0, 0)


def solve(rows: list[tuple[int, int]], n: int) -> int | None:
    """Gaussian elimination over GF(2): rows are (mask over n unknowns, rhs); returns one solution."""
    pivots: dict[int, tuple[int, int]] = {}
    for mask, rhs in rows:
        for bit, (pmask, prhs) in pivots.items():
            if mask >> bit & 1:
                mask, rhs = mask ^ pmask, rhs ^ prhs
        if mask == 0:
            if rhs:
                return None
            continue
        bit = mask.bit_length() - 1
        for other, (omask, orhs) in list(pivots.items()):
            if omask >> bit & 1:
                pivots[other] = (omask ^ mask, orhs ^ rhs)
        pivots[bit] = (mask, rhs)
    x = 0
    for bit, (mask, rhs) in pivots.items():
        if rhs:
            x |= 1 << bit  # free unknowns are 0; each pivot row now holds only its pivot and free unknowns
    return x


def craft(mk1: bytes, mk2: bytes, header: bytes, nonce: bytes) -> bytes | None:
    """The ciphertext (without tag) for this key pair, or None if no plan exists for its keystreams."""
    n_blocks = 2 + FREE_BLOCKS
    k1, k2 = hybrid_message_keys(mk1, header)[0], hybrid_message_keys(mk2, header)[0]
    v1, v2 = KeyView(k1, nonce, n_blocks), KeyView(k2, nonce, n_blocks)
    c0, c1 = xor(TEXT_BOB, v1.stream[0]), xor(TEXT_CAROL, v2.stream[1])
    ks1, ks2 = b"".join(v1.stream[2:]), b"".join(v2.stream[2:])
    templates = plan(xor(ks1, ks2))
    if templates is None:
        return None
    n = 128 * FREE_BLOCKS
    rows: list[tuple[int, int]] = []

    def unknown(byte: int, bit: int) -> int:  # bit 7 = most significant bit of the byte
        block, offset = divmod(byte, 16)
        return block * 128 + (15 - offset) * 8 + bit

    for i, (t1, t2) in enumerate(templates):
        for (mask, value), stream in ((t1, ks1), (t2, ks2)):
            for bit in range(8):
                if mask >> bit & 1:  # ciphertext bit = plaintext bit ^ keystream bit
                    rows.append((1 << unknown(i, bit), (value >> bit & 1) ^ (stream[i] >> bit & 1)))
    # tag1 == tag2: sum over blocks B_k * (H1^e_k + H2^e_k) == E1(J0) + E2(J0)
    a_blocks = len(blocks_of(header))
    m = a_blocks + n_blocks + 1
    fixed = v1.ej0 ^ v2.ej0
    length = (len(header) * 8 << 64) | (16 * n_blocks * 8)
    for position, block in list(enumerate(blocks_of(header), 1)) + [(a_blocks + 1, int.from_bytes(c0, "big")),
                                                                   (a_blocks + 2, int.from_bytes(c1, "big")),
                                                                   (m, length)]:
        e = m - position + 1
        fixed ^= gf_mult(block, gf_pow(v1.h, e) ^ gf_pow(v2.h, e))
    columns: list[tuple[int, int]] = []  # (unknown index, product of its basis vector with D_j)
    for j in range(FREE_BLOCKS):
        e = m - (a_blocks + 3 + j) + 1
        d = gf_pow(v1.h, e) ^ gf_pow(v2.h, e)
        columns += [(j * 128 + q, gf_mult(1 << q, d)) for q in range(128)]
    for r in range(128):
        mask = 0
        for index, column in columns:
            if column >> r & 1:
                mask |= 1 << index
        rows.append((mask, fixed >> r & 1))
    x = solve(rows, n)
    if x is None:
        return None
    free = b"".join(((x >> (j * 128)) & ((1 << 128) - 1)).to_bytes(16, "big") for j in range(FREE_BLOCKS))
    ciphertext = c0 + c1 + free
    if v1.tag(header, ciphertext) != v2.tag(header, ciphertext):
        return None
    return ciphertext


def make(random_bytes=os.urandom) -> dict[str, str]:  # type: ignore[no-untyped-def]
    header = chat_header(chat_id=CHAT_ID, epoch=EPOCH, sender=SENDER, seq=SEQ, suite=SUITE)
    nonce = bytes(4) + SEQ.to_bytes(8, "big")
    for mk1, mk2 in birthday(header, nonce, random_bytes):
        ciphertext = craft(mk1, mk2, header, nonce)
        if ciphertext is None:
            continue
        view = KeyView(hybrid_message_keys(mk1, header)[0], nonce, 0)
        sealed = ciphertext + view.tag(header, ciphertext)
        texts = []
        for mk in (mk1, mk2):
            cipher = AES.new(hybrid_message_keys(mk, header)[0], AES.MODE_GCM, nonce=nonce)
            cipher.update(header)
            texts.append(cipher.decrypt_and_verify(sealed[:-16], sealed[-16:]).decode("utf-8"))
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        return {
            "about": "one AES-256-GCM ciphertext valid under two hybrid-v2 message keys; made by "
                     "tests/vectors/make_salamander.py (docs/PROTOCOL.md 7.7)",
            "chat_id": CHAT_ID, "epoch": str(EPOCH), "sender": SENDER, "seq": str(SEQ), "suite": SUITE,
            "message_key_bob": b64(mk1), "message_key_carol": b64(mk2), "sealed": b64(sealed),
            "text_bob": texts[0], "text_carol": texts[1],
        }
    raise RuntimeError("no key pair found; run again")


if __name__ == "__main__":
    vector = make()
    VECTOR.write_text(json.dumps(vector, indent=2, ensure_ascii=True) + "\n")
    print(f"wrote {VECTOR}: bob reads {vector['text_bob']!r}, carol reads {vector['text_carol']!r}", file=sys.stderr)
