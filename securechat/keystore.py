"""A user's key directory and the client's pinned server keys, on disk (PROTOCOL.md 6.1).

Owns: the file layout ``<root>/<username>/{encryption,signing}.key.pem`` (PKCS#8, encrypted with the user's
password), ``{encryption,signing}.pub.pem`` (SubjectPublicKeyInfo, readable by ``openssl pkey -pubin``),
``identity.json`` (the signature scheme), ``known_peers.json`` (peers' identity fingerprints pinned on first sight
or accepted after an out-of-band comparison, PROTOCOL.md 7.9), and ``<root>/known_servers.json`` (server keys
pinned on first use).
Registration never loses a key (PROTOCOL.md 6.1): ``stage`` generates the keys and writes them into a staging
folder ``<root>/.staging-<name>-*``; only after the server accepted the registration does ``commit`` rename it to
``<root>/<name>`` (one atomic rename); ``discard`` removes it if the server refused. An existing identity is never
overwritten. Must not: send anything; private keys are written only with mode 0600.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .crypto.encoding import b64d, b64e
from .crypto.keys import is_encryption_key, load_private_key, private_key_pem, public_key_pem
from .crypto.signatures import SignatureScheme
from .errors import ErrorCode, SecureChatError
from .protocol.fields import normalize_username
from .protocol.identity import UserKeys, generate_user_keys

DEFAULT_ROOT = Path(os.environ.get("SECURECHAT_HOME", Path.home() / ".securechat"))


class PinFileError(SecureChatError):
    """A pin file (known_servers.json, known_peers.json) exists but cannot be read or is damaged. Pins fail
    closed: the caller must stop rather than trust whatever key comes next (PROTOCOL.md 7.9)."""

    code = ErrorCode.STORAGE_FAILED


def _read_pin_file(path: Path) -> dict[str, object]:
    """The JSON object in *path*; {} only if the file does not exist. Anything else raises PinFileError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise PinFileError(f"cannot read the pin file {path} ({exc.__class__.__name__}); fix its permissions "
                           "or restore it. Nothing is trusted on first use while it is unreadable") from None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise PinFileError(f"the pin file {path} is damaged (not a JSON object). Restore it from a backup, or "
                           "move it away and verify every key again out of band; nothing is trusted on first "
                           "use while it is damaged") from None
    return value


def _write_atomically(path: Path, text: str) -> None:
    """Write *text* to a temporary file in the same folder, flush it to disk, then rename it over *path*:
    a crash leaves either the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


KEY_FILES = ("identity.json", "encryption.key.pem", "signing.key.pem", "encryption.pub.pem", "signing.pub.pem")


class KeyStoreError(Exception):
    """A key folder is missing, damaged or already taken; the message says what to do, in plain words."""


@dataclass(frozen=True)
class StagedKeys:
    """Keys generated and written to a staging folder, not yet the user's key folder (``KeyStore.commit``)."""

    username: str
    folder: Path
    keys: UserKeys


