"""A small OCI distribution client on aiohttp: blobs and manifests, with Basic and docker
token (Bearer) authentication, and the registry's own error messages on failure.

Deadlines: small requests have a total deadline; blob transfers, whose length is unknown
in advance, have deadlines on connecting and on every read instead, and uploads a
watchdog on the body's progress (aiohttp has no write deadline), so a stalled registry
fails the transfer while a slow but moving one does not.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode, urljoin

import aiohttp

from shoal.transfer.reference import ImageRef

SMALL = aiohttp.ClientTimeout(total=60, connect=30)
STREAM = aiohttp.ClientTimeout(total=None, connect=30, sock_connect=30, sock_read=300)
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFEST_LIMIT = 4 << 20          # registries refuse bigger manifests too
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
STALL = 300.0                     # seconds an upload may go without sending a byte
T = TypeVar("T")

Body = Callable[[], AsyncIterator[bytes]]   # a fresh body per attempt (auth may retry)


class Watchdog:
    """Fails an awaitable that stops making progress: call `moved` whenever it does."""

    def __init__(self, stall: float = STALL) -> None:
        self.stall = stall
        self._last = time.monotonic()

    def moved(self) -> None:
        self._last = time.monotonic()

    async def guard(self, work: Awaitable[T], what: str) -> T:
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=min(self.stall, 5.0))
                if done:
                    return task.result()
                if time.monotonic() - self._last > self.stall:
                    raise RegistryError(f"{what}: no progress for {self.stall:.0f} s")
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


class RegistryError(Exception):
    """A request the registry refused or could not answer; `str` is the whole story."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()


async def _explain(response: aiohttp.ClientResponse, what: str) -> RegistryError:
    """The error a failed response stands for, with the OCI error message when there is
    one (`{"errors": [{"code", "message"}]}`)."""
    text = ""
    if response.method != "HEAD":
        try:
            text = (await response.content.read(64 << 10)).decode(errors="replace")
        except (TimeoutError, aiohttp.ClientError):
            text = ""
    code = ""
    detail = text.strip()[:300]
    try:
        errors = json.loads(text)["errors"]
        code = str(errors[0].get("code", ""))
        detail = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
                           for e in errors)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        pass
    reason = f"{response.status} {response.reason or ''}".strip()
    return RegistryError(f"{what}: {reason}" + (f" — {detail}" if detail else ""),
                         response.status, code)


