"""Checking a pushed manifest and reading from it what storage needs: its media type,
the blobs and manifests it references, its subject, artifact type and annotations.

Manifests are stored byte for byte as pushed and served under the media type they were
pushed with; nothing here rewrites or converts them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import MANIFEST_INVALID, RegistryError
from gateway.names import parse_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
SCHEMA1 = frozenset({
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
})
IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})

# RFC 6838 type/subtype, which also keeps it safe to echo as a header.
_RESTRICTED = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"{_RESTRICTED}/{_RESTRICTED}")

# Content-Type values that say nothing about which manifest format a body is.
_VAGUE_TYPES = frozenset({"", "application/json", "application/octet-stream", "text/plain"})

# Layers that may live outside the registry (Windows base layers); they are not required
# to have been pushed when they carry URLs.
_FOREIGN_LAYERS = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
    "application/vnd.oci.image.layer.nondistributable.",
)


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    media_type: str
    references: list[str]  # digests of the blobs and manifests it needs, first seen first
    subject: str = ""
    artifact_type: str = ""
    annotations: dict[str, str] = field(default_factory=dict)


def _invalid(message: str, detail: Any = None) -> RegistryError:
    return RegistryError(MANIFEST_INVALID, message, detail)


def _descriptor(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{where} is not a descriptor")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where} has no mediaType")
    digest = value.get("digest")
    if not isinstance(digest, str):
        raise _invalid(f"{where} has no digest")
    try:
        parse_digest(digest)
    except RegistryError as error:
        raise _invalid(f"{where} has an invalid digest", error.detail) from None
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where} has no valid size")
    if "urls" in value and not (
            isinstance(value["urls"], list) and all(isinstance(u, str) for u in value["urls"])):
        raise _invalid(f"{where} has invalid urls")
    _annotations(value.get("annotations"), where)
    return value


def _descriptors(doc: dict[str, Any], key: str, *, required: bool) -> list[dict[str, Any]]:
    if key not in doc:
        if required:
            raise _invalid(f"manifest has no {key}")
        return []
    value = doc[key]
    if not isinstance(value, list):
        raise _invalid(f"{key} is not a list")
    return [_descriptor(item, f"{key}[{i}]") for i, item in enumerate(value)]


def _annotations(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _invalid(f"annotations of {where} are not a map of strings")
    return value


def _is_foreign(layer: dict[str, Any]) -> bool:
    return bool(layer.get("urls")) and str(layer["mediaType"]).startswith(_FOREIGN_LAYERS)


def _media_type(doc: dict[str, Any], content_type: str | None) -> str:
    declared = (content_type or "").split(";", 1)[0].strip()
    inner = doc.get("mediaType")
    if inner is not None and (not isinstance(inner, str) or not inner):
        raise _invalid("mediaType is not a string")
    if declared.lower() not in _VAGUE_TYPES:
        if inner is not None and inner.lower() != declared.lower():
            raise _invalid("mediaType does not match Content-Type",
                           {"mediaType": inner[:200], "Content-Type": declared[:200]})
        return declared
    if inner is not None:
        return inner
    # Neither says: guess as distribution does from the fields that are there.
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc:
        return OCI_MANIFEST
    raise _invalid("manifest media type unknown: set Content-Type")


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise _invalid("manifest is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest is not a JSON object")
    media_type = _media_type(doc, content_type)
    if not _MEDIA_TYPE.fullmatch(media_type):
        # It becomes the Content-Type of every pull; it must be a header-safe media type.
        raise _invalid("media type is malformed", {"mediaType": media_type[:200]})
    if media_type in SCHEMA1:
        raise _invalid("Docker schema1 manifests are not supported")
    if media_type in IMAGE_MANIFESTS | INDEXES:
        version = doc.get("schemaVersion")
        if not isinstance(version, int) or isinstance(version, bool) or version != 2:
            raise _invalid("schemaVersion must be 2")

    blobs: list[dict[str, Any]] = []
    config: dict[str, Any] | None = None
    if "config" in doc or media_type in IMAGE_MANIFESTS:
        if "config" not in doc:
            raise _invalid("manifest has no config")
        config = _descriptor(doc["config"], "config")
        blobs.append(config)
    layers = _descriptors(doc, "layers", required=media_type in IMAGE_MANIFESTS)
    blobs.extend(layer for layer in layers if not _is_foreign(layer))
    blobs.extend(_descriptors(doc, "blobs", required=False))
    children = _descriptors(doc, "manifests", required=media_type in INDEXES)

    subject = ""
    if doc.get("subject") is not None:
        subject = str(_descriptor(doc["subject"], "subject")["digest"])
    artifact_type = doc.get("artifactType", "")
    if not isinstance(artifact_type, str):
        raise _invalid("artifactType is not a string")
    if not artifact_type and config is not None and media_type == OCI_MANIFEST:
        # The spec's rule for the referrers API: an image manifest's artifact type
        # defaults to its config's media type.
        artifact_type = str(config["mediaType"])
    if artifact_type and not _MEDIA_TYPE.fullmatch(artifact_type):
        raise _invalid("artifactType is not a media type", {"artifactType": artifact_type[:200]})

    references = list(dict.fromkeys(str(d["digest"]) for d in blobs + children))
    return ParsedManifest(media_type, references, subject, artifact_type,
                          _annotations(doc.get("annotations"), "manifest"))