class KeyStore:
    def __init__(self, root: str | Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)

    def user_dir(self, username: str) -> Path:
        return self.root / normalize_username(username)

    def has_keys(self, username: str) -> bool:
        return (self.user_dir(username) / "identity.json").exists()

    def has_identity(self, username: str) -> bool:
        """True if *username*'s key folder holds any key file (an empty folder does not count)."""
        folder = self.user_dir(username)
        return any((folder / name).exists() for name in KEY_FILES)

    def refuse_existing(self, username: str) -> None:
        """Raise KeyStoreError (saying what to do) if *username* already has keys here."""
        if self.has_identity(username):
            name = normalize_username(username)
            raise KeyStoreError(
                f"keys for {name} already exist in {self.user_dir(name)}: they are the only copy of {name}'s "
                f"identity and are never overwritten. To use them: /login {name}. To register a new account, "
                f"pick another name; to replace {name}'s keys, move that folder somewhere safe first.")

    def create(self, username: str, passphrase: str, scheme: SignatureScheme,
               progress: Callable[[str], None] | None = None) -> UserKeys:
        """Generate both key pairs and save them, the private halves encrypted with *passphrase*. Refuses
        (KeyStoreError) if *username* already has keys here. Prefer stage/commit around a registration."""
        staged = self.stage(username, passphrase, scheme, progress=progress)
        return self.commit(staged)

    def stage(self, username: str, passphrase: str, scheme: SignatureScheme,
              progress: Callable[[str], None] | None = None) -> StagedKeys:
        """Generate keys into a fresh staging folder (nothing in ``<root>/<name>`` changes). Raises KeyStoreError
        if *username* already has keys here, before any key is generated."""
        name = normalize_username(username)
        self.refuse_existing(name)
        keys = generate_user_keys(scheme, progress=progress)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder = Path(tempfile.mkdtemp(prefix=f".staging-{name}-", dir=self.root))
        try:
            self._write(folder, name, passphrase, keys)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return StagedKeys(username=name, folder=folder, keys=keys)

    def commit(self, staged: StagedKeys) -> UserKeys:
        """Move a staging folder to ``<root>/<name>`` in one rename (after the server accepted the name).
        Never overwrites: if keys appeared there meanwhile, the staged ones stay where they are (named in the
        KeyStoreError) so that neither set is lost."""
        final = self.user_dir(staged.username)
        try:
            if final.exists() and not any(final.iterdir()):
                final.rmdir()  # an empty folder (left by an older version) is not an identity
            os.rename(staged.folder, final)  # fails if final exists and is not empty
        except OSError as exc:
            raise KeyStoreError(f"could not move the new keys into {final} ({exc.strerror or exc}); they are "
                                f"safe in {staged.folder}: move that folder to {final} by hand") from None
        return staged.keys

    def discard(self, staged: StagedKeys) -> None:
        """Delete a staging folder (the server refused the registration): nothing is left behind."""
        shutil.rmtree(staged.folder, ignore_errors=True)

    def save(self, username: str, passphrase: str, keys: UserKeys) -> None:
        folder = self.user_dir(username)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._write(folder, username, passphrase, keys)

    def _write(self, folder: Path, username: str, passphrase: str, keys: UserKeys) -> None:
        _write_private(folder / "encryption.key.pem", private_key_pem(keys.encryption_key, passphrase))
        _write_private(folder / "signing.key.pem", private_key_pem(keys.signing_key, passphrase))
        (folder / "encryption.pub.pem").write_text(public_key_pem(keys.encryption_key))
        (folder / "signing.pub.pem").write_text(public_key_pem(keys.signing_key))
        (folder / "identity.json").write_text(json.dumps({"username": normalize_username(username),
                                                          "signature_scheme": keys.scheme.value}, indent=2))

    def require_keys(self, username: str) -> None:
        """Raise KeyStoreError (saying what to do) if there are no keys for *username* here."""
        name = normalize_username(username)
        folder = self.user_dir(name)
        if not (folder / "identity.json").exists():
            raise KeyStoreError(f"no keys for {name} in {folder}: register first (/register {name}), or start "
                                f"the client with --keys-dir pointing at the folder that holds {name}'s keys")

    def load(self, username: str, passphrase: str) -> UserKeys:
        """Raises AuthenticationError(AUTH_FAILED) for a wrong passphrase; KeyStoreError (a plain sentence saying
        what to do) if the folder is absent or damaged."""
        self.require_keys(username)
        folder = self.user_dir(username)
        try:
            scheme = SignatureScheme(json.loads((folder / "identity.json").read_text())["signature_scheme"])
            encryption_pem = (folder / "encryption.key.pem").read_bytes()
            signing_pem = (folder / "signing.key.pem").read_bytes()
        except (OSError, ValueError, KeyError, TypeError):
            raise KeyStoreError(f"the key folder {folder} is damaged (a key file is missing or unreadable)") from None
        encryption_key = load_private_key(encryption_pem, passphrase)
        signing_key = load_private_key(signing_pem, passphrase)
        if not is_encryption_key(encryption_key):  # an RSA-OAEP key was written there (PROTOCOL.md 6.1)
            raise KeyStoreError(f"the key folder {folder} is damaged (encryption.key.pem holds no RSA-OAEP key)")
        return UserKeys(scheme=scheme, encryption_key=encryption_key, signing_key=signing_key)

    # --- pinned peer fingerprints (PROTOCOL.md 7.9) ---------------------------------------------------------

    def _peers_path(self, username: str) -> Path:
        return self.user_dir(username) / "known_peers.json"

    def load_pins(self, username: str) -> dict[str, str]:
        """The peers *username* pinned so far (name -> identity fingerprint); {} if none yet.
        Raises PinFileError if the file exists but cannot be read or is damaged (never {}: that would
        trust every peer's next key on first sight)."""
        path = self._peers_path(username)
        known = _read_pin_file(path)
        if not all(isinstance(fp, str) for fp in known.values()):
            raise PinFileError(f"the pin file {path} is damaged (a fingerprint is not a string)")
        return {str(name): str(fp) for name, fp in known.items()}

    def save_pins(self, username: str, pins: dict[str, str]) -> None:
        """Write *pins* atomically (a temporary file renamed over the old one)."""
        _write_atomically(self._peers_path(username), json.dumps(dict(sorted(pins.items())), indent=2))

    # --- pinned server keys (trust on first use) -------------------------------------------------------------

    def _known_path(self) -> Path:
        return self.root / "known_servers.json"

    def pinned_server(self, address: str) -> tuple[bytes, str] | None:
        """The key pinned for *address*, None if it has none. Raises PinFileError if known_servers.json exists
        but is unreadable or damaged, or its entry for *address* is."""
        path = self._known_path()
        entry = _read_pin_file(path).get(address)
        if entry is None:
            return None
        try:
            assert isinstance(entry, dict)
            return b64d(entry["key"]), str(entry["scheme"])
        except (AssertionError, KeyError, TypeError, ValueError, SecureChatError):
            raise PinFileError(f"the pin file {path} is damaged (its entry for {address})") from None

    def pin_server(self, address: str, key: bytes, scheme: str) -> None:
        """Pin *key* for *address*, keeping every other server's pin; atomic. Raises PinFileError (and
        writes nothing) if the existing file cannot be read: rewriting it would drop the other pins."""
        path = self._known_path()
        known = _read_pin_file(path)
        known[address] = {"key": b64e(key), "scheme": scheme}
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_atomically(path, json.dumps(known, indent=2))


def read_server_key_file(path: str | Path) -> tuple[bytes, str]:
    """A server key file written by ``securechat-server --export-key`` (JSON: key, scheme). Raises KeyStoreError
    with a plain sentence for a missing file, a PEM file or any other content."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise KeyStoreError(f"the server key file {path} does not exist (the server writes it with "
                            "securechat-server --export-key FILE)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyStoreError(f"cannot read the server key file {path} ({exc})") from None
    if "-----BEGIN" in text:
        raise KeyStoreError(f"{path} is a PEM file; --server-key wants the JSON file written by "
                            "securechat-server --export-key FILE")
    try:
        entry = json.loads(text)
        key, scheme = b64d(entry["key"]), str(entry["scheme"])
        SignatureScheme(scheme)
    except (ValueError, KeyError, TypeError, SecureChatError):
        raise KeyStoreError(f"{path} is not a server key file (expected the JSON written by "
                            "securechat-server --export-key FILE, with 'key' and 'scheme')") from None
    return key, scheme


def write_server_key_file(path: str | Path, key: bytes, scheme: str) -> None:
    _write_atomically(Path(path), json.dumps({"key": b64e(key), "scheme": scheme}, indent=2))
