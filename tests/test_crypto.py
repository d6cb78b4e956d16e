"""Tests of securechat.crypto: known answers, round trips, tampering and every rejection rule.

Keys are generated once per module (RSA and DSA keygen dominate the run time); seeded randomness
(``random.Random(n).randbytes``) is used only where a test checks determinism. OpenSSL is required
(not skipped) for the interoperability checks of the key formats.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
import subprocess
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securechat.crypto import (
    AUDIT_HOOKS,
    CERT_VERSION,
    DSA_2048_256_DOMAIN,
    FAST_SCRYPT,
    HASH_BYTES,
    KEY_BYTES,
    NONCE_BYTES,
    OWASP_SCRYPT,
    RSA_BITS,
    SALT_BYTES,
    SCHEMES,
    TAG_BYTES,
    X25519_PUBLIC_BYTES,
    Certificate,
    CipherSuite,
    SchemeParams,
    ScryptParams,
    SignatureScheme,
    b64d,
    b64e,
    constant_time_equal,
    describe_key,
    dummy_password_record,
    encode_fields,
    fingerprint,
    generate_dsa_domain,
    generate_encryption_key,
    generate_ephemeral,
    generate_signing_key,
    hash_password,
    hkdf_sha256,
    hmac_sha256,
    issue_certificate,
    key_fingerprint,
    load_private_key,
    load_public_key,
    nonce_from_counter,
    parse_scheme,
    private_key_pem,
    public_key_der,
    public_key_pem,
    public_of,
    seal,
    sha256,
    shared_secret,
    sign,
    unseal,
    unwrap_key,
    verify,
    verify_certificate,
    verify_password,
    wrap_key,
)
from securechat.crypto.aead import _cbc_encrypt
from securechat.crypto import kdf
from securechat.crypto.certificates import CLOCK_SKEW_SECONDS
from securechat.crypto.kdf import _scrypt
from securechat.errors import AuthenticationError, ErrorCode, IntegrityError, RemoteProtocolError

# No example database: the tests must not write outside the files they own.
FAST = settings(max_examples=40, deadline=None, database=None)
ALL_SCHEMES = list(SignatureScheme)


def seeded(seed: int) -> Any:
    return random.Random(seed).randbytes


# --- module-scoped keys ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encryption_key() -> object:
    return generate_encryption_key()


@pytest.fixture(scope="module")
def other_encryption_key() -> object:
    return generate_encryption_key()


@pytest.fixture(scope="module")
def signing_keys() -> dict[SignatureScheme, object]:
    return {scheme: generate_signing_key(scheme) for scheme in ALL_SCHEMES}


@pytest.fixture(scope="module")
def other_signing_keys() -> dict[SignatureScheme, object]:
    return {scheme: generate_signing_key(scheme) for scheme in ALL_SCHEMES}


# --- encoding ------------------------------------------------------------------------------------------


def test_encode_fields_known_answer() -> None:
    expected = b"L\x00" + b"\x00\x00\x00\x02ab" + b"\x00\x00\x00\x02\xc3\xa9" + b"\x00\x00\x00\x08" + bytes(7) + b"\x01"
    assert encode_fields("L", b"ab", "é", 1) == expected
    assert encode_fields("label") == b"label\x00"


def test_encode_fields_is_unambiguous() -> None:
    assert encode_fields("x", "ab", "c") != encode_fields("x", "a", "bc")
    assert encode_fields("x", b"") != encode_fields("x")
    assert encode_fields("ab", "c") != encode_fields("a", "bc")


@FAST
@given(st.lists(st.binary(max_size=8), max_size=4), st.lists(st.binary(max_size=8), max_size=4))
def test_encode_fields_injective(a: list[bytes], b: list[bytes]) -> None:
    assert (encode_fields("t", *a) == encode_fields("t", *b)) == (a == b)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ((True,), TypeError),
        ((False,), TypeError),
        ((1.5,), TypeError),
        ((None,), TypeError),
        ((-1,), ValueError),
        ((2**64,), ValueError),
    ],
)
def test_encode_fields_rejects(fields: tuple[Any, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_fields("x", *fields)


def test_encode_fields_int_range_and_label() -> None:
    assert encode_fields("x", 2**64 - 1).endswith(b"\xff" * 8)
    with pytest.raises(ValueError):
        encode_fields("a\x00b")


def test_hashes_known_answers() -> None:
    assert sha256(b"abc").hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    # RFC 4231 test case 2
    assert hmac_sha256(b"Jefe", b"what do ya want for nothing?").hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    assert constant_time_equal(b"abc", b"abc") and not constant_time_equal(b"abc", b"abd")


def test_fingerprint_format() -> None:
    assert fingerprint(b"") == "e3b0:c442:98fc:1c14:9afb:f4c8:996f:b924"
    assert re.fullmatch(r"([0-9a-f]{4}:){7}[0-9a-f]{4}", fingerprint(b"anything"))


@FAST
@given(st.binary(max_size=64))
def test_b64_round_trip(data: bytes) -> None:
    assert b64d(b64e(data)) == data


@pytest.mark.parametrize("text", ["QR==", "QQ", "QQ===", "Q Q==", "QQ==\n", "\nQQ==", "é", "QQ-_", b"QQ==", None, 5])
def test_b64d_is_strict(text: Any) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        b64d(text)
    assert info.value.code is ErrorCode.BAD_FIELD


# --- aead ----------------------------------------------------------------------------------------------


def test_aead_constants_and_nonces() -> None:
    assert (KEY_BYTES, NONCE_BYTES, TAG_BYTES) == (32, 12, 16)
    assert nonce_from_counter(0) == bytes(12)
    assert nonce_from_counter(1) == bytes(11) + b"\x01"
    assert nonce_from_counter(2**64 - 1) == bytes(4) + b"\xff" * 8
    for bad in (-1, 2**64):
        with pytest.raises(ValueError):
            nonce_from_counter(bad)
    with pytest.raises(TypeError):
        nonce_from_counter(True)


def test_gcm_known_answers() -> None:
    # NIST GCM spec (McGrew-Viega) test cases 13 and 14: 256-bit zero key, 96-bit zero IV.
    assert seal(bytes(32), b"", aad=b"", nonce=bytes(12)).hex() == "530f8afbc74536b9a963b4f1c4cb738b"
    assert seal(bytes(32), bytes(16), aad=b"", nonce=bytes(12)).hex() == (
        "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
    )


def test_cbc_hmac_construction() -> None:
    key, nonce, aad, plaintext = bytes(range(32)), nonce_from_counter(7), b"header", b"attack at dawn"
    sealed = seal(key, plaintext, aad=aad, nonce=nonce, suite=CipherSuite.AES_256_CBC_HMAC_SHA256)
    enc_key = hkdf_sha256(key, salt=b"", info=b"securechat v1 cbc-hmac enc")
    mac_key = hkdf_sha256(key, salt=b"", info=b"securechat v1 cbc-hmac mac")
    iv, ciphertext, tag = sealed[:16], sealed[16:-32], sealed[-32:]
    # AES-ECB(enc_key, block) is the first block of CBC with a zero IV.
    assert iv == _cbc_encrypt(enc_key, bytes(16), nonce + bytes(4))[:16]
    assert ciphertext == _cbc_encrypt(enc_key, iv, plaintext)
    assert tag == hmac_sha256(mac_key, encode_fields("securechat v1 cbc-hmac", aad, nonce, iv, ciphertext))
    assert len(sealed) == 16 + 16 + 32
    # Golden bytes, pinned so that any change of the construction is noticed.
    assert sealed.hex() == (
        "e26f576a145bae5bb567368169992e7e04d1c7769180e9831da9e15f50b595aa"
        "c4f566b0332c35ce329392dcfea8b02716d1a448d9ef5f38ef34ce1b18360a8f"
    )


@pytest.mark.parametrize("suite", list(CipherSuite))
@FAST
@given(plaintext=st.binary(max_size=100), aad=st.binary(max_size=20), counter=st.integers(0, 2**64 - 1))
def test_seal_round_trip(suite: CipherSuite, plaintext: bytes, aad: bytes, counter: int) -> None:
    key, nonce = bytes(range(32)), nonce_from_counter(counter)
    assert (
        unseal(key, seal(key, plaintext, aad=aad, nonce=nonce, suite=suite), aad=aad, nonce=nonce, suite=suite)
        == plaintext
    )


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize("suite", list(CipherSuite))
def test_unseal_rejects_tampering(suite: CipherSuite) -> None:
    key, nonce, aad = bytes(range(32)), nonce_from_counter(5), b"aad"
    sealed = seal(key, b"sixteen byte msg and more", aad=aad, nonce=nonce, suite=suite)
    attempts = [
        (key, _flip(sealed, 0), aad, nonce),  # first ciphertext (or IV) byte
        (key, _flip(sealed, len(sealed) // 2), aad, nonce),  # middle
        (key, _flip(sealed, len(sealed) - 1), aad, nonce),  # tag
        (key, sealed, b"aae", nonce),  # aad
        (key, sealed, aad, nonce_from_counter(6)),  # nonce
        (bytes(32), sealed, aad, nonce),  # key
        (key, sealed[:-1], aad, nonce),  # truncated
        (key, sealed + b"\x00", aad, nonce),  # extended
        (key, b"", aad, nonce),
        (key, sealed[:15], aad, nonce),
    ]
    messages = set()
    for attempt_key, attempt, attempt_aad, attempt_nonce in attempts:
        with pytest.raises(IntegrityError) as info:
            unseal(attempt_key, attempt, aad=attempt_aad, nonce=attempt_nonce, suite=suite)
        assert info.value.code is ErrorCode.BAD_RECORD
        messages.add(str(info.value))
    assert len(messages) == 1  # never reveals which check failed


def test_cbc_bad_padding_same_error_as_bad_tag() -> None:
    # A MAC-valid record with bad padding can only come from a key holder, but must still look the
    # same as any forgery. Build one by MACing a ciphertext whose padding is wrong.
    key, nonce, aad = bytes(range(32)), nonce_from_counter(1), b""
    enc_key = hkdf_sha256(key, salt=b"", info=b"securechat v1 cbc-hmac enc")
    mac_key = hkdf_sha256(key, salt=b"", info=b"securechat v1 cbc-hmac mac")
    iv = _cbc_encrypt(enc_key, bytes(16), nonce + bytes(4))[:16]
    ciphertext = _cbc_encrypt(enc_key, iv, b"x" * 16)[:16]  # one block of plaintext, no padding block
    tag = hmac_sha256(mac_key, encode_fields("securechat v1 cbc-hmac", aad, nonce, iv, ciphertext))
    with pytest.raises(IntegrityError) as padding:
        unseal(key, iv + ciphertext + tag, aad=aad, nonce=nonce, suite=CipherSuite.AES_256_CBC_HMAC_SHA256)
    with pytest.raises(IntegrityError) as forged:
        unseal(key, iv + ciphertext + _flip(tag, 0), aad=aad, nonce=nonce, suite=CipherSuite.AES_256_CBC_HMAC_SHA256)
    assert str(padding.value) == str(forged.value)


@pytest.mark.parametrize("suite", list(CipherSuite))
def test_seal_rejects_bad_sizes(suite: CipherSuite) -> None:
    for key, nonce in ((bytes(16), bytes(12)), (bytes(24), bytes(12)), (bytes(32), bytes(16)), (bytes(32), b"")):
        with pytest.raises(ValueError):
            seal(key, b"m", aad=b"", nonce=nonce, suite=suite)
        with pytest.raises(ValueError):
            unseal(key, bytes(64), aad=b"", nonce=nonce, suite=suite)


def test_seal_refuses_non_bytes() -> None:
    for bad in (5, "text", None):
        with pytest.raises(TypeError):
            seal(bytes(32), bad, aad=b"", nonce=bytes(12))  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            unseal(bytes(32), bad, aad=b"", nonce=bytes(12))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        seal(bytes(32), b"m", aad="header", nonce=bytes(12))  # type: ignore[arg-type]


def test_audit_hooks_see_every_seal() -> None:
    seen: list[tuple[bytes, bytes]] = []
    AUDIT_HOOKS.append(lambda key_hash, nonce: seen.append((key_hash, nonce)))
    try:
        key = bytes(range(32))
        for counter, suite in enumerate(CipherSuite):
            seal(key, b"m", aad=b"", nonce=nonce_from_counter(counter), suite=suite)
    finally:
        AUDIT_HOOKS.clear()
    assert seen == [
        (sha256(bytes(range(32))), nonce_from_counter(0)),
        (sha256(bytes(range(32))), nonce_from_counter(1)),
    ]
    assert len(set(seen)) == len(seen)


# --- kdf ---------------------------------------------------------------------------------------------------


def test_hkdf_rfc5869_known_answers() -> None:
    okm = hkdf_sha256(bytes([0x0B] * 22), salt=bytes(range(13)), info=bytes(range(0xF0, 0xFA)), length=42)
    assert okm.hex() == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    okm = hkdf_sha256(bytes([0x0B] * 22), salt=b"", info=b"", length=42)  # test case 3: empty salt
    assert okm.hex() == "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    assert len(hkdf_sha256(b"k", salt=b"", info=b"", length=8160)) == 8160
    for bad in (0, 8161):
        with pytest.raises(ValueError):
            hkdf_sha256(b"k", salt=b"", info=b"", length=bad)


def test_scrypt_params() -> None:
    assert ScryptParams(n=2**17, r=8, p=1) == OWASP_SCRYPT
    assert OWASP_SCRYPT.memory_bytes == 128 * 2**20
    assert ScryptParams(n=1024) == FAST_SCRYPT
    assert (SALT_BYTES, HASH_BYTES) == (16, 32)
    for bad in ({"n": 3}, {"n": 1}, {"n": 0}, {"n": 1024, "r": 0}, {"n": 1024, "p": 0}):
        with pytest.raises(ValueError):
            ScryptParams(**bad)
    with pytest.raises(TypeError):
        ScryptParams(n=True)


def test_scrypt_rfc7914_known_answer() -> None:
    # RFC 7914 section 12, ("password", "NaCl", N=1024, r=8, p=16): the first 32 bytes of its output.
    assert _scrypt("password", b"NaCl", ScryptParams(n=1024, r=8, p=16)).hex() == (
        "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
    )


def test_hash_and_verify_password() -> None:
    record = hash_password("correct horse", FAST_SCRYPT)
    assert re.fullmatch(r"scrypt\$1024\$8\$1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=", record)
    assert verify_password("correct horse", record)
    assert not verify_password("correct horsf", record)
    assert hash_password("pw", FAST_SCRYPT, random_bytes=seeded(1)) == hash_password(
        "pw", FAST_SCRYPT, random_bytes=seeded(1)
    )
    assert hash_password("pw", FAST_SCRYPT) != hash_password("pw", FAST_SCRYPT)  # fresh salt


def test_password_is_nfc_normalised() -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert unicodedata.normalize("NFC", decomposed) == composed
    assert verify_password(decomposed, hash_password(composed, FAST_SCRYPT))


@pytest.mark.parametrize(
    "record",
    [
        "",
        "scrypt",
        "bcrypt$1024$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$1000$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$01024$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$+1024$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$1024$0$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$1024$8$1$AAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$1024$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",
        "scrypt$1024$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=$",
        "scrypt$2097152$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # 2 GiB
        None,
    ],
)
def test_verify_password_malformed_is_false(record: Any) -> None:
    assert verify_password("pw", record) is False


def test_dummy_password_record() -> None:
    record = dummy_password_record(FAST_SCRYPT, random_bytes=seeded(2))
    assert record.startswith("scrypt$1024$8$1$")
    assert not verify_password("", record) and not verify_password("pw", record)


# --- signatures ----------------------------------------------------------------------------------------


def test_scheme_table_is_complete() -> None:
    assert set(SCHEMES) == set(SignatureScheme)
    assert all(isinstance(params, SchemeParams) and params.user_selectable for params in SCHEMES.values())
    assert [scheme.value for scheme in SignatureScheme] == [
        "rsa-pss-sha256",
        "dsa-2048-sha256",
        "ecdsa-p256-sha256",
        "ed25519",
    ]


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_sign_and_verify(scheme: SignatureScheme, signing_keys: dict[SignatureScheme, object]) -> None:
    key = signing_keys[scheme]
    signature = sign(scheme, key, b"header+ciphertext")
    verify(scheme, public_of(key), b"header+ciphertext", signature)
    verify(scheme, load_public_key(public_key_der(key)), b"header+ciphertext", signature)
    assert SCHEMES[scheme].key_check(key) and SCHEMES[scheme].key_check(public_of(key))


def _expect_bad_signature(scheme: Any, key: Any, data: Any, signature: Any) -> str:
    with pytest.raises(AuthenticationError) as info:
        verify(scheme, key, data, signature)
    assert info.value.code is ErrorCode.BAD_SIGNATURE
    return str(info.value)


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_verify_rejects(
    scheme: SignatureScheme,
    signing_keys: dict[SignatureScheme, object],
    other_signing_keys: dict[SignatureScheme, object],
) -> None:
    key, data = signing_keys[scheme], b"message"
    signature = sign(scheme, key, data)
    messages = {
        _expect_bad_signature(scheme, public_of(key), b"messagf", signature),
        _expect_bad_signature(scheme, public_of(key), data, _flip(signature, len(signature) - 1)),
        _expect_bad_signature(scheme, public_of(key), data, _flip(signature, 0)),
        _expect_bad_signature(scheme, public_of(other_signing_keys[scheme]), data, signature),
        _expect_bad_signature(scheme, public_of(key), data, b""),
        _expect_bad_signature(scheme, public_of(key), data, signature + b"\x00"),
        _expect_bad_signature(scheme, public_of(key), data, signature.hex()),
        _expect_bad_signature(scheme, None, data, signature),
        _expect_bad_signature("no-such-scheme", public_of(key), data, signature),
    }
    for other in ALL_SCHEMES:
        if other is not scheme:  # another scheme, with its own key or with this key (downgrade)
            messages.add(_expect_bad_signature(other, public_of(signing_keys[other]), data, signature))
            messages.add(_expect_bad_signature(other, public_of(key), data, signature))
    assert len(messages) == 1


def test_downgrade_dsa_key_with_rsa_scheme(signing_keys: dict[SignatureScheme, object]) -> None:
    dsa_key = signing_keys[SignatureScheme.DSA_SHA256]
    signature = sign(SignatureScheme.DSA_SHA256, dsa_key, b"m")
    _expect_bad_signature(SignatureScheme.RSA_PSS_SHA256, public_of(dsa_key), b"m", signature)
    with pytest.raises(ValueError):
        sign(SignatureScheme.RSA_PSS_SHA256, dsa_key, b"m")
    with pytest.raises(ValueError):
        sign(SignatureScheme.DSA_SHA256, public_of(dsa_key), b"m")  # public key cannot sign
    with pytest.raises(TypeError):
        sign(SignatureScheme.DSA_SHA256, dsa_key, 5)  # type: ignore[arg-type]


@FAST
@given(signature=st.binary(max_size=300))
def test_verify_random_bytes_only_authentication_error(
    signature: bytes, signing_keys: dict[SignatureScheme, object]
) -> None:
    for scheme, key in signing_keys.items():
        with pytest.raises(AuthenticationError):
            verify(scheme, public_of(key), b"m", signature)


def test_signature_randomness_is_injected(signing_keys: dict[SignatureScheme, object]) -> None:
    for scheme in (SignatureScheme.RSA_PSS_SHA256, SignatureScheme.DSA_SHA256, SignatureScheme.ECDSA_P256_SHA256):
        key = signing_keys[scheme]
        assert sign(scheme, key, b"m", random_bytes=seeded(3)) == sign(scheme, key, b"m", random_bytes=seeded(3))
        assert sign(scheme, key, b"m", random_bytes=seeded(3)) != sign(scheme, key, b"m", random_bytes=seeded(4))
    ed = signing_keys[SignatureScheme.ED25519]  # RFC 8032 signatures are deterministic
    assert sign(SignatureScheme.ED25519, ed, b"m", random_bytes=seeded(3)) == sign(SignatureScheme.ED25519, ed, b"m")
    assert describe_key(generate_signing_key(SignatureScheme.ED25519, random_bytes=seeded(5))) == describe_key(
        generate_signing_key(SignatureScheme.ED25519, random_bytes=seeded(5))
    )


def _mgf1(seed: bytes, length: int) -> bytes:
    out = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(length // 32 + 1))
    return out[:length]


def _pss_sign_by_hand(key: object, data: bytes, salt: bytes) -> bytes:
    """RSASSA-PSS (RFC 8017 9.1.1) with SHA-256/MGF1-SHA-256 and any salt, from the key numbers."""
    numbers = describe_key(key)
    n, d = int(numbers["n"]), int(numbers["d"])
    em_bits = n.bit_length() - 1
    em_len = (em_bits + 7) // 8
    h = hashlib.sha256(bytes(8) + hashlib.sha256(data).digest() + salt).digest()
    db = bytes(em_len - len(salt) - 32 - 2) + b"\x01" + salt
    masked = bytes(a ^ b for a, b in zip(db, _mgf1(h, em_len - 33), strict=True))
    masked = bytes([masked[0] & (0xFF >> (8 * em_len - em_bits))]) + masked[1:]
    em = int.from_bytes(masked + h + b"\xbc", "big")
    return pow(em, d, n).to_bytes((n.bit_length() + 7) // 8, "big")


def test_pss_requires_salt_length_32(signing_keys: dict[SignatureScheme, object]) -> None:
    key = signing_keys[SignatureScheme.RSA_PSS_SHA256]
    verify(SignatureScheme.RSA_PSS_SHA256, public_of(key), b"m", _pss_sign_by_hand(key, b"m", bytes(range(32))))
    for salt_length in (0, 20, 31, 33, 64):
        _expect_bad_signature(
            SignatureScheme.RSA_PSS_SHA256, public_of(key), b"m", _pss_sign_by_hand(key, b"m", bytes(salt_length))
        )


def test_dsa_uses_fixed_domain(
    signing_keys: dict[SignatureScheme, object], other_signing_keys: dict[SignatureScheme, object]
) -> None:
    first, second = (describe_key(keys[SignatureScheme.DSA_SHA256]) for keys in (signing_keys, other_signing_keys))
    assert (first["p"], first["q"], first["g"]) == (second["p"], second["q"], second["g"]) == DSA_2048_256_DOMAIN
    p, q, g = DSA_2048_256_DOMAIN
    assert (p.bit_length(), q.bit_length(), first["bits"]) == (2048, 256, 2048)
    assert (p - 1) % q == 0 and pow(g, q, p) == 1 and g != 1
    assert first["y"] != second["y"]


def test_generate_dsa_domain() -> None:
    p, q, g = generate_dsa_domain(1024, random_bytes=seeded(6))
    assert (p.bit_length(), q.bit_length()) == (1024, 160)
    assert (p - 1) % q == 0 and pow(g, q, p) == 1 and g != 1
    assert generate_dsa_domain(1024, random_bytes=seeded(6)) == (p, q, g)
    with pytest.raises(ValueError):
        generate_dsa_domain(1536)


def test_parse_scheme() -> None:
    for scheme in SignatureScheme:
        assert parse_scheme(scheme.value) is scheme
    for bad in ("rsa", "RSA-PSS-SHA256", "", None, 1, b"ed25519"):
        with pytest.raises(RemoteProtocolError) as info:
            parse_scheme(bad)
        assert info.value.code is ErrorCode.BAD_FIELD


# --- keys ------------------------------------------------------------------------------------------------


def _der(tag: int, content: bytes) -> bytes:
    if len(content) < 128:
        return bytes([tag, len(content)]) + content
    length = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _seq(*parts: bytes) -> bytes:
    return _der(0x30, b"".join(parts))


def _rsa_spki(n: int, e: int) -> bytes:
    return _seq(
        _seq(bytes.fromhex("06092a864886f70d010101"), b"\x05\x00"), _der(0x03, b"\x00" + _seq(_der_int(n), _der_int(e)))
    )


def _dsa_spki(p: int, q: int, g: int, y: int) -> bytes:
    algorithm = _seq(bytes.fromhex("06072a8648ce380401"), _seq(_der_int(p), _der_int(q), _der_int(g)))
    return _seq(algorithm, _der(0x03, b"\x00" + _der_int(y)))


def _p256_spki(point: bytes) -> bytes:
    algorithm = _seq(bytes.fromhex("06072a8648ce3d0201"), bytes.fromhex("06082a8648ce3d030107"))
    return _seq(algorithm, _der(0x03, b"\x00" + point))


def test_encryption_key(encryption_key: object) -> None:
    numbers = describe_key(encryption_key)
    assert (numbers["type"], numbers["bits"], numbers["e"], RSA_BITS) == ("RSA", 2048, 65537, 2048)
    assert "d" in numbers and "d" not in describe_key(public_of(encryption_key))


@pytest.mark.parametrize("kind", ["encryption", *ALL_SCHEMES])
def test_public_key_round_trip(kind: Any, encryption_key: object, signing_keys: dict[SignatureScheme, object]) -> None:
    key = encryption_key if kind == "encryption" else signing_keys[kind]
    der = public_key_der(key)
    assert public_key_der(public_of(key)) == der
    assert public_key_der(load_public_key(der)) == der
    assert key_fingerprint(key) == fingerprint(der) == key_fingerprint(load_public_key(der))
    assert public_key_pem(key).startswith("-----BEGIN PUBLIC KEY-----\n")


def test_load_public_key_rejects(encryption_key: object, signing_keys: dict[SignatureScheme, object]) -> None:
    rsa = describe_key(encryption_key)
    n, e = int(rsa["n"]), int(rsa["e"])
    assert _rsa_spki(n, e) == public_key_der(encryption_key)  # the hand-made DER is right
    ecdsa = describe_key(signing_keys[SignatureScheme.ECDSA_P256_SHA256])
    ex, ey = int(ecdsa["x"]).to_bytes(32, "big"), int(ecdsa["y"]).to_bytes(32, "big")
    assert _p256_spki(b"\x04" + ex + ey) == public_key_der(signing_keys[SignatureScheme.ECDSA_P256_SHA256])
    dsa = describe_key(signing_keys[SignatureScheme.DSA_SHA256])
    p, q, g, y = (int(dsa[name]) for name in "pqgy")
    assert _dsa_spki(p, q, g, y) == public_key_der(signing_keys[SignatureScheme.DSA_SHA256])
    der = public_key_der(encryption_key)
    bad_inputs: list[Any] = [
        _dsa_spki(p, q, g, 1),  # y = 1: outside the order-q subgroup's useful range
        _dsa_spki(p, q, g, p - 1),  # order 2
        _dsa_spki(p, q, g, y * 3 % p),  # 3 is outside the order-q subgroup, so y*3 is too
        b"",
        b"\x30\x00",
        der[:-1],
        der + b"\x00",
        public_key_pem(encryption_key).encode(),
        der.hex(),
        None,
        _rsa_spki(n >> 1024 | 1, e),  # 1024-bit RSA
        _rsa_spki((n << 6144) | 1, e),  # 8192-bit RSA
        _p256_spki(bytes([2 + int(ecdsa["y"]) % 2]) + ex),  # compressed point: not canonical
        bytes.fromhex("302a300506032b656e032100") + bytes(range(32)),  # X25519 SPKI
        # parameters absent instead of NULL: readable, but not the canonical encoding
        _seq(_seq(bytes.fromhex("06092a864886f70d010101")), _der(0x03, b"\x00" + _seq(_der_int(n), _der_int(e)))),
    ]
    for bad in bad_inputs:
        with pytest.raises(RemoteProtocolError) as info:
            load_public_key(bad)
        assert info.value.code is ErrorCode.BAD_FIELD


@pytest.mark.parametrize("kind", ["encryption", *ALL_SCHEMES])
def test_private_key_pem_round_trip(
    kind: Any, encryption_key: object, signing_keys: dict[SignatureScheme, object]
) -> None:
    key = encryption_key if kind == "encryption" else signing_keys[kind]
    pem = private_key_pem(key, "s3cret passphrase")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert describe_key(load_private_key(pem, "s3cret passphrase")) == describe_key(key)


def test_load_private_key_failures(signing_keys: dict[SignatureScheme, object]) -> None:
    pem = private_key_pem(signing_keys[SignatureScheme.ED25519], "right")
    messages = set()
    for data, passphrase in (
        (pem, "wrong"),
        (pem, ""),
        (b"garbage", "right"),
        (pem[:100], "right"),
        (pem.decode(), "right"),
    ):
        with pytest.raises(AuthenticationError) as info:
            load_private_key(data, passphrase)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.AUTH_FAILED
        messages.add(str(info.value))
    assert len(messages) == 1
    with pytest.raises(ValueError):
        private_key_pem(signing_keys[SignatureScheme.ED25519], "")
    with pytest.raises(ValueError):
        private_key_pem(public_of(signing_keys[SignatureScheme.ED25519]), "pw")


def _openssl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=False, timeout=30)


@pytest.mark.tcp
@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_openssl_reads_our_key_files(
    scheme: SignatureScheme, signing_keys: dict[SignatureScheme, object], tmp_path: Path
) -> None:
    key = signing_keys[scheme]
    pem_file = tmp_path / "key.pem"
    pem_file.write_bytes(private_key_pem(key, "open sesame"))
    result = _openssl("pkey", "-in", str(pem_file), "-passin", "pass:open sesame", "-pubout")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == public_key_pem(key)
    assert _openssl("pkey", "-in", str(pem_file), "-passin", "pass:wrong", "-pubout").returncode != 0
    structure = _openssl("asn1parse", "-in", str(pem_file)).stdout.decode()
    # PBES2 with scrypt (N=2^14=0x4000, r=8, p=5, 16-byte salt) and AES-256-CBC
    assert re.search(
        r":PBES2\s.*:scrypt\s.*l=\s*16 prim: OCTET STRING.*:4000\s.*:08\s.*:05\s.*:aes-256-cbc", structure, re.S
    )
    spki = _openssl("pkey", "-pubin", "-inform", "DER", "-outform", "DER", stdin=public_key_der(key))
    assert spki.returncode == 0 and spki.stdout == public_key_der(key)


def test_describe_key(signing_keys: dict[SignatureScheme, object]) -> None:
    dsa = describe_key(signing_keys[SignatureScheme.DSA_SHA256])
    assert {"p", "q", "g", "y", "x"} <= set(dsa) and dsa["type"] == "DSA"
    assert "x" not in describe_key(public_of(signing_keys[SignatureScheme.DSA_SHA256]))
    assert describe_key(signing_keys[SignatureScheme.ECDSA_P256_SHA256])["curve"] == "NIST P-256"
    assert describe_key(signing_keys[SignatureScheme.ED25519])["bits"] == 255
    with pytest.raises(TypeError):
        describe_key("not a key")


# --- wrap ------------------------------------------------------------------------------------------------


def test_wrap_round_trip(encryption_key: object) -> None:
    session_key = bytes(range(32))
    wrapped = wrap_key(public_of(encryption_key), session_key)
    assert len(wrapped) == 256 and unwrap_key(encryption_key, wrapped) == session_key
    assert wrap_key(public_of(encryption_key), session_key) != wrapped  # OAEP is randomised
    seeded_wraps = {wrap_key(public_of(encryption_key), session_key, random_bytes=seeded(7)) for _ in range(2)}
    assert len(seeded_wraps) == 1
    short = wrap_key(public_of(encryption_key), b"16 byte key!!!!!")
    assert unwrap_key(encryption_key, short, expected_length=None) == b"16 byte key!!!!!"
    assert unwrap_key(encryption_key, short, expected_length=16) == b"16 byte key!!!!!"


def test_unwrap_failures_are_indistinguishable(encryption_key: object, other_encryption_key: object) -> None:
    wrapped = wrap_key(public_of(encryption_key), bytes(32))
    short = wrap_key(public_of(encryption_key), bytes(16))
    attempts: list[tuple[object, Any]] = [
        (other_encryption_key, wrapped),  # wrong key
        (encryption_key, _flip(wrapped, 0)),
        (encryption_key, _flip(wrapped, 255)),
        (encryption_key, wrapped[:-1]),
        (encryption_key, wrapped + b"\x00"),
        (encryption_key, b""),
        (encryption_key, bytes(256)),
        (encryption_key, b"\xff" * 256),  # above the modulus
        (encryption_key, short),  # unexpected length
        (encryption_key, wrapped.hex()),
    ]
    messages = set()
    for key, data in attempts:
        with pytest.raises(IntegrityError) as info:
            unwrap_key(key, data)
        assert info.value.code is ErrorCode.KEY_UNWRAP_FAILED
        messages.add(str(info.value.args[0]))
    assert messages == {"key unwrap failed"}


def test_wrap_needs_rsa_keys(encryption_key: object, signing_keys: dict[SignatureScheme, object]) -> None:
    with pytest.raises(TypeError):
        wrap_key(public_of(signing_keys[SignatureScheme.DSA_SHA256]), bytes(32))
    with pytest.raises(TypeError):
        unwrap_key(public_of(encryption_key), bytes(256))
    with pytest.raises(TypeError):
        wrap_key(public_of(encryption_key), 32)  # type: ignore[arg-type]


# --- exchange --------------------------------------------------------------------------------------------

RFC7748_ALICE = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
RFC7748_BOB = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"


def test_x25519_rfc7748_known_answer() -> None:
    alice, alice_public = generate_ephemeral(random_bytes=lambda n: bytes.fromhex(RFC7748_ALICE))
    bob, bob_public = generate_ephemeral(random_bytes=lambda n: bytes.fromhex(RFC7748_BOB))
    assert alice_public.hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    assert bob_public.hex() == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    expected = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert shared_secret(alice, bob_public).hex() == shared_secret(bob, alice_public).hex() == expected


def test_x25519_agreement() -> None:
    alice, alice_public = generate_ephemeral()
    bob, bob_public = generate_ephemeral()
    assert len(alice_public) == X25519_PUBLIC_BYTES == 32
    assert shared_secret(alice, bob_public) == shared_secret(bob, alice_public)
    assert generate_ephemeral(random_bytes=seeded(8))[1] == generate_ephemeral(random_bytes=seeded(8))[1]


P = 2**255 - 19
LOW_ORDER_POINTS = [
    0,
    1,
    0x00B8495F16056286FDB1329CEB8D09DA6AC49FF1FAE35616AEB8413B7C7AEBE0,
    0x57119FD0DD4E22D8868E1C58C45C44045BEF839C55B1D0B1248C50A3BC959C5F,
    P - 1,
    P,
    P + 1,
]


@pytest.mark.parametrize("point", LOW_ORDER_POINTS)
def test_x25519_rejects_low_order_points(point: int) -> None:
    private_key, _ = generate_ephemeral()
    for encoded in (
        point.to_bytes(32, "little"),
        (point + (1 << 255) if point < 2**255 else point).to_bytes(32, "little"),
    ):
        with pytest.raises(AuthenticationError) as info:
            shared_secret(private_key, encoded)
        assert info.value.code is ErrorCode.HANDSHAKE_FAILED and info.value.args[0] == "bad key share"


def test_x25519_rejects_wrong_lengths() -> None:
    private_key, public = generate_ephemeral()
    for bad in (b"", public[:31], public + b"\x00", public.hex(), None):
        with pytest.raises(AuthenticationError) as info:
            shared_secret(private_key, bad)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.HANDSHAKE_FAILED
    with pytest.raises(TypeError):
        shared_secret(public_of(generate_signing_key(SignatureScheme.ED25519)), public)


# --- certificates ------------------------------------------------------------------------------------------

CA_SCHEME = SignatureScheme.ECDSA_P256_SHA256
NOW = 1_700_000_000


@pytest.fixture(scope="module")
def ca_key() -> object:
    return generate_signing_key(CA_SCHEME)


def _issue(ca_key: object, enc: object, sig: object, **overrides: Any) -> Certificate:
    arguments: dict[str, Any] = {
        "username": "alice",
        "signature_scheme": SignatureScheme.DSA_SHA256,
        "encryption_key": public_key_der(enc),
        "signing_key": public_key_der(sig),
        "serial": 7,
        "now": NOW,
        "validity_seconds": 3600,
        "ca_private_key": ca_key,
        "ca_scheme": CA_SCHEME,
    }
    arguments.update(overrides)
    return issue_certificate(**arguments)


@pytest.fixture(scope="module")
def certificate(ca_key: object, encryption_key: object, signing_keys: dict[SignatureScheme, object]) -> Certificate:
    return _issue(ca_key, encryption_key, signing_keys[SignatureScheme.DSA_SHA256])


def _verify(cert: Certificate, ca_key: object, **overrides: Any) -> tuple[object, object]:
    arguments: dict[str, Any] = {"ca_public_key": public_of(ca_key), "ca_scheme": CA_SCHEME, "now": NOW + 10.5}
    arguments.update(overrides)
    return verify_certificate(cert, **arguments)


def test_issue_and_verify(
    certificate: Certificate, ca_key: object, encryption_key: object, signing_keys: dict[SignatureScheme, object]
) -> None:
    assert certificate.version == CERT_VERSION == 1
    assert (certificate.not_before, certificate.not_after) == (NOW - CLOCK_SKEW_SECONDS, NOW + 3600)  # backdated
    assert certificate.issuer == key_fingerprint(ca_key) and certificate.issuer_scheme is CA_SCHEME
    enc, sig = _verify(certificate, ca_key, username="alice")
    assert public_key_der(enc) == public_key_der(encryption_key)
    assert public_key_der(sig) == public_key_der(signing_keys[SignatureScheme.DSA_SHA256])
    assert certificate.tbs().startswith(b"securechat v1 certificate\x00")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_every_user_scheme_certifies(
    scheme: SignatureScheme, ca_key: object, encryption_key: object, signing_keys: dict[SignatureScheme, object]
) -> None:
    cert = _issue(ca_key, encryption_key, signing_keys[scheme], signature_scheme=scheme)
    _, signing_public = _verify(cert, ca_key)
    verify(scheme, signing_public, b"m", sign(scheme, signing_keys[scheme], b"m"))


def test_certificate_dict_round_trip(certificate: Certificate) -> None:
    as_dict = certificate.to_dict()
    assert set(as_dict) == {f.name for f in dataclasses.fields(Certificate)}
    assert Certificate.from_dict(json.loads(json.dumps(as_dict))) == certificate
    assert as_dict["signature_scheme"] == "dsa-2048-sha256" and as_dict["signature"] == b64e(certificate.signature)


def test_identity_fingerprint(
    certificate: Certificate,
    ca_key: object,
    encryption_key: object,
    other_encryption_key: object,
    signing_keys: dict[SignatureScheme, object],
) -> None:
    reissued = _issue(ca_key, encryption_key, signing_keys[SignatureScheme.DSA_SHA256], serial=8, now=NOW + 99)
    assert reissued.identity_fingerprint() == certificate.identity_fingerprint()
    rekeyed = _issue(ca_key, other_encryption_key, signing_keys[SignatureScheme.DSA_SHA256])
    assert rekeyed.identity_fingerprint() != certificate.identity_fingerprint()
    assert re.fullmatch(r"([0-9a-f]{4}:){7}[0-9a-f]{4}", certificate.identity_fingerprint())


def _rejected(call: Any) -> str:
    with pytest.raises(AuthenticationError) as info:
        call()
    assert info.value.code is ErrorCode.BAD_CERTIFICATE
    message = str(info.value.args[0])
    assert message.startswith("certificate rejected: ")
    return message


def test_certificate_validity_window(certificate: Certificate, ca_key: object) -> None:
    """PROTOCOL.md 6.3: issued backdated by CLOCK_SKEW_SECONDS and accepted up to CLOCK_SKEW_SECONDS outside
    [not_before, not_after): a verifier whose clock is up to twice the tolerance behind the CA still accepts."""
    skew = CLOCK_SKEW_SECONDS
    _verify(certificate, ca_key, now=NOW - 120)  # a client 2 minutes behind the server that issued it
    _verify(certificate, ca_key, now=NOW - 2 * skew)  # the earliest accepted instant, inclusive
    _verify(certificate, ca_key, now=NOW + 3600 + skew - 0.5)
    assert "validity" in _rejected(lambda: _verify(certificate, ca_key, now=NOW + 3600 + skew))  # exclusive
    assert "validity" in _rejected(lambda: _verify(certificate, ca_key, now=NOW + 10**6))
    assert "validity" in _rejected(lambda: _verify(certificate, ca_key, now=NOW - 2 * skew - 0.5))


def test_certificate_rejection_rules(
    certificate: Certificate, ca_key: object, encryption_key: object, signing_keys: dict[SignatureScheme, object]
) -> None:
    other_ca = signing_keys[SignatureScheme.ECDSA_P256_SHA256]
    assert "another CA" in _rejected(lambda: _verify(certificate, ca_key, ca_public_key=public_of(other_ca)))
    assert "scheme" in _rejected(lambda: _verify(certificate, ca_key, ca_scheme=SignatureScheme.RSA_PSS_SHA256))
    assert "another user" in _rejected(lambda: _verify(certificate, ca_key, username="mallory"))
    tampered_fields: list[dict[str, Any]] = [
        {"username": "mallory"},
        {"serial": 8},
        {"not_after": NOW + 10**9},
        {"signing_key": public_key_der(encryption_key)},
        {"signature_scheme": SignatureScheme.ED25519},
    ]
    for change in tampered_fields:
        tampered = dataclasses.replace(certificate, **change)
        assert "signature" in _rejected(lambda cert=tampered: _verify(cert, ca_key)), change
    forged = dataclasses.replace(certificate, signature=_flip(certificate.signature, 10))
    assert "signature" in _rejected(lambda: _verify(forged, ca_key))
    assert "version" in _rejected(lambda: _verify(dataclasses.replace(certificate, version=2), ca_key))
    ed_key = signing_keys[SignatureScheme.ED25519]
    mismatch = _issue(ca_key, encryption_key, ed_key, signature_scheme=SignatureScheme.DSA_SHA256)
    assert "signing key" in _rejected(lambda: _verify(mismatch, ca_key))
    not_rsa = _issue(ca_key, signing_keys[SignatureScheme.DSA_SHA256], ed_key, signature_scheme=SignatureScheme.ED25519)
    assert "encryption key" in _rejected(lambda: _verify(not_rsa, ca_key))
    garbage = _issue(
        ca_key, encryption_key, ed_key, signature_scheme=SignatureScheme.ED25519, encryption_key=b"\x30\x00"
    )
    assert "loaded" in _rejected(lambda: _verify(garbage, ca_key))
    with pytest.raises(ValueError):
        _issue(ca_key, encryption_key, ed_key, validity_seconds=0)


def _mutated(certificate: Certificate, **changes: Any) -> dict[str, Any]:
    as_dict = dict(certificate.to_dict())
    for key, value in changes.items():
        if value is KeyError:
            del as_dict[key]
        else:
            as_dict[key] = value
    return as_dict


@pytest.mark.parametrize(
    "changes",
    [
        {"username": KeyError},
        {"extra": 1},
        {"serial": True},
        {"version": False},
        {"serial": -1},
        {"not_after": 2**63},
        {"not_before": 1.0},
        {"serial": "7"},
        {"username": "a" * 65},
        {"username": ""},
        {"username": 5},
        {"issuer": None},
        {"signature_scheme": "rsa"},
        {"issuer_scheme": None},
        {"signature": "not base64!"},
        {"signature": "QR=="},
        {"signing_key": b64e(bytes(2049))},
        {"signature": b64e(bytes(1025))},
        {"encryption_key": b"raw bytes"},
    ],
)
def test_from_dict_is_strict(certificate: Certificate, changes: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        Certificate.from_dict(_mutated(certificate, **changes))
    assert info.value.code is ErrorCode.BAD_FIELD


@pytest.mark.parametrize("value", [None, [], "certificate", 5])
def test_from_dict_needs_a_dict(value: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        Certificate.from_dict(value)


def test_from_dict_limits_accept_edges(certificate: Certificate) -> None:
    edge = Certificate.from_dict(
        _mutated(certificate, username="a" * 64, serial=2**63 - 1, signature=b64e(bytes(1024)))
    )
    assert (edge.username, edge.serial) == ("a" * 64, 2**63 - 1)


# --- scrypt: the stdlib (OpenSSL) and pycryptodome implementations agree (RFC 7914 section 12) ---------------

RFC7914_VECTORS = [
    (b"", b"", 16, 1, 1, 64,
     "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906"),
    (b"password", b"NaCl", 1024, 8, 16, 64,
     "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"),
]


@pytest.mark.parametrize("password,salt,n,r,p,length,expected", RFC7914_VECTORS)
def test_scrypt_implementations_match_rfc7914(password, salt, n, r, p, length, expected):  # type: ignore[no-untyped-def]
    import hashlib

    from securechat.crypto.kdf import _pycryptodome_scrypt

    params = kdf.ScryptParams(n=n, r=r, p=p)
    assert _pycryptodome_scrypt(password, salt, params, length).hex() == expected
    assert hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=length).hex() == expected


def test_password_records_verify_across_scrypt_implementations(monkeypatch):  # type: ignore[no-untyped-def]
    record = kdf.hash_password("correct horse", kdf.FAST_SCRYPT)
    monkeypatch.setattr(kdf, "_HASHLIB_SCRYPT", False)
    assert kdf.verify_password("correct horse", record)
    other = kdf.hash_password("correct horse", kdf.FAST_SCRYPT)
    monkeypatch.setattr(kdf, "_HASHLIB_SCRYPT", True)
    assert kdf.verify_password("correct horse", other) and not kdf.verify_password("wrong", other)
