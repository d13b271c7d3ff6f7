"""Authentication and rights at the gateway: every route for every kind of caller, the
token protocol, and the tokens it must refuse."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import bcrypt
import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from gwtest import CONFIG, LAYER, OCI_MANIFEST, error_code, sha256

from gateway.app import make_app
from gateway.auth.config import load
from gateway.auth.guard import Guard
from gateway.server import SERVER_SETTINGS
from node.local import LocalNode

PASSWORDS = {"reader": "r-secret", "writer": "w-secret", "admin": "a-secret"}
POLICY = """
htpasswd = "users"
service = "shoal-test"

[groups]
readers = ["reader"]

[[rule]]
users = ["@readers"]
repositories = ["team/*"]
actions = ["pull"]

[[rule]]
users = ["writer"]
repositories = ["team/*"]
actions = ["pull", "push"]

[[rule]]
users = ["admin"]
repositories = ["*"]
actions = ["admin"]

[[rule]]
users = ["anonymous"]
repositories = ["public/*"]
actions = ["pull"]
"""


def basic(user: str) -> dict[str, str]:
    raw = f"{user}:{PASSWORDS[user]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.fixture
def auth_file(tmp_path: Path) -> Path:
    lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}"
             for u, p in PASSWORDS.items()]
    (tmp_path / "users").write_text("\n".join(lines) + "\n")
    (tmp_path / "auth.toml").write_text(POLICY)
    return tmp_path / "auth.toml"


@asynccontextmanager
async def secured(tmp_path: Path, auth_file: Path) -> AsyncIterator[TestClient[Any, Any]]:
    node = await LocalNode.open(tmp_path / "node")
    guard = Guard(load(auth_file, tmp_path))
    try:
        async with TestClient(TestServer(make_app(node, guard=guard), **SERVER_SETTINGS)) as c:
            yield c
    finally:
        await node.close()


async def push_image(http: TestClient[Any, Any], repo: str, headers: dict[str, str]) -> str:
    blobs = {}
    for data in (b'{"architecture":"amd64","os":"linux"}', b"layer bytes"):
        digest = sha256(data)
        r = await http.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest},
                            data=io.BytesIO(data), headers=headers)
        assert r.status == 201, await r.text()
        blobs[digest] = len(data)
    (config, config_size), (layer, layer_size) = blobs.items()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": CONFIG, "digest": config,
                                      "size": config_size},
                           "layers": [{"mediaType": LAYER, "digest": layer,
                                       "size": layer_size}]}).encode()
    r = await http.put(f"/v2/{repo}/manifests/v1", data=manifest,
                       headers={**headers, "Content-Type": OCI_MANIFEST})
    assert r.status == 201, await r.text()
    return layer


# Expected status of each route for each caller, on repository team/app (which exists).
TABLE = [
    # (method, path, anonymous, reader, writer, admin)
    ("GET", "/v2/", 401, 200, 200, 200),
    ("GET", "/v2/_catalog", 401, 403, 403, 200),
    ("GET", "/v2/team/app/tags/list", 401, 200, 200, 200),
    ("GET", "/v2/team/app/manifests/v1", 401, 200, 200, 200),
    ("HEAD", "/v2/team/app/manifests/v1", 401, 200, 200, 200),
    ("GET", "/v2/team/app/blobs/{layer}", 401, 200, 200, 200),
    ("GET", "/v2/team/app/referrers/{layer}", 401, 200, 200, 200),
    ("POST", "/v2/team/app/blobs/uploads/", 401, 403, 202, 202),
    ("POST", "/v2/other/app/blobs/uploads/", 401, 403, 403, 202),
    ("DELETE", "/v2/team/app/manifests/v1", 401, 403, 403, 202),
    ("GET", "/v2/public/app/tags/list", 404, 404, 404, 404),
]
CALLERS = ["anonymous", "reader", "writer", "admin"]


async def test_every_route_for_every_caller(tmp_path: Path, auth_file: Path) -> None:
    async with secured(tmp_path, auth_file) as http:
        layer = await push_image(http, "team/app", basic("writer"))
        for method, path, *expected in TABLE:
            for caller, status in zip(CALLERS, expected, strict=True):
                headers = basic(caller) if caller != "anonymous" else {}
                r = await http.request(method, path.format(layer=layer), headers=headers)
                assert r.status == status, (method, path, caller, r.status, await r.text())
                if status == 401:
                    challenge = r.headers["WWW-Authenticate"]
                    assert challenge.startswith('Bearer realm="http://') and "/token" in challenge
                if method != "HEAD" and status in (401, 403):
                    assert await error_code(r) == ("UNAUTHORIZED" if status == 401 else "DENIED")


async def test_the_token_protocol(tmp_path: Path, auth_file: Path) -> None:
    async with secured(tmp_path, auth_file) as http:
        r = await http.get("/v2/team/app/tags/list")
        assert r.status == 401
        assert 'scope="repository:team/app:pull"' in r.headers["WWW-Authenticate"]

        r = await http.get("/token", params={"service": "shoal-test",
                                             "scope": "repository:team/app:pull,push"},
                           headers=basic("reader"))
        assert r.status == 200
        body = await r.json()
        claims = jwt.decode(body["token"], options={"verify_signature": False})
        # Asked for pull and push, granted what the policy gives: pull.
        assert claims["access"] == [{"type": "repository", "name": "team/app",
                                     "actions": ["pull"]}]
        bearer = {"Authorization": f"Bearer {body['token']}"}
        assert (await http.get("/v2/", headers=bearer)).status == 200
        r = await http.post("/v2/team/app/blobs/uploads/", headers=bearer)
        assert r.status == 403 and await error_code(r) == "DENIED"

        # A writer's token covers the push; a scope-less one asks for more.
        r = await http.post("/token", data={"grant_type": "password", "username": "writer",
                                            "password": PASSWORDS["writer"],
                                            "scope": "repository:team/app:pull,push",
                                            "service": "shoal-test"})
        token = (await r.json())["access_token"]
        await push_image(http, "team/app", {"Authorization": f"Bearer {token}"})
        r = await http.get("/token", headers=basic("writer"))
        scopeless = {"Authorization": f"Bearer {(await r.json())['token']}"}
        r = await http.post("/v2/team/app/blobs/uploads/", headers=scopeless)
        assert r.status == 401 and 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]

        # Wrong password: no token. Anonymous: a token with only what anonymous may do.
        r = await http.get("/token", headers={"Authorization": "Basic " + base64.b64encode(
            b"writer:nope").decode()})
        assert r.status == 401 and await error_code(r) == "UNAUTHORIZED"
        r = await http.get("/token", params={"scope": "repository:public/x:pull,push"})
        claims = jwt.decode((await r.json())["token"], options={"verify_signature": False})
        assert claims["access"] == [{"type": "repository", "name": "public/x",
                                     "actions": ["pull"]}]


async def test_tokens_that_must_be_refused(tmp_path: Path, auth_file: Path) -> None:
    access = [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]
    now = int(time.time())
    good = {"iss": "shoal", "sub": "writer", "aud": "shoal-test", "iat": now,
            "exp": now + 300, "access": access}
    other_key = ec.generate_private_key(ec.SECP256R1())
    async with secured(tmp_path, auth_file) as http:
        key = serialization.load_pem_private_key((tmp_path / "auth-key.pem").read_bytes(),
                                                 password=None)
        refused = {
            "forged": jwt.encode(good, other_key, algorithm="ES256"),
            "expired": jwt.encode({**good, "exp": now - 10}, key, algorithm="ES256"),
            "wrong audience": jwt.encode({**good, "aud": "elsewhere"}, key, algorithm="ES256"),
            "unsigned": jwt.encode(good, None, algorithm="none"),
            "hmac": jwt.encode(good, "s" * 32, algorithm="HS256"),
            "garbage": "not.a.token",
            "odd bytes": "\u00e9\u00e8",
        }
        assert (await http.get("/v2/", headers={
            "Authorization": f"Bearer {jwt.encode(good, key, algorithm='ES256')}"})).status == 200
        for why, token in refused.items():
            r = await http.get("/v2/team/app/tags/list",
                               headers={"Authorization": f"Bearer {token}"})
            assert r.status == 401, why
            assert await error_code(r) == "UNAUTHORIZED"
        # Another repository than the token names.
        token = jwt.encode(good, key, algorithm="ES256")
        r = await http.post("/v2/other/app/blobs/uploads/",
                            headers={"Authorization": f"Bearer {token}"})
        assert r.status == 403


async def test_a_mount_needs_pull_on_its_source(tmp_path: Path, auth_file: Path) -> None:
    async with secured(tmp_path, auth_file) as http:
        layer = await push_image(http, "secret/app", basic("admin"))
        r = await http.post("/v2/team/app/blobs/uploads/",
                            params={"mount": layer, "from": "secret/app"},
                            headers=basic("writer"))
        assert r.status == 403 and await error_code(r) == "DENIED"
        r = await http.post("/v2/team/app/blobs/uploads/",
                            params={"mount": layer, "from": "secret/app"},
                            headers=basic("admin"))
        assert r.status == 201


async def test_audit_lines_say_who_did_what_and_never_hold_secrets(
        tmp_path: Path, auth_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="shoal.audit")
    async with secured(tmp_path, auth_file) as http:
        r = await http.get("/token", params={"scope": "repository:team/app:pull,push"},
                           headers=basic("writer"))
        token = (await r.json())["token"]
        layer = await push_image(http, "team/app", {"Authorization": f"Bearer {token}"})
        r = await http.delete(f"/v2/team/app/blobs/{layer}", headers=basic("reader"))
        assert r.status == 403
        await http.get("/token", headers={"Authorization": "Basic " + base64.b64encode(
            b"writer:guess").decode()})
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "shoal.audit"]
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "shoal.audit")
    for secret in (*PASSWORDS.values(), "guess", token):
        assert secret not in text
    assert {"who": "writer", "action": "sign-in", "status": 200}.items() <= events[0].items()
    pushes = [e for e in events if e["action"] == "push-blob"]
    assert len(pushes) == 2 and all(e["who"] == "writer" and e["result"] == "ok"
                                    for e in pushes)
    [manifest] = [e for e in events if e["action"] == "push-manifest"]
    assert manifest["repository"] == "team/app" and manifest["reference"] == "v1"
    [denied] = [e for e in events if e["action"] == "delete-blob"]
    assert denied["who"] == "reader" and denied["result"] == "refused"
    assert denied["reference"] == layer and denied["from"] == "127.0.0.1"
    assert events[-1]["action"] == "sign-in" and events[-1]["status"] == 401
    assert all(set(e) >= {"time", "who", "from", "action", "repository", "status"}
               for e in events)


async def test_repeated_failed_sign_ins_back_off(tmp_path: Path, auth_file: Path) -> None:
    wrong = {"Authorization": "Basic " + base64.b64encode(b"writer:nope").decode()}
    async with secured(tmp_path, auth_file) as http:
        statuses = [(await http.get("/token", headers=wrong)).status for _ in range(5)]
        assert statuses == [401] * 5
        r = await http.get("/token", headers=wrong)
        assert r.status == 429 and await error_code(r) == "TOOMANYREQUESTS"
        assert int(r.headers["Retry-After"]) >= 1
        # While backing off even the right password waits: guessing gains nothing.
        r = await http.get("/v2/", headers=basic("writer"))
        assert r.status == 429


async def test_an_upload_session_belongs_to_the_user_who_opened_it(
        tmp_path: Path, auth_file: Path) -> None:
    async with secured(tmp_path, auth_file) as http:
        r = await http.post("/v2/team/app/blobs/uploads/", headers=basic("writer"))
        assert r.status == 202
        location = r.headers["Location"]
        # Even an admin may not continue, inspect or cancel another user's push.
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            r = await http.request(method, location, headers=basic("admin"),
                                   params={"digest": sha256(b"x")} if method == "PUT" else {},
                                   data=b"x" if method in ("PATCH", "PUT") else None)
            assert r.status == 404, (method, await r.text())
            assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"
        r = await http.patch(location, headers=basic("writer"), data=b"x")
        assert r.status == 202
        r = await http.put(location, params={"digest": sha256(b"x")}, headers=basic("writer"))
        assert r.status == 201


@pytest.mark.parametrize("text, complaint", [
    ('htpasswd = "users"\n[[rule]]\nusers = ["a"]\nrepositories = ["*"]\nactions = ["fly"]\n',
     "unknown actions"),
    ('[[rule]]\nusers = ["a"]\nrepositories = ["*"]\nactions = ["pull"]\n', "htpasswd"),
    ('htpasswd = "users"\n[[rule]]\nusers = []\nrepositories = ["*"]\n', "needs users"),
    ('htpasswd = "users"\ngroups = 3\n', "[groups]"),
    ("htpasswd = \n", "Invalid"),
])
def test_a_bad_configuration_is_refused_with_its_reason(tmp_path: Path, text: str,
                                                        complaint: str) -> None:
    (tmp_path / "auth.toml").write_text(text)
    with pytest.raises(ValueError, match=re.escape(complaint)):
        load(tmp_path / "auth.toml", tmp_path)
