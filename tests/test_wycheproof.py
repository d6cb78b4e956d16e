"""Wycheproof vectors (C2SP/wycheproof commit dac1dd4, Apache-2.0) run through securechat.crypto.

Every vector of every file goes through securechat's own wrappers, never through pycryptodome
directly, and each file's run count must equal its ``numberOfTests`` (no silent skipping). A file
passes when no ``invalid`` vector is accepted, no ``valid`` vector is rejected, every output matches,
and every ``acceptable`` vector gets the behaviour our policy below fixes.

Policy for ``acceptable`` vectors (and for valid vectors outside what a wrapper supports):

* X25519 (``shared_secret``): a peer key share that is a low-order point, or that leads to the
  all-zero shared secret (flags ``LowOrderPublic``, ``ZeroSharedSecret``), is REJECTED with
  ``AuthenticationError(HANDSHAKE_FAILED)``: it would let a man in the middle force a known channel
  key (RFC 7748 section 6.1 allows the check, TLS 1.3 and Noise require it). All other acceptable
  vectors (``Twist``, ``NonCanonicalPublic``, ``SmallPublicKey`` of non-low order, edge-case
  multiplications) are ACCEPTED and must give the expected shared secret, as RFC 7748 section 5 says
  to mask the top bit and process any 32-byte string.
* DSA (``verify``): the one acceptable vector (``MissingZero``, an INTEGER without its DER sign
  byte) is REJECTED: securechat only accepts strict DER signatures, so each signature has exactly
  one accepted encoding.
* AES-GCM (``seal``/``unseal``): securechat supports exactly 256-bit keys, 96-bit nonces and
  128-bit tags. Vectors of other groups (128/192-bit keys, other nonce lengths) are valid GCM but
  not securechat's suite: for them the wrappers must REJECT the key or nonce with ValueError.
* RSA-OAEP (``unwrap_key``): securechat wraps with the empty label. Valid vectors with a non-empty
  label must be REJECTED by ``unwrap_key`` (same message as any other failure) and decrypt with the
  private labelled helper ``wrap._oaep_decrypt``.
* HMAC-SHA256: vectors with a 128-bit tag are checked against the prefix of ``hmac_sha256``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from securechat.crypto import (
    SignatureScheme,
    constant_time_equal,
    hkdf_sha256,
    hmac_sha256,
    load_public_key,
    seal,
    shared_secret,
    unseal,
    unwrap_key,
    verify,
)
from securechat.crypto.aead import _cbc_decrypt, _cbc_encrypt
from securechat.crypto.exchange import _private_from_raw
from securechat.crypto.keys import _import_private_der
from securechat.crypto.wrap import _oaep_decrypt
from securechat.errors import AuthenticationError, ErrorCode, IntegrityError, SecureChatError

VECTORS = Path(__file__).parent / "vectors" / "wycheproof"

# A check returns None when the vector behaved as expected, else a short description of the problem.
Check = Callable[[Any, dict[str, Any]], "str | None"]
# A setup turns a test group into the context its checks need (a loaded key, sizes, ...).
Setup = Callable[[dict[str, Any]], Any]


def _hex(test: dict[str, Any], name: str) -> bytes:
    return bytes.fromhex(test[name])


def _outcome(test: dict[str, Any], accepted: bool, output_ok: bool = True) -> str | None:
    """Compare what our wrapper did with the vector's verdict (acceptable handled by callers)."""
    if test["result"] == "valid" and not accepted:
        return "valid rejected"
    if test["result"] == "invalid" and accepted:
        return "invalid accepted"
    if accepted and not output_ok:
        return "wrong output"
    return None


# --- AES-256-GCM: seal / unseal -----------------------------------------------------------------------


def _gcm_setup(group: dict[str, Any]) -> bool:
    return (group["keySize"], group["ivSize"], group["tagSize"]) == (256, 96, 128)


def _gcm_check(supported: bool, test: dict[str, Any]) -> str | None:
    key, nonce, aad, msg = (_hex(test, name) for name in ("key", "iv", "aad", "msg"))
    sealed = _hex(test, "ct") + _hex(test, "tag")
    if not supported:
        # Not securechat's suite (key or nonce size): both directions must refuse the parameters.
        calls: list[Callable[[], bytes]] = [
            lambda: seal(key, msg, aad=aad, nonce=nonce),
            lambda: unseal(key, sealed, aad=aad, nonce=nonce),
        ]
        for call in calls:
            try:
                call()
            except (ValueError, IntegrityError):
                continue
            return "unsupported key/nonce size accepted"
        return None
    try:
        opened = unseal(key, sealed, aad=aad, nonce=nonce)
    except IntegrityError:
        return _outcome(test, accepted=False)
    sealed_again = seal(key, msg, aad=aad, nonce=nonce)
    return _outcome(test, accepted=True, output_ok=opened == msg and sealed_again == sealed)


# --- AES-CBC + PKCS#7, the encryption step of the CBC-HMAC suite ----------------------------------------


def _cbc_check(_: None, test: dict[str, Any]) -> str | None:
    key, iv, msg, ct = (_hex(test, name) for name in ("key", "iv", "msg", "ct"))
    try:
        opened = _cbc_decrypt(key, iv, ct)
    except IntegrityError:
        return _outcome(test, accepted=False)
    return _outcome(test, accepted=True, output_ok=opened == msg and _cbc_encrypt(key, iv, msg) == ct)


# --- HMAC-SHA256 ----------------------------------------------------------------------------------------


def _hmac_setup(group: dict[str, Any]) -> int:
    return int(group["tagSize"]) // 8


