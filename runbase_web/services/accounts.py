"""Accounts: sign-up with the free grant, password sign-in, look-ups."""
from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from ..errors import RunbaseError
from ..models import EntryKind, User
from . import ledger

MIN_PASSWORD_LENGTH = 8
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
# A real hash to compare against when the email is unknown, so a wrong email and a
# wrong password take the same time and can't be told apart.
_DUMMY_HASH = generate_password_hash("not-a-password", method="scrypt")


class AccountError(RunbaseError):
    """Sign-up or sign-in input that can't be accepted; `field` names the form field."""


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively and without surrounding space."""
    return email.strip().lower()


def create_user(session: Session, email: str, password: str, *, credit_micros: int,
                is_admin: bool = False) -> User:
    """Create an account with a hashed password and its free grant."""
    email = normalize_email(email)
    if not _EMAIL.match(email) or len(email) > 320:
        raise AccountError("Enter a valid email address.", field="email")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"Use at least {MIN_PASSWORD_LENGTH} characters.", field="password")
    if find_user(session, email) is not None:
        raise AccountError("An account with this email already exists.", field="email")
    user = User(email=email, password_hash=generate_password_hash(password, method="scrypt"),
                is_admin=is_admin, balance_micros=0)
    session.add(user)
    session.flush()
    if credit_micros:
        ledger.credit(session, user.id, credit_micros, kind=EntryKind.GRANT, note="Signup credit")
    return user


def find_user(session: Session, email: str) -> User | None:
    """The account with this email, if any."""
    return session.scalar(select(User).where(User.email == normalize_email(email)))


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The account if the password matches, else None (same timing either way)."""
    user = find_user(session, email)
    stored = user.password_hash if user and user.password_hash else _DUMMY_HASH
    if check_password_hash(stored, password) and user is not None:
        return user
    return None
