"""Password hashing for dashboard accounts: argon2id through argon2-cffi.

argon2id is OWASP's first choice for password storage; argon2-cffi's defaults (RFC 9106's
low-memory profile: 64 MiB, 3 passes) cost about 50 ms of one core, which is also what bounds
how fast one process can be asked to check guesses. A hash made with older parameters is
replaced at the next successful sign-in (``needs_rehash``).
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

#: Shorter passwords are refused by ``tickler users add|passwd``.
MIN_LENGTH = 12
#: Longer is refused too: argon2 takes any length, but a megabyte "password" is a denial.
MAX_LENGTH = 1024

_hasher = PasswordHasher()


def weakness(password: str) -> str | None:
    """Return why ``password`` may not be used, or None."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(stored: str, password: str) -> bool:
    """Return whether ``password`` matches the ``stored`` hash (False for a damaged hash)."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)


@cache
def dummy() -> str:
    """Return a hash of nothing anyone knows: an unknown username is checked against it, so
    that it costs the time a known one does and the answer's timing names no account."""
    return _hasher.hash("no account has this password: it only spends the same time")
