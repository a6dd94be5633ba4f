"""Readers of the query API: who may call the read routes, by the SHA-256 of their tokens.

A readers file (``GOVCLOCK_READERS_FILE``)::

    readers:
      duty-board:                  # the name the logs use (never the token)
        token_sha256:              # SHA-256 hex of each token: `govclock token duty-board`
          - 3b7f…64 hex digits…    # several: rotation (add the new one, later drop the old)

The file holds hashes only: a copy of it (a backup, a ConfigMap) lets nobody in. A request
carries ``Authorization: Bearer <token>``; :meth:`Readers.identify` hashes the token and
compares it with every listed hash in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from config.yaml_files import read_yaml

__all__ = [
    "TOKEN_PREFIX",
    "Reader",
    "Readers",
    "ReadersError",
    "hash_token",
    "load_readers",
    "mint_token",
    "parse_readers",
    "valid_reader_name",
]

#: Minted tokens start with this, so secret scanners and people recognise them.
TOKEN_PREFIX = "gck_"
#: Longer bearer values are refused before hashing (a real token is 47 characters).
MAX_TOKEN_CHARS = 512

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ReadersError(ValueError):
    """A malformed readers file: names the file, the reader and the field (never a value)."""


@dataclass(frozen=True)
class Reader:
    name: str
    token_hashes: tuple[str, ...]


def hash_token(token: str) -> str:
    """The SHA-256 hex digest of ``token`` (what the readers file stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def mint_token() -> tuple[str, str]:
    """A new random token (256 bits) and its hash."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token)


def valid_reader_name(name: str) -> bool:
    """Letters, digits and ``_.@-``, at most 64 (names appear in logs as they are)."""
    return _NAME.match(name) is not None


@dataclass(frozen=True)
class Readers:
    """The readers of one file, and the lookup from a presented token to a reader."""

    readers: tuple[Reader, ...]

    def identify(self, token: str) -> Reader | None:
        """The reader whose hashes include ``token``'s, else None. Every hash is compared
        (no early exit) in constant time, so timing says nothing about the hashes."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        digest = hash_token(token).encode("ascii")
        found: Reader | None = None
        for reader in self.readers:
            for known in reader.token_hashes:
                if hmac.compare_digest(digest, known.encode("ascii")):
                    found = reader
        return found

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.readers]


def _hashes(spec: object, at: str) -> tuple[str, ...]:
    if isinstance(spec, str):
        spec = [spec]
    if not isinstance(spec, list) or not spec:
        raise ReadersError(f"{at}: expected one SHA-256 hex digest or a list of them")
    out = []
    for i, item in enumerate(spec, start=1):
        text = item.strip().lower() if isinstance(item, str) else ""
        if not _HEX64.match(text):  # the value is not shown: it may be a token pasted
            raise ReadersError(
                f"{at}[{i}]: not a SHA-256 hex digest (64 hex digits); store the hash that "
                "`govclock token` prints, never the token itself"
            )
        out.append(text)
    return tuple(out)


def _reader(name: object, spec: object, where: str) -> Reader:
    at = f"{where}: readers.{name}"
    if not isinstance(name, str) or not valid_reader_name(name):
        raise ReadersError(f"{at}: a reader's name is letters, digits and _.@- (at most 64)")
    if not isinstance(spec, dict):
        raise ReadersError(f"{at}: expected a mapping with token_sha256")
    unknown = set(spec) - {"token_sha256"}
    if unknown:
        raise ReadersError(f"{at}: unknown key(s) {sorted(map(str, unknown))}")
    if "token_sha256" not in spec:
        raise ReadersError(f"{at}.token_sha256: missing")
    return Reader(name, _hashes(spec["token_sha256"], f"{at}.token_sha256"))


def parse_readers(data: object, where: str) -> Readers:
    """The readers of a parsed readers file; :class:`ReadersError` names what is wrong."""
    if not isinstance(data, Mapping) or not isinstance(data.get("readers"), Mapping):
        raise ReadersError(f"{where}: expected a mapping with 'readers: {{name: …}}'")
    if not data["readers"]:
        raise ReadersError(f"{where}: readers: lists no reader")
    unknown = set(data) - {"readers"}
    if unknown:
        raise ReadersError(f"{where}: unknown key(s) {sorted(map(str, unknown))}")
    readers = [_reader(name, spec, where) for name, spec in data["readers"].items()]
    owner: dict[str, str] = {}
    for reader in readers:
        for digest in reader.token_hashes:
            if digest in owner:
                other = "twice" if owner[digest] == reader.name else f"for {owner[digest]} too"
                raise ReadersError(
                    f"{where}: readers.{reader.name}.token_sha256: a hash listed {other} "
                    "(each token belongs to one reader)"
                )
            owner[digest] = reader.name
    return Readers(tuple(readers))


def load_readers(path: Path) -> Readers:
    return parse_readers(read_yaml(path, ReadersError), str(path))
