"""KeyStore registration staging (docs/SECURITY.md 7.4): keys never lost, never overwritten, nothing half-made."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from securechat.crypto.signatures import SignatureScheme
from securechat.keystore import KeyStore, KeyStoreError
from tests.helpers import password_of, user_keys


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_staged_keys_reach_the_key_folder_only_on_commit(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    staged = store.stage("Dave", "pw", SignatureScheme.ED25519)
    assert not store.has_identity("dave") and staged.folder.parent == tmp_path
    assert staged.folder.name.startswith(".staging-dave-")
    store.commit(staged)
    assert not staged.folder.exists() and store.load("dave", "pw").scheme is SignatureScheme.ED25519
    assert (tmp_path / "dave" / "signing.key.pem").stat().st_mode & 0o077 == 0


def test_a_refused_registration_leaves_nothing_behind(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    staged = store.stage("erin", "pw", SignatureScheme.ED25519)
    store.discard(staged)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_identity_is_never_overwritten(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.save("bob", password_of("bob"), user_keys("bob"))
    before = _files(tmp_path)
    for attempt in (lambda: store.stage("bob", "other", SignatureScheme.ED25519),
                    lambda: store.create("BOB", "other", SignatureScheme.ED25519)):
        with pytest.raises(KeyStoreError, match="already exist.*never overwritten"):
            attempt()
    assert _files(tmp_path) == before
    assert store.load("bob", password_of("bob")).fingerprints == user_keys("bob").fingerprints


def test_keys_that_appear_meanwhile_are_kept_and_the_staged_ones_too(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    staged = store.stage("carol", "new", SignatureScheme.ED25519)
    store.save("carol", password_of("carol"), user_keys("carol"))  # another process registered carol here
    with pytest.raises(KeyStoreError, match="safe in"):
        store.commit(staged)
    assert staged.folder.exists() and store.load("carol", password_of("carol"))


def test_an_empty_folder_left_by_an_older_version_is_not_an_identity(tmp_path: Path) -> None:
    (tmp_path / "frank").mkdir()
    store = KeyStore(tmp_path)
    store.commit(store.stage("frank", "pw", SignatureScheme.ED25519))
    assert store.load("frank", "pw").scheme is SignatureScheme.ED25519


def test_missing_keys_are_a_plain_sentence(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="no keys for nobody in .*register first"):
        KeyStore(tmp_path).load("nobody", "pw")


def test_a_key_folder_whose_encryption_key_is_not_rsa_is_damaged(tmp_path: Path) -> None:
    """UserKeys.encryption_key is an RSA-OAEP key (crypto.key_types.EncryptionPrivateKey): a folder whose
    encryption.key.pem holds another kind of key (copied over by hand) is refused on load, not later at unwrap."""
    store = KeyStore(tmp_path)
    store.save("bob", "pw", user_keys("bob", SignatureScheme.ED25519))
    folder = tmp_path / "bob"
    (folder / "encryption.key.pem").write_bytes((folder / "signing.key.pem").read_bytes())
    with pytest.raises(KeyStoreError, match="damaged"):
        store.load("bob", "pw")
