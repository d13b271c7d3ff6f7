"""Docker registry tokens: short-lived ES256 JWTs whose `access` claim lists the
repositories and actions they grant (the format docker, podman, containerd, skopeo and
oras already speak)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "shoal"
Access = list[dict[str, Any]]


def load_or_make_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} is not an EC private key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key


class Tokens:
    def __init__(self, key: ec.EllipticCurvePrivateKey, service: str, seconds: int) -> None:
        self._key = key
        self._public = key.public_key()
        self.service = service
        self.seconds = seconds

    def issue(self, user: str | None, access: Access) -> tuple[str, int]:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user or "", "aud": self.service, "iat": now,
                  "nbf": now - 5, "exp": now + self.seconds, "jti": str(uuid.uuid4()),
                  "access": access}
        return jwt.encode(claims, self._key, algorithm="ES256"), now

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a valid token for this service; None for anything else
        (forged, expired, another audience, another algorithm, garbage)."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._public, algorithms=["ES256"], audience=self.service,
                issuer=ISSUER, options={"require": ["exp", "aud", "iss", "sub"]})
        except (jwt.PyJWTError, ValueError):  # ValueError: bytes that are not even ASCII
            return None
        return claims


def allows(claims: dict[str, Any], repository: str, action: str) -> bool:
    for entry in claims.get("access") or []:
        if (isinstance(entry, dict) and entry.get("type") == "repository"
                and entry.get("name") == repository
                and action in (entry.get("actions") or [])):
            return True
    return False


def allows_catalog(claims: dict[str, Any]) -> bool:
    return any(isinstance(e, dict) and e.get("type") == "registry" and e.get("name") == "catalog"
               for e in claims.get("access") or [])
