"""Image references as the CLI takes them: `HOST[:PORT]/REPOSITORY[:TAG][@DIGEST]`."""

from __future__ import annotations

import re
from dataclasses import dataclass

_REPOSITORY = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                         r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
LOOPBACK = {"localhost", "127.0.0.1", "[::1]", "::1"}


@dataclass(frozen=True, slots=True)
class ImageRef:
    scheme: str           # http or https
    host: str             # host[:port], as in URLs
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}/v2/{self.repository}"

    def __str__(self) -> str:
        text = f"{self.host}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        return text + (f"@{self.digest}" if self.digest else "")


def parse(text: str, insecure: bool = False) -> ImageRef:
    """An image reference; plain HTTP with `insecure`, an explicit http:// prefix, or for
    a loopback host (as docker does), HTTPS otherwise."""
    scheme = "http" if insecure else "https"
    rest = text
    for prefix in ("http://", "https://"):
        if rest.startswith(prefix):
            scheme, rest = prefix[:-3], rest[len(prefix):]
    host, slash, path = rest.partition("/")
    if not slash or not path or not host:
        raise ValueError(f"expected HOST[:PORT]/REPOSITORY[:TAG], got {text!r}")
    if host.rsplit(":", 1)[0] in LOOPBACK and not text.startswith("https://"):
        scheme = "http"
    path, at, digest = path.partition("@")
    if at and not _DIGEST.match(digest):
        raise ValueError(f"{digest!r} is not a sha256 digest")
    repository, colon, tag = path.rpartition(":")
    if not colon:
        repository, tag = path, ""
    if not _REPOSITORY.match(repository):
        raise ValueError(f"{repository!r} is not a repository name (lower case letters, "
                         "digits and separators)")
    if tag and not _TAG.match(tag):
        raise ValueError(f"{tag!r} is not a tag")
    return ImageRef(scheme, host, repository, tag or (None if at else "latest"),
                    digest if at else None)
