"""Property tests of everything the gateway parses from a request: whatever the input,
a parser answers or raises the spec's error, and no request gets a 5xx."""

from __future__ import annotations

import asyncio
import contextlib
import json
import string
from typing import Any

import uvloop
from cryptography.hazmat.primitives.asymmetric import ec
from gwtest import raw_request, registry_opener
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.auth.guard import _basic
from gateway.auth.tokens import Tokens
from gateway.errors import RegistryError
from gateway.manifest_format import parse_manifest
from gateway.names import parse_digest, parse_name
from gateway.pagination import parse_page
from gateway.ranges import Unsatisfiable, parse_content_range, parse_range

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALPHABET = string.ascii_letters + string.digits + ":/-_.,=+ *\x00\u00e9\t"
texts = st.text(alphabet=ALPHABET, max_size=120) | st.text(max_size=60)


def answers_or_registry_error(fn: Any, *args: Any) -> None:
    with contextlib.suppress(RegistryError, Unsatisfiable):
        fn(*args)


@FAST
@given(texts)
def test_names_and_digests(text: str) -> None:
    answers_or_registry_error(parse_name, text)
    answers_or_registry_error(parse_digest, text)
    answers_or_registry_error(parse_digest, "sha256:" + text)


@FAST
@given(texts, st.integers(min_value=0, max_value=1 << 40))
def test_ranges(header: str, size: int) -> None:
    answers_or_registry_error(parse_range, header, size)
    answers_or_registry_error(parse_range, "bytes=" + header, size)
    answers_or_registry_error(parse_content_range, header)


@FAST
@given(st.dictionaries(st.sampled_from(["n", "last", "x"]), texts, max_size=3))
def test_pagination(query: dict[str, str]) -> None:
    answers_or_registry_error(parse_page, query, 1000)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20)
manifest_like = st.fixed_dictionaries({}, optional={
    "schemaVersion": st.integers(-1, 3) | texts,
    "mediaType": st.sampled_from(["application/vnd.oci.image.manifest.v1+json",
                                  "application/vnd.oci.image.index.v1+json", "x"]) | texts,
    "config": json_values, "layers": json_values, "manifests": json_values,
    "subject": json_values, "annotations": json_values, "artifactType": json_values,
})


@FAST
@given(manifest_like | json_values, st.none() | texts)
def test_manifests(document: Any, content_type: str | None) -> None:
    answers_or_registry_error(parse_manifest, json.dumps(document).encode(), content_type)


@FAST
@given(st.binary(max_size=200))
def test_manifest_bytes(body: bytes) -> None:
    answers_or_registry_error(parse_manifest, body, None)


@settings(max_examples=200, deadline=None)
@given(texts)
def test_tokens_and_credentials(text: str) -> None:
    _basic(text)
    assert TOKENS.verify(text) is None


TOKENS = Tokens(ec.generate_private_key(ec.SECP256R1()), "shoal", 60)

PATH_PIECES = st.sampled_from([
    "/v2/", "/v2/a/b/", "manifests/", "blobs/", "uploads/", "tags/list", "referrers/",
    "sha256:", "0" * 64, "..", "%2e", "%00", "A", "lib/app", "_catalog", "?n=", "&last=",
    "?digest=sha256:", "?mount=", "&from=", "//", "%ff", "latest", "\u00e9"])
METHODS = st.sampled_from(["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"])
HEADERS = st.dictionaries(
    st.sampled_from(["Range", "Content-Range", "Content-Type", "Accept", "Content-Length",
                     "Authorization", "If-None-Match"]),
    st.text(alphabet=string.printable.strip("\r\n\x0b\x0c"), max_size=40), max_size=3)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(PATH_PIECES, min_size=1, max_size=6), METHODS, HEADERS, st.binary(max_size=64))
def test_no_request_gets_a_server_error(tmp_path_factory: Any, pieces: list[str], method: str,
                                        headers: dict[str, str], body: bytes) -> None:
    target = "".join(pieces)
    if not target.startswith("/v2"):
        target = "/v2/" + target.lstrip("/")
    headers.pop("Content-Length", None)  # the client sets it from the body

    async def go() -> None:
        async with registry_opener(tmp_path_factory.mktemp("fuzz"))() as registry:
            status, _ = await raw_request(registry.port, method, target.replace(" ", "%20"),
                                          body)
            assert status < 500, (method, target, status)
            try:
                r = await registry.http.request(method, target, headers=headers, data=body)
            except ValueError:
                return  # the client itself refuses some headers
            assert r.status < 500, (method, target, headers, r.status, await r.text())

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(go())
