"""Password storage: Argon2id with explicit parameters, rehash on
sign-in when the scheme or parameters change, and no timing shortcut for unknown emails."""
from __future__ import annotations

import pytest
from argon2 import PasswordHasher, Type
from argon2 import extract_parameters
from werkzeug.security import generate_password_hash

from runbase_web.extensions import db
from runbase_web.models import User
from runbase_web.services import accounts
from tests.web import PASSWORD


def stored_hash(app, user_id: int) -> str:
    with app.app_context():
        return db.session.get(User, user_id).password_hash


def set_hash(app, user_id: int, value: str) -> None:
    with app.app_context():
        db.session.get(User, user_id).password_hash = value
        db.session.commit()


def test_new_passwords_are_argon2id_with_owasp_parameters(app, user):
    stored = stored_hash(app, user.id)
    assert stored.startswith("$argon2id$")
    params = extract_parameters(stored)
    assert params.type is Type.ID
    assert params.memory_cost >= 19_456 and params.time_cost >= 2 and params.parallelism == 1
    assert PASSWORD not in stored


@pytest.mark.parametrize("legacy", [
    generate_password_hash(PASSWORD, method="pbkdf2:sha256:600000"),
    generate_password_hash(PASSWORD, method="scrypt"),
    PasswordHasher(time_cost=1, memory_cost=8_192, parallelism=1).hash(PASSWORD),  # older params
], ids=["pbkdf2", "scrypt", "weaker-argon2id"])  # stable ids: the hashes are salted at random
def test_sign_in_rehashes_an_old_hash(app, client, user, legacy):
    set_hash(app, user.id, legacy)
    response = client.post("/auth/login", data={"email": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 302
    stored = stored_hash(app, user.id)
    assert stored != legacy and not accounts.needs_rehash(stored)
    assert accounts.verify_password(stored, PASSWORD)


def test_wrong_password_never_rehashes(app, client, user):
    legacy = generate_password_hash(PASSWORD, method="pbkdf2:sha256:600000")
    set_hash(app, user.id, legacy)
    response = client.post("/auth/login", data={"email": "alice@example.com", "password": "wrong-password"})
    assert response.status_code == 422
    assert stored_hash(app, user.id) == legacy


def test_current_hash_is_left_alone(app, client, user):
    before = stored_hash(app, user.id)
    assert client.post("/auth/login", data={"email": "alice@example.com",
                                            "password": PASSWORD}).status_code == 302
    assert stored_hash(app, user.id) == before


@pytest.mark.parametrize("email", ["nobody@example.com", "alice@example.com"])
def test_every_failed_sign_in_verifies_one_hash(app, user, monkeypatch, email):
    """No user-enumeration timing shortcut: an unknown email still pays for a verification."""
    calls = []
    real = accounts.verify_password
    monkeypatch.setattr(accounts, "verify_password",
                        lambda stored, password: calls.append(stored) or real(stored, password))
    with app.app_context():
        assert accounts.authenticate(db.session, email, "wrong-password") is None
    assert len(calls) == 1
    assert calls[0].startswith("$argon2id$")
    assert not accounts.needs_rehash(calls[0])  # the dummy costs what a real hash costs


def test_garbage_hash_does_not_crash(app, client, user):
    set_hash(app, user.id, "$argon2id$not-a-hash")
    response = client.post("/auth/login", data={"email": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 422