class RegistryClient:
    """Requests to one registry for one repository, authenticated as needed."""

    def __init__(self, ref: ImageRef, credentials: Credentials | None, scopes: list[str],
                 session: aiohttp.ClientSession) -> None:
        self.ref = ref
        self.credentials = credentials
        self.scopes = scopes
        self.session = session
        self._authorization: str | None = None
        self._auth_lock = asyncio.Lock()

    @staticmethod
    def open_session(verify_tls: bool = True) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=16, ssl=verify_tls)
        # Blobs are moved as stored: a Content-Encoding must never be undone on the way.
        return aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                     headers={"User-Agent": "shoal"})

    # -- authentication -------------------------------------------------------------------

    async def _authenticate(self, challenge: str) -> None:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self.credentials is None:
                raise RegistryError(f"{self.ref.host} wants a user name and password "
                                    "(--user and --password, or SHOAL_USER and "
                                    "SHOAL_PASSWORD)", 401, "UNAUTHORIZED")
            self._authorization = self.credentials.basic()
            return
        if scheme.lower() != "bearer":
            raise RegistryError(f"{self.ref.host} asks for {scheme} authentication, which "
                                "shoal does not speak", 401, "UNAUTHORIZED")
        fields = dict(_CHALLENGE.findall(params))
        realm = fields.get("realm")
        if not realm:
            raise RegistryError(f"{self.ref.host} sent a Bearer challenge without a realm",
                                401, "UNAUTHORIZED")
        query = [("service", fields["service"])] if "service" in fields else []
        query += [("scope", s) for s in self.scopes]
        headers = ({"Authorization": self.credentials.basic()}
                   if self.credentials is not None else {})
        url = f"{realm}?{urlencode(query)}"
        async with self.session.get(url, headers=headers, timeout=SMALL) as response:
            if response.status != 200:
                raise await _explain(response, f"signing in at {realm}")
            try:
                document = json.loads(await response.content.read(1 << 20))
                token = document.get("token") or document["access_token"]
            except (ValueError, KeyError, TypeError, AttributeError):
                raise RegistryError(f"{realm} answered without a token") from None
        self._authorization = f"Bearer {token}"

    async def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                      body: Body | None = None, stream: bool = False,
                      what: str = "") -> aiohttp.ClientResponse:
        """The response to a request (the caller releases it); one retry after signing in.
        Statuses of 400 and more are the caller's to judge."""
        for attempt in (1, 2):
            sent = dict(headers or {})
            if self._authorization is not None:
                sent["Authorization"] = self._authorization
            try:
                response: aiohttp.ClientResponse = await self.session.request(
                    method, url, headers=sent, data=body() if body is not None else None,
                    timeout=STREAM if stream else SMALL, allow_redirects=True)
            except TimeoutError:
                raise RegistryError(f"{what or method + ' ' + url}: the registry did not "
                                    "answer in time") from None
            except aiohttp.ClientError as exc:
                raise RegistryError(f"{what or method + ' ' + url}: {exc}") from None
            challenge = response.headers.get("WWW-Authenticate")
            if response.status != 401 or attempt == 2 or not challenge:
                return response
            response.release()
            async with self._auth_lock:
                if self._authorization == sent.get("Authorization"):
                    await self._authenticate(challenge)
        raise AssertionError("unreachable")

    # -- the distribution API -------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.ref.base}/{path}"

    async def check(self) -> None:
        """Fail early, and clearly, when nothing answers as a registry at this address."""
        response = await self.request("GET", f"{self.ref.scheme}://{self.ref.host}/v2/",
                                      what=f"reaching {self.ref.host}")
        async with response:
            if response.status not in (200, 401):
                raise await _explain(response, f"{self.ref.host} is not an OCI registry")

    async def has_blob(self, digest: str) -> bool:
        response = await self.request("HEAD", self._url(f"blobs/{digest}"))
        async with response:
            if response.status == 200:
                return True
            if response.status == 404:
                return False
            raise await _explain(response, f"checking blob {digest[:19]}")

    async def mount_blob(self, digest: str, source: str) -> bool:
        """Link a blob the registry holds in `source`; False when it cannot (404, 202)."""
        query = urlencode({"mount": digest, "from": source})
        response = await self.request("POST", self._url(f"blobs/uploads/?{query}"),
                                      headers={"Content-Length": "0"})
        async with response:
            if response.status == 201:
                return True
            if response.status == 202:
                # It opened an upload instead: cancel it rather than leave it to expire.
                location = response.headers.get("Location")
                if location:
                    cancel = await self.request("DELETE", urljoin(str(response.url), location))
                    cancel.release()
                return False
            if response.status in (401, 403, 404):
                return False
            raise await _explain(response, f"mounting blob {digest[:19]} from {source}")

    async def upload_blob(self, digest: str, size: int, body: Body) -> None:
        """One POST for a session, one streamed PUT of the whole blob."""
        response = await self.request("POST", self._url("blobs/uploads/"),
                                      headers={"Content-Length": "0"})
        async with response:
            if response.status != 202:
                raise await _explain(response, f"starting the upload of {digest[:19]}")
            location = response.headers.get("Location")
            if not location:
                raise RegistryError("the registry opened an upload without a Location")
            url = urljoin(str(response.url), location)
        separator = "&" if "?" in url else "?"
        response = await self.request(
            "PUT", f"{url}{separator}{urlencode({'digest': digest})}", body=body, stream=True,
            headers={"Content-Type": "application/octet-stream",
                     "Content-Length": str(size)},
            what=f"uploading blob {digest[:19]}")
        async with response:
            if response.status != 201:
                raise await _explain(response, f"uploading blob {digest[:19]}")

    async def put_manifest(self, reference: str, media_type: str, data: bytes) -> str:
        async def body() -> AsyncIterator[bytes]:
            yield data

        response = await self.request("PUT", self._url(f"manifests/{reference}"), body=body,
                                      headers={"Content-Type": media_type},
                                      what=f"putting manifest {reference}")
        async with response:
            if response.status != 201:
                raise await _explain(response, f"putting manifest {reference}")
            return response.headers.get("Docker-Content-Digest", "")

    async def get_manifest(self, reference: str) -> tuple[str, bytes]:
        """The manifest's media type and bytes."""
        response = await self.request("GET", self._url(f"manifests/{reference}"),
                                      headers={"Accept": ", ".join(MANIFEST_TYPES)},
                                      what=f"getting manifest {reference}")
        async with response:
            if response.status != 200:
                raise await _explain(response, f"{self.ref.host}/{self.ref.repository}:{reference}")
            data = await response.content.read(MANIFEST_LIMIT + 1)
            if len(data) > MANIFEST_LIMIT:
                raise RegistryError(f"manifest {reference} is larger than 4 MiB")
            media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            return media_type, data

    async def blob(self, digest: str) -> aiohttp.ClientResponse:
        """The response carrying a blob's bytes; the caller reads and releases it."""
        response = await self.request("GET", self._url(f"blobs/{digest}"), stream=True,
                                      what=f"getting blob {digest[:19]}")
        if response.status != 200:
            error = await _explain(response, f"getting blob {digest[:19]}")
            response.release()
            raise error
        return response


def media_type_of(data: bytes, declared: str = "") -> str:
    """A manifest's media type: the one declared, else its own `mediaType` field."""
    if declared and declared != "application/octet-stream":
        return declared
    try:
        document: Any = json.loads(data)
        return str(document.get("mediaType", "")) or MANIFEST_TYPES[0]
    except (ValueError, AttributeError):
        return MANIFEST_TYPES[0]
