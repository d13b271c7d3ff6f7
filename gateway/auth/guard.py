"""Authentication and authorization of every /v2 request, and the /token endpoint.

Unauthenticated requests get 401 with the Bearer challenge clients follow to /token;
signed-in users without the right get 403 DENIED; Basic credentials are accepted on
every route too, for curl and scripts.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.auth.audit import USER
from gateway.auth.config import AuthConfig
from gateway.auth.throttle import Throttle
from gateway.auth.tokens import Access, Tokens, allows, allows_catalog, load_or_make_key
from gateway.auth.users import Htpasswd
from gateway.errors import DENIED, TOOMANYREQUESTS, UNAUTHORIZED, RegistryError

# The action each handler needs on its repository; uploads.start needs pull on `from`
# too when it mounts.
ROUTE_ACTIONS = {
    "tags.list_tags": "pull", "manifests.get": "pull", "blobs.get": "pull",
    "referrers.list_referrers": "pull",
    "manifests.put": "push", "uploads.start": "push", "uploads.status": "push",
    "uploads.patch": "push", "uploads.finish": "push", "uploads.cancel": "push",
    "manifests.delete": "delete", "blobs.delete": "delete",
}


@dataclass(frozen=True, slots=True)
class Identity:
    user: str | None                    # None: not signed in
    claims: dict[str, Any] | None       # a bearer token's claims, None for Basic/anonymous


class Guard:
    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self.users = Htpasswd(config.htpasswd)
        self.tokens = Tokens(load_or_make_key(config.key), config.service,
                             config.token_seconds)
        self.throttle = Throttle()

    # -- who is asking ------------------------------------------------------------------

    async def identify(self, request: web.Request) -> Identity | None:
        """The caller; None when no credentials were sent. Bad credentials are a 401."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if not header:
            return None
        if scheme.lower() == "bearer":
            claims = self.tokens.verify(value.strip())
            if claims is None:
                raise self._challenge(request, None, "invalid_token")
            identity = Identity(str(claims.get("sub") or "") or None, claims)
            if identity.user:
                request[USER] = identity.user
            return identity
        if scheme.lower() == "basic":
            user, password = _basic(value)
            try:
                await self._sign_in(request, user or "", password)
            except RegistryError as refusal:
                if refusal.code is UNAUTHORIZED:
                    raise self._challenge(request, None, "invalid_token") from None
                raise
            return Identity(user, None)
        raise self._challenge(request, None)

    # -- may they -------------------------------------------------------------------------

    async def authorize(self, request: web.Request, route: str, params: dict[str, str]
                        ) -> None:
        identity = await self.identify(request)
        if route == "base.version_check":
            if identity is None:
                raise self._challenge(request, None)
            return
        if route == "base.catalog":
            if identity is None:
                raise self._challenge(request, "registry:catalog:*")
            allowed = (allows_catalog(identity.claims) if identity.claims is not None
                       else self.config.policy.may_list_catalog(identity.user))
            if not allowed:
                raise RegistryError(DENIED, "listing the catalog needs admin rights")
            return
        needs = [(params["name"], ROUTE_ACTIONS.get(route, "admin"))]
        source = request.rel_url.query.get("from")
        if route == "uploads.start" and request.rel_url.query.get("mount") and source:
            needs.append((source, "pull"))
        for repository, action in needs:
            self._check(request, identity, repository, action)

    def _check(self, request: web.Request, identity: Identity | None, repository: str,
               action: str) -> None:
        policy = self.config.policy
        scope = f"repository:{repository}:{'pull,push' if action == 'push' else action}"
        if identity is None:
            if action in policy.actions(None, repository):
                return  # anonymous access the policy grants needs no token
            raise self._challenge(request, scope)
        if identity.claims is not None:
            if allows(identity.claims, repository, action):
                return
            if action in policy.actions(identity.user, repository):
                # The token was asked for less than this request needs: get another.
                raise self._challenge(request, scope, "insufficient_scope")
        elif action in policy.actions(identity.user, repository):
            return
        if identity.user is None:
            # An anonymous token: signing in might help, so this is a 401, not a 403.
            raise self._challenge(request, scope)
        raise RegistryError(DENIED, f"{action} is not allowed in {repository}",
                            detail={"repository": repository, "action": action})

    def _challenge(self, request: web.Request, scope: str | None,
                   error: str | None = None) -> RegistryError:
        realm = self.config.realm or f"{request.scheme}://{request.host}/token"
        parts = [f'realm="{realm}"', f'service="{self.config.service}"']
        if scope:
            parts.append(f'scope="{scope}"')
        if error:
            parts.append(f'error="{error}"')
        return RegistryError(UNAUTHORIZED, "authentication required",
                             headers={"WWW-Authenticate": "Bearer " + ",".join(parts)})

    # -- the token endpoint ----------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        """GET /token (docker's token protocol, Basic or anonymous) and POST /token (the
        OAuth2 password grant some clients use)."""
        user: str | None = None
        scopes = list(request.rel_url.query.getall("scope", []))
        if request.method == "POST":
            form = await request.post()
            scopes += str(form.get("scope", "")).split()
            if form.get("grant_type") == "password":
                user = await self._sign_in(request, str(form.get("username", "")),
                                           str(form.get("password", "")))
        else:
            header = request.headers.get("Authorization", "")
            scheme, _, value = header.partition(" ")
            if header and scheme.lower() == "basic":
                name, password = _basic(value)
                user = await self._sign_in(request, name or "", password)
            elif header:
                raise RegistryError(UNAUTHORIZED, "the token endpoint takes Basic credentials")
        access = self._grant(user, scopes)
        token, issued = self.tokens.issue(user, access)
        return web.json_response({
            "token": token, "access_token": token, "expires_in": self.config.token_seconds,
            "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued)),
        })

    async def _sign_in(self, request: web.Request, user: str, password: str) -> str:
        """`user` when the password is right; 401 when not, 429 while backing off."""
        address = request.remote or "?"
        request[USER] = user[:100]
        wait = self.throttle.wait(address)
        if wait > 0:
            raise RegistryError(TOOMANYREQUESTS, "too many failed sign-ins: wait and retry",
                                headers={"Retry-After": str(int(wait) + 1)})
        if not user or not await self.users.check(user, password):
            self.throttle.failed(address)
            raise RegistryError(UNAUTHORIZED, "wrong user name or password")
        self.throttle.succeeded(address)
        return user

    def _grant(self, user: str | None, scopes: list[str]) -> Access:
        policy = self.config.policy
        access: Access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, wanted = rest.rpartition(":")
            if kind == "registry" and name == "catalog":
                if policy.may_list_catalog(user):
                    access.append({"type": "registry", "name": "catalog", "actions": ["*"]})
                continue
            if kind != "repository" or not name:
                continue
            allowed = policy.actions(user, name)
            asked = {"pull", "push", "delete"} if "*" in wanted.split(",") else set(
                wanted.split(","))
            # Some clients (oras-py) keep the first token they get for a repository and
            # never ask again with a wider scope, so a pull token also carries the push
            # right the user has; delete is granted only when asked for.
            asked |= {"pull", "push"} & allowed
            granted = sorted(asked & allowed)
            if granted:
                access.append({"type": "repository", "name": name, "actions": granted})
        return access


def _basic(value: str) -> tuple[str | None, str]:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # ValueError: not ASCII; UnicodeDecodeError too
        return None, ""
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (None, "")

