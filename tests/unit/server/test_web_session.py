"""server.web_session: session tokens, their expiry and sign-out (no server)."""

from __future__ import annotations

from trackstream.server.web_session import SessionStore


def test_a_session_names_its_user_until_it_expires():
    now = [1000.0]
    store = SessionStore(ttl_s=60, clock=lambda: now[0])
    token = store.create("ada")
    assert store.user_of(token) == "ada"
    now[0] += 59
    assert store.user_of(token) == "ada"
    now[0] += 2
    assert store.user_of(token) is None


def test_unknown_and_dropped_tokens_name_nobody():
    store = SessionStore()
    token = store.create("ada")
    assert store.user_of("forged") is None and store.user_of(None) is None and store.user_of("") is None
    store.drop(token)
    assert store.user_of(token) is None
    assert len({store.create("ada") for _ in range(100)}) == 100  # fresh random tokens
