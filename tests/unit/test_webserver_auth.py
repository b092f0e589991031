"""Who may call the web server, and which requests it refuses before any route runs.

Users come from ``[webserver] auth_users`` with scrypt hashes; callers name themselves in a
header (Basic, or a bearer token from signing in); viewers read, admins act. Writes from
another site, requests under another host name while sign-in is off, and listening beyond
loopback without sign-in are refused.
"""

from __future__ import annotations

import json

import pytest
from webserver_support import api_client, basic

from crossdock.configuration import ConfigError, conf
from crossdock.www.auth import Authenticator, Unauthenticated, parse_users
from crossdock.www.listen import check_listen_address, is_loopback
from crossdock.www.passwords import hash_password, verify_password

#: Cheap parameters so the tests do not pay the production cost on every hash.
FAST = {"n": 2 ** 8}


def _users(monkeypatch, **users):
    monkeypatch.setenv("CROSSDOCK__WEBSERVER__AUTH_USERS", json.dumps(users))
    conf.reload()


def test_a_hash_checks_its_own_password_only_and_holds_no_plaintext():
    stored = hash_password("correct horse", **FAST)
    assert "correct horse" not in stored and stored.startswith("scrypt$256$8$1$")
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horsf", stored)
    assert hash_password("correct horse", **FAST) != stored  # salted


def test_bad_user_entries_are_config_errors_naming_the_user():
    good = hash_password("pw", **FAST)
    for raw, words in [({"ann": {"password_hash": "plaintext"}}, "'ann'"),
                       ({"ann": {"password_hash": good, "role": "root"}}, "role 'root'"),
                       ({"ann": {"password": "pw"}}, "password_hash"),
                       ({"a:b": {"password_hash": good}}, "':'"),
                       ({"ann": {"password_hash": good, "email": "x"}}, "email"),
                       (["ann"], "JSON object")]:
        with pytest.raises(ConfigError, match=words):
            parse_users(raw)


def test_tokens_expire_and_end_at_sign_out():
    now = [1000.0]
    auth = Authenticator(users=parse_users({"ann": {"password_hash": hash_password("pw", **FAST)}}),
                         session_lifetime=60, clock=lambda: now[0])
    with pytest.raises(Unauthenticated):
        auth.login("ann", "wrong")
    with pytest.raises(Unauthenticated):
        auth.login("bob", "pw")
    token = auth.login("ann", "pw")["token"]
    assert auth.user_for(f"Bearer {token}").name == "ann"
    now[0] += 61
    with pytest.raises(Unauthenticated, match="expired"):
        auth.user_for(f"Bearer {token}")
    other = auth.login("ann", "pw")["token"]
    assert auth.logout(other) and not auth.logout(other)
    with pytest.raises(Unauthenticated):
        auth.user_for(f"Bearer {other}")
    with pytest.raises(Unauthenticated, match="scheme"):
        auth.user_for("Digest abc")


@pytest.fixture
def guarded(monkeypatch):
    """An app with an admin and a viewer configured."""
    _users(monkeypatch, ann={"password_hash": hash_password("ann-pw", **FAST)},
           vic={"password_hash": hash_password("vic-pw", **FAST), "role": "viewer"})
    from crossdock import database
    from crossdock.www.app import create_app

    database.migrate()
    with api_client(create_app()) as client:
        yield client


def test_without_credentials_the_api_is_401_asking_for_no_basic_prompt(guarded):
    response = guarded.get("/api/v1/dags")
    assert response.status_code == 401 and response.json()["type"] == "errors/Unauthenticated"
    assert response.headers["www-authenticate"].startswith("Bearer")  # a browser never caches Basic here
    assert guarded.get("/api/v1/dags", headers=basic("ann", "nope")).status_code == 401
    assert guarded.get("/api/v1/health").status_code == 200  # health stays public, as in Airflow
    assert guarded.get("/").status_code == 200  # the page holds no data
    assert "set-cookie" not in response.headers


def test_basic_and_bearer_both_work_and_viewers_may_only_read(guarded):
    assert guarded.get("/api/v1/dags", headers=basic("ann", "ann-pw")).status_code == 200
    assert guarded.get("/api/v1/pools", headers=basic("vic", "vic-pw")).status_code == 200
    refused = guarded.post("/api/v1/pools", json={"name": "p", "slots": 1}, headers=basic("vic", "vic-pw"))
    assert refused.status_code == 403 and "viewer" in refused.json()["detail"]
    signed = guarded.post("/api/v1/crossdock/session", json={"username": "ann", "password": "ann-pw"}).json()
    bearer = {"Authorization": f"Bearer {signed['token']}"}
    assert signed["role"] == "admin"
    assert guarded.get("/api/v1/crossdock/session", headers=bearer).json()["user"] == "ann"
    assert guarded.post("/api/v1/pools", json={"name": "p", "slots": 1}, headers=bearer).status_code == 200
    assert guarded.delete("/api/v1/crossdock/session", headers=bearer).status_code == 204
    assert guarded.get("/api/v1/pools", headers=bearer).status_code == 401
    assert guarded.post("/api/v1/crossdock/session", json={"username": "ann", "password": "x"}).status_code == 401


def test_writes_from_another_site_are_refused_even_with_credentials(guarded):
    headers = basic("ann", "ann-pw")
    for extra in [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}]:
        response = guarded.post("/api/v1/pools", json={"name": "p", "slots": 1}, headers={**headers, **extra})
        assert response.status_code == 403, extra
    same = guarded.post("/api/v1/pools", json={"name": "p", "slots": 1},
                        headers={**headers, "Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200
    # Signing in is a write too: a page elsewhere cannot sign a visitor in as someone.
    assert guarded.post("/api/v1/crossdock/session", json={"username": "ann", "password": "ann-pw"},
                        headers={"Origin": "http://evil.example"}).status_code == 403


def test_without_sign_in_only_this_machine_s_names_are_answered():
    from crossdock import database
    from crossdock.www.app import create_app

    database.migrate()
    with api_client(create_app()) as client:
        assert client.get("/api/v1/dags").status_code == 200
        assert client.get("/api/v1/dags", headers={"Host": "localhost:8080"}).status_code == 200
        rebound = client.get("/api/v1/dags", headers={"Host": "attacker.example"})
        assert rebound.status_code == 403 and "attacker.example" in rebound.json()["detail"]
        assert client.post("/api/v1/pools", json={"name": "p", "slots": 1},
                           headers={"Origin": "http://attacker.example"}).status_code == 403
        assert client.get("/api/v1/dags/a%00b").status_code == 400
        assert client.get("/").headers["content-security-policy"].startswith("default-src 'self'")


def test_listening_beyond_loopback_needs_sign_in():
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "10.1.2.3", "192.168.0.7"))
    check_listen_address("127.0.0.1", auth_enabled=False)
    check_listen_address("0.0.0.0", auth_enabled=True)
    with pytest.raises(ConfigError, match="auth_users"):
        check_listen_address("0.0.0.0", auth_enabled=False)


def test_the_server_refuses_to_start_beyond_loopback_without_users(monkeypatch):
    from crossdock.www.server import WebServer

    with pytest.raises(ConfigError, match="0.0.0.0.*auth_users"):
        WebServer(host="0.0.0.0", port=0)
    _users(monkeypatch, ann={"password_hash": hash_password("pw", **FAST)})
    assert WebServer(host="0.0.0.0", port=0).sign_in == "on"  # allowed: not started here
