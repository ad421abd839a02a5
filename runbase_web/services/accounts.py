"""Accounts: sign-up with the free grant, password sign-in, Google sign-in, look-ups,
the balance."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from ..errors import RunbaseError
from ..models import ApiKey, EntryKind, User
from . import keys, ledger

MIN_PASSWORD_LENGTH = 8
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")

#: Argon2id at OWASP's first recommended setting (19 MiB, 2 passes, 1 lane). Raising a
#: parameter here is enough: every account is rehashed on its next successful sign-in.
PASSWORD_HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1,
                                 hash_len=32, salt_len=16, type=Type.ID)


class AccountError(RunbaseError):
    """Sign-up or sign-in input that can't be accepted; `field` names the form field."""


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively and without surrounding space."""
    return email.strip().lower()


# --- passwords ---------------------------------------------------------------------------


@functools.cache
def _dummy_hash() -> str:
    """A real hash to verify against when the email is unknown (or has no password), so
    every failed sign-in costs the same and the timing can't reveal which accounts exist.
    Made on first use, not at import: hashing costs ~40 ms that no CLI command needs."""
    return PASSWORD_HASHER.hash("not-a-password")


def hash_password(password: str) -> str:
    """The stored form of a password, with the current scheme and parameters."""
    return PASSWORD_HASHER.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """Whether `password` matches `stored`: Argon2id, or a werkzeug scrypt/pbkdf2 hash
    from before the switch (those still verify, and are replaced on sign-in)."""
    if stored.startswith("$argon2"):
        try:
            return PASSWORD_HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
    return check_password_hash(stored, password)


def needs_rehash(stored: str) -> bool:
    """Whether a hash uses another scheme or other parameters than PASSWORD_HASHER."""
    if not stored.startswith("$argon2id$"):
        return True
    try:
        return PASSWORD_HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


# --- accounts ----------------------------------------------------------------------------


def _checked_email(email: str) -> str:
    email = normalize_email(email)
    if not _EMAIL.match(email) or len(email) > 320:
        raise AccountError("Enter a valid email address.", field="email")
    return email


def _add_account(session: Session, email: str, *, password_hash: str | None,
                 credit_micros: int, is_admin: bool = False,
                 google_sub: str | None = None) -> User:
    if find_user(session, email) is not None:
        raise AccountError("An account with this email already exists.", field="email")
    user = User(email=email, password_hash=password_hash, is_admin=is_admin,
                balance_micros=0, google_sub=google_sub)
    session.add(user)
    session.flush()
    if credit_micros:
        ledger.credit(session, user.id, credit_micros, kind=EntryKind.GRANT, note="Signup credit")
    return user


def create_user(session: Session, email: str, password: str, *, credit_micros: int,
                is_admin: bool = False) -> User:
    """Create an account with a hashed password and its free grant."""
    email = _checked_email(email)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"Use at least {MIN_PASSWORD_LENGTH} characters.", field="password")
    return _add_account(session, email, password_hash=hash_password(password),
                        credit_micros=credit_micros, is_admin=is_admin)


def find_user(session: Session, email: str) -> User | None:
    """The account with this email, if any."""
    return session.scalar(select(User).where(User.email == normalize_email(email)))


def get_user(session: Session, user_id: int) -> User | None:
    """The account with this id, if any (the signed-in user of a session cookie)."""
    return session.get(User, user_id)


def fresh_balance(session: Session, user_id: int) -> int:
    """The balance as the database has it now: charges and refunds are SQL updates that
    a User already loaded in this session has not seen."""
    return session.get(User, user_id, populate_existing=True).balance_micros


@dataclass(frozen=True)
class KeyAccount:
    """An API key's view of its account: the owner's email and balance, and the key."""

    email: str
    balance_micros: int
    key: ApiKey
    #: What the key may still spend under its limit; None without a limit.
    remaining_micros: int | None


def key_account(session: Session, user_id: int, key_id: int) -> KeyAccount:
    """The account of the key that is calling (both were just authenticated), with the
    balance and spend as the database has them now (see fresh_balance)."""
    user = session.get(User, user_id, populate_existing=True)
    key = session.get(ApiKey, key_id, populate_existing=True)
    return KeyAccount(user.email, user.balance_micros, key, keys.remaining_limit(key))


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The account if the password matches, else None (same cost either way).

    Accounts made through Google have no password and never match here. On success a
    hash in an older scheme or with older parameters is replaced (the view commits).
    """
    user = find_user(session, email)
    stored = user.password_hash if user is not None and user.password_hash else None
    matches = verify_password(stored or _dummy_hash(), password)
    if not matches or stored is None:
        return None
    if needs_rehash(stored):
        user.password_hash = hash_password(password)
    return user


# --- Google ------------------------------------------------------------------------------

UNVERIFIED_GOOGLE_EMAIL = ("Google has not verified the email address of this Google account, "
                           "so it can't be used to sign in. Verify it with Google, or sign up "
                           "with email and password.")
OTHER_GOOGLE_ACCOUNT = ("This email already belongs to an account linked to a different "
                        "Google account. Sign in with that Google account or with your password.")


def google_sign_in(session: Session, *, subject: str, email: str | None,
                   email_verified: bool, credit_micros: int) -> tuple[User, bool]:
    """The account for a verified Google identity: `(user, created)`.

    Found by Google's subject id first; else the account with the same email is linked
    to it (Google vouches for the address); else a password-less account is created with
    the same free grant as an email sign-up. Unverified addresses are refused: anyone can
    put someone else's address on a Google account without proving it.
    """
    if not subject:
        raise AccountError("Google did not say who you are; please try again.")
    user = session.scalar(select(User).where(User.google_sub == subject))
    if user is not None:
        return user, False
    if not email or email_verified is not True:
        raise AccountError(UNVERIFIED_GOOGLE_EMAIL, field="email")
    email = _checked_email(email)
    user = find_user(session, email)
    if user is not None:
        if user.google_sub is not None:
            raise AccountError(OTHER_GOOGLE_ACCOUNT, field="email")
        user.google_sub = subject
        session.flush()
        return user, False
    return _add_account(session, email, password_hash=None, credit_micros=credit_micros,
                        google_sub=subject), True