def _hmac_check(tag_bytes: int, test: dict[str, Any]) -> str | None:
    tag = hmac_sha256(_hex(test, "key"), _hex(test, "msg"))[:tag_bytes]
    return _outcome(test, accepted=constant_time_equal(tag, _hex(test, "tag")))


# --- HKDF-SHA256 ----------------------------------------------------------------------------------------


def _hkdf_check(_: None, test: dict[str, Any]) -> str | None:
    try:
        okm = hkdf_sha256(_hex(test, "ikm"), salt=_hex(test, "salt"), info=_hex(test, "info"), length=test["size"])
    except ValueError:
        return _outcome(test, accepted=False)
    return _outcome(test, accepted=True, output_ok=okm == _hex(test, "okm"))


# --- X25519 ---------------------------------------------------------------------------------------------

_X25519_MUST_REJECT = {"LowOrderPublic", "ZeroSharedSecret"}


def _x25519_check(_: None, test: dict[str, Any]) -> str | None:
    private_key = _private_from_raw(_hex(test, "private"))
    try:
        secret = shared_secret(private_key, _hex(test, "public"))
    except AuthenticationError as exc:
        if exc.code is not ErrorCode.HANDSHAKE_FAILED or str(exc.args[0]) != "bad key share":
            return "wrong error"
        secret = None
    expected = _hex(test, "shared")
    must_reject = test["result"] == "invalid" or bool(_X25519_MUST_REJECT & set(test["flags"]))
    must_reject |= expected == bytes(32)  # policy: an all-zero secret is never a channel key
    if must_reject:
        return None if secret is None else "low-order / zero shared secret accepted"
    if secret is None:
        return f"{test['result']} rejected"
    return None if secret == expected else "wrong output"


# --- RSA-OAEP-2048-SHA256: unwrap_key -------------------------------------------------------------------


def _oaep_setup(group: dict[str, Any]) -> object:
    return _import_private_der(bytes.fromhex(group["privateKeyPkcs8"]))


def _oaep_check(private_key: Any, test: dict[str, Any]) -> str | None:
    ct, msg, label = _hex(test, "ct"), _hex(test, "msg"), _hex(test, "label")
    try:
        unwrapped: bytes | None = unwrap_key(private_key, ct, expected_length=None)
    except IntegrityError as exc:
        if exc.code is not ErrorCode.KEY_UNWRAP_FAILED or exc.args[0] != "key unwrap failed":
            return "distinguishable unwrap error"
        unwrapped = None
    if label:
        # Our wrap uses the empty label: a labelled ciphertext must fail like any other.
        if unwrapped is not None:
            return "labelled ciphertext unwrapped with the empty label"
        try:
            unwrapped = _oaep_decrypt(private_key, ct, label)
        except IntegrityError:
            unwrapped = None
    return _outcome(test, accepted=unwrapped is not None, output_ok=unwrapped == msg)


# --- signatures: load_public_key + verify ---------------------------------------------------------------


def _signature_setup(group: dict[str, Any]) -> object | None:
    try:
        return load_public_key(bytes.fromhex(group["publicKeyDer"]))
    except SecureChatError:
        return None  # every test of the group must then be invalid


def _signature_check(scheme: SignatureScheme) -> Check:
    def check(public_key: object | None, test: dict[str, Any]) -> str | None:
        if public_key is None:
            accepted = False
        else:
            try:
                verify(scheme, public_key, _hex(test, "msg"), _hex(test, "sig"))
                accepted = True
            except AuthenticationError as exc:
                if exc.code is not ErrorCode.BAD_SIGNATURE:
                    return "wrong error code"
                accepted = False
        if test["result"] == "acceptable":  # policy: strict DER, so rejected
            return "acceptable accepted" if accepted else None
        return _outcome(test, accepted=accepted)

    return check


def _no_setup(group: dict[str, Any]) -> None:
    return None


FILES: dict[str, tuple[Setup, Check]] = {
    "aes_gcm_test.json": (_gcm_setup, _gcm_check),
    "aes_cbc_pkcs5_test.json": (_no_setup, _cbc_check),
    "hmac_sha256_test.json": (_hmac_setup, _hmac_check),
    "hkdf_sha256_test.json": (_no_setup, _hkdf_check),
    "x25519_test.json": (_no_setup, _x25519_check),
    "rsa_oaep_2048_sha256_mgf1sha256_test.json": (_oaep_setup, _oaep_check),
    "rsa_pss_2048_sha256_mgf1_32_test.json": (_signature_setup, _signature_check(SignatureScheme.RSA_PSS_SHA256)),
    "dsa_2048_256_sha256_test.json": (_signature_setup, _signature_check(SignatureScheme.DSA_SHA256)),
    "ed25519_test.json": (_signature_setup, _signature_check(SignatureScheme.ED25519)),
}


def test_every_vector_file_is_used() -> None:
    assert sorted(path.name for path in VECTORS.glob("*.json")) == sorted(FILES)


@pytest.mark.parametrize("filename", sorted(FILES))
def test_wycheproof_file(filename: str) -> None:
    data = json.loads((VECTORS / filename).read_text())
    setup, check = FILES[filename]
    run, failures, verdicts = 0, [], Counter[str]()
    for group in data["testGroups"]:
        context = setup(group)
        for test in group["tests"]:
            run += 1
            verdicts[test["result"]] += 1
            problem = check(context, test)
            if problem is not None:
                failures.append(f"tcId {test['tcId']}: {problem}")
    assert run == data["numberOfTests"], f"ran {run} of {data['numberOfTests']} vectors"
    assert failures == [], f"{filename}: {len(failures)} of {run} vectors ({dict(verdicts)}) failed: {failures}"
