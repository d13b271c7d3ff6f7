"""The shared conformance suite of NodeAPI: every implementation passes the same tests.

Each test runs against LocalNode (in-process, on a scratch folder) and RemoteNode (over
gRPC to a real `python -m shoal node` process shared by the module's tests, so each test
uses repositories and content of its own).
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Awaitable, Callable

import pytest
from nodetest import (
    collect,
    encode,
    one_batch,
    pieces,
    recipe_of,
    sha256,
    store_blob,
    text_bytes,
)

from node.api import Codec, Descriptor, ManifestRecord, NodeAPI
from node.blobio import append_stream, write_blob
from node.blobs import EMPTY_DIGESTS
from node.chunking import chunk_id
from node.codec import CompressionProbe, decode
from node.errors import FailedPrecondition, InvalidArgument, NotFound, OutOfRange
from node.recipe import Recipe

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_SHA256 = sha256(b"")


def name(prefix: str = "conf") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


def unknown_digest() -> str:
    return sha256(uuid.uuid4().bytes)


def manifest(body: str, subject: str = "", artifact_type: str = "",
             annotations: dict[str, str] | None = None) -> ManifestRecord:
    content = f'{{"schemaVersion":2,"n":"{body}"}}'.encode()
    return ManifestRecord(sha256(content), OCI_MANIFEST, content, subject, artifact_type,
                          annotations or {})


# -- chunks -------------------------------------------------------------------------------


async def test_put_has_get_chunks(api: NodeAPI) -> None:
    chunks = encode(text_bytes(100_000, seed=7) + os.urandom(100_000))
    assert {c.codec for c in chunks} == {Codec.RAW, Codec.ZSTD}
    ids = [c.id for c in chunks]
    absent = chunk_id(os.urandom(16))
    assert await api.has_chunks([*ids, absent]) == [False] * (len(ids) + 1)

    result = await api.put_chunks(one_batch(chunks[:2], chunks[2:]))
    assert (result.stored, result.duplicate) == (len(chunks), 0)
    assert result.stored_bytes == sum(len(c.data) for c in chunks)
    assert await api.has_chunks([absent, *ids]) == [False] + [True] * len(ids)
    assert await api.has_chunks([]) == []

    again = await api.put_chunks(one_batch(chunks[:3], chunks[:1]))
    assert (again.stored, again.duplicate) == (0, 4)

    order = list(reversed(ids)) + ids[:1]
    got = [c async for c in api.get_chunks(order)]
    assert [c.id for c in got] == order
    by_id = {c.id: c for c in chunks}
    for c in got:
        assert (c.codec, c.raw_length, c.data) == (by_id[c.id].codec, by_id[c.id].raw_length,
                                                   by_id[c.id].data)
        assert decode(c) == decode(by_id[c.id])


async def test_get_of_an_unknown_chunk_is_not_found(api: NodeAPI) -> None:
    with pytest.raises(NotFound):
        _ = [c async for c in api.get_chunks([chunk_id(os.urandom(8))])]


async def test_put_of_a_chunk_not_matching_its_id_stores_nothing(api: NodeAPI) -> None:
    good = encode(os.urandom(30_000))
    victim = CompressionProbe().encode(os.urandom(20_000))
    forged = dataclasses.replace(victim, data=os.urandom(20_000))
    with pytest.raises(InvalidArgument):
        await api.put_chunks(one_batch(good, [forged]))
    assert await api.has_chunks([c.id for c in [*good, victim]]) == [False] * (len(good) + 1)

    text = CompressionProbe().encode(text_bytes(9000, seed=uuid.uuid4().int))
    assert text.codec == Codec.ZSTD
    lying_length = dataclasses.replace(text, raw_length=text.raw_length + 1)
    not_zstd = dataclasses.replace(text, data=b"\x28\xb5\x2f\xfd garbage")
    short_id = dataclasses.replace(text, id=text.id[:16])
    for bad in (lying_length, not_zstd, short_id):
        with pytest.raises(InvalidArgument):
            await api.put_chunks(one_batch([bad]))
    assert await api.has_chunks([text.id]) == [False]


# -- blobs --------------------------------------------------------------------------------


async def test_blob_commit_stat_read_delete(api: NodeAPI) -> None:
    data = os.urandom(150_000) + text_bytes(3 << 20, seed=3) + os.urandom(1000)
    digest, recipe = await store_blob(api, data)
    size = len(data)

    info = await api.stat_blob(digest)
    assert info is not None
    assert (info.digest, info.size, info.chunk_count) == (digest, size, len(recipe))
    assert await api.get_recipe(digest) == recipe
    assert await collect(api.read_blob(digest)) == data

    # A commit of an existing digest is a no-op returning the blob.
    again = await api.commit_blob(digest, recipe)
    assert (again.size, again.chunk_count) == (size, len(recipe))

    boundary = recipe.lengths[0]
    ranges = [(0, 1), (0, boundary), (boundary - 1, 2), (boundary, 5), (1, size - 2),
              (size - 1, 1), (size - 1, None), (size, None), (12345, 2 << 20),
              (boundary + 7, None), (0, None), (size // 2, 0)]
    for offset, length in ranges:
        end = size if length is None else offset + length
        assert await collect(api.read_blob(digest, offset, length)) == data[offset:end], \
            (offset, length)
    for offset, length in [(size + 1, None), (size, 1), (size - 10, 11), (0, size + 1)]:
        with pytest.raises(OutOfRange):
            await collect(api.read_blob(digest, offset, length))

    assert await api.delete_blob(digest)
    assert await api.stat_blob(digest) is None
    assert not await api.delete_blob(digest)
    with pytest.raises(NotFound):
        await collect(api.read_blob(digest))
    with pytest.raises(NotFound):
        await api.get_recipe(digest)


async def test_read_pieces_are_bounded(api: NodeAPI) -> None:
    data = os.urandom(5 << 20)
    digest, _ = await store_blob(api, data)
    sizes = [len(p) async for p in api.read_blob(digest)]
    assert sum(sizes) == len(data)
    assert len(sizes) >= 3
    assert max(sizes) <= (1 << 20) + (128 << 10)


async def test_unknown_blob(api: NodeAPI) -> None:
    digest = unknown_digest()
    assert await api.stat_blob(digest) is None
    assert not await api.delete_blob(digest)
    with pytest.raises(NotFound):
        await api.get_recipe(digest)
    with pytest.raises(NotFound):
        await collect(api.read_blob(digest))
    with pytest.raises(NotFound):
        await collect(api.read_blob(digest, 10, 5))


async def test_commit_with_a_missing_chunk_is_not_found(api: NodeAPI) -> None:
    data = os.urandom(100_000)
    chunks = encode(data)
    await api.put_chunks(one_batch(chunks[:-1]))
    with pytest.raises(NotFound, match=chunks[-1].id.hex()):
        await api.commit_blob(sha256(data), recipe_of(chunks))
    assert await api.stat_blob(sha256(data)) is None


async def test_commit_rejects_bad_digests_and_empty_recipes(api: NodeAPI) -> None:
    chunks = encode(os.urandom(10_000))
    await api.put_chunks(one_batch(chunks))
    for digest in ["", "sha256:abc", "md5:" + "0" * 32, "sha256:" + "A" * 64, "sha256" + "0" * 64]:
        with pytest.raises(InvalidArgument):
            await api.commit_blob(digest, recipe_of(chunks))
    with pytest.raises(InvalidArgument):
        await api.commit_blob(unknown_digest(), Recipe([], []))


@pytest.mark.parametrize("digest", sorted(EMPTY_DIGESTS))
async def test_the_empty_blob(api: NodeAPI, digest: str) -> None:
    info = await api.commit_blob(digest, Recipe([], []))
    assert (info.size, info.chunk_count) == (0, 0)
    stat = await api.stat_blob(digest)
    assert stat is not None and stat.size == 0
    assert await collect(api.read_blob(digest)) == b""
    with pytest.raises(OutOfRange):
        await collect(api.read_blob(digest, 1))


# -- repositories and blob links ----------------------------------------------------------


async def test_link_stat_unlink_blob_and_list_repositories(api: NodeAPI) -> None:
    prefix = f"lnk{uuid.uuid4().hex[:10]}"
    repo, other = f"{prefix}/a", f"{prefix}/b"
    digest, recipe = await store_blob(api, os.urandom(20_000))

    assert await api.link_blob(repo, unknown_digest()) is None
    assert await api.stat_repository_blob(repo, digest) is None
    info = await api.link_blob(repo, digest)
    assert info is not None and (info.digest, info.size) == (digest, recipe.size)
    linked = await api.stat_repository_blob(repo, digest)
    assert linked is not None and linked.size == recipe.size
    assert await api.stat_repository_blob(other, digest) is None
    assert await api.link_blob(other, digest) is not None

    listed = [r for r in await api.list_repositories(last=prefix) if r.startswith(prefix)]
    assert listed == [repo, other]
    assert await api.list_repositories(last=repo, limit=1) == [other]

    assert await api.unlink_blob(repo, digest)
    assert not await api.unlink_blob(repo, digest)
    assert await api.stat_repository_blob(repo, digest) is None
    assert await api.stat_repository_blob(other, digest) is not None
    assert await api.stat_blob(digest) is not None  # unlinking does not delete the blob


async def test_list_repositories_is_ordered_and_paginated(api: NodeAPI) -> None:
    prefix = f"pg{uuid.uuid4().hex[:10]}"
    names = [f"{prefix}/{n}" for n in ["b", "a", "c/d", "c", "a-b", "a.b"]]
    digest, _ = await store_blob(api, os.urandom(5000))
    for repo in names:
        await api.link_blob(repo, digest)
    expected = sorted(names)
    page: list[str] = []
    last = prefix
    while True:
        got = await api.list_repositories(last=last, limit=2)
        mine = [r for r in got if r.startswith(prefix)]
        page += mine
        if len(mine) < 2:
            break
        last = mine[-1]
    assert page == expected


# -- manifests, tags, referrers ------------------------------------------------------------


async def test_manifest_put_get_delete(api: NodeAPI) -> None:
    repo = name()
    m = manifest("one", annotations={"a": "b"})
    await api.put_manifest(repo, m, tags=["latest", "v1"])
    by_tag = await api.get_manifest(repo, "latest")
    by_digest = await api.get_manifest(repo, m.digest)
    assert by_tag == m
    assert by_digest == m
    assert await api.get_manifest(name(), m.digest) is None
    assert await api.get_manifest(repo, "nope") is None
    assert await api.list_tags(repo) == ["latest", "v1"]

    # A tag moves to the newest manifest pushed with it.
    m2 = manifest("two")
    await api.put_manifest(repo, m2, tags=["latest"])
    got = await api.get_manifest(repo, "latest")
    assert got is not None and got.digest == m2.digest

    assert await api.delete_manifest(repo, m.digest)
    assert await api.get_manifest(repo, m.digest) is None
    assert await api.get_manifest(repo, "v1") is None  # its tags went with it
    assert await api.list_tags(repo) == ["latest"]
    assert not await api.delete_manifest(repo, m.digest)
    with pytest.raises(InvalidArgument):
        await api.delete_manifest(repo, "latest")

    assert await api.delete_tag(repo, "latest")
    assert not await api.delete_tag(repo, "latest")
    assert await api.get_manifest(repo, "latest") is None
    assert await api.get_manifest(repo, m2.digest) == m2  # untagged, still there
    assert await api.list_tags(repo) == []


async def test_manifest_references_must_be_in_the_repository(api: NodeAPI) -> None:
    repo = name()
    digest, _ = await store_blob(api, os.urandom(3000))
    child = manifest("child")
    m = manifest("parent")
    with pytest.raises(FailedPrecondition, match=digest):
        await api.put_manifest(repo, m, ["t"], [digest])
    assert await api.get_manifest(repo, m.digest) is None
    assert await api.list_tags(repo) is None

    await api.link_blob(repo, digest)
    with pytest.raises(FailedPrecondition):
        await api.put_manifest(repo, m, ["t"], [digest, child.digest])
    await api.put_manifest(repo, child, [], [digest])
    await api.put_manifest(repo, m, ["t"], [digest, child.digest])
    assert await api.get_manifest(repo, "t") == m


async def test_manifest_with_a_bad_digest_is_invalid(api: NodeAPI) -> None:
    m = dataclasses.replace(manifest("x"), digest="sha256:nothex")
    with pytest.raises(InvalidArgument):
        await api.put_manifest(name(), m)
    bad_subject = dataclasses.replace(manifest("y"), subject="nope")
    with pytest.raises(InvalidArgument):
        await api.put_manifest(name(), bad_subject)


async def test_list_tags_pagination(api: NodeAPI) -> None:
    repo = name()
    tags = ["v1.10", "v1.2", "latest", "0", "Z", "a", "a-b", "a_b", "v2", "v1"]
    m = manifest("tags")
    for tag in tags:  # one at a time, in a non-lexical order
        await api.put_manifest(repo, m, tags=[tag])
    expected = sorted(tags)
    assert await api.list_tags(repo) == expected
    assert await api.list_tags(repo, limit=3) == expected[:3]
    assert await api.list_tags(repo, last=expected[2], limit=3) == expected[3:6]
    assert await api.list_tags(repo, last="a") == expected[expected.index("a") + 1:]
    assert await api.list_tags(repo, last="b") == [t for t in expected if t > "b"]
    assert await api.list_tags(repo, last="zzz") == []
    walked: list[str] = []
    last = ""
    while page := await api.list_tags(repo, last=last, limit=4):
        walked += page
        last = page[-1]
    assert walked == expected
    assert await api.list_tags(name()) is None
    # A repository whose name extends this one's does not leak its tags.
    await api.put_manifest(repo + "x", m, tags=["other"])
    assert await api.list_tags(repo) == expected


async def test_referrers(api: NodeAPI) -> None:
    repo = name()
    subject = manifest("subject")
    await api.put_manifest(repo, subject, ["s"])
    sig = manifest("sig", subject=subject.digest, artifact_type="application/x-sig",
                   annotations={"org.opencontainers.image.created": "2024"})
    sbom = manifest("sbom", subject=subject.digest, artifact_type="application/x-sbom")
    await api.put_manifest(repo, sig, references=[subject.digest])
    await api.put_manifest(repo, sbom)

    found = await api.list_referrers(repo, subject.digest)
    expected = {
        sig.digest: Descriptor(OCI_MANIFEST, sig.digest, len(sig.content),
                               "application/x-sig", sig.annotations),
        sbom.digest: Descriptor(OCI_MANIFEST, sbom.digest, len(sbom.content),
                                "application/x-sbom", {}),
    }
    assert sorted(found, key=lambda d: d.digest) == [expected[k] for k in sorted(expected)]
    assert await api.list_referrers(repo, sig.digest) == []
    assert await api.list_referrers(name(), subject.digest) == []
    got = await api.get_manifest(repo, sig.digest)
    assert got is not None and got.subject == subject.digest

    assert await api.delete_manifest(repo, sig.digest)
    assert await api.list_referrers(repo, subject.digest) == [expected[sbom.digest]]


async def test_list_manifests_and_repository_size(api: NodeAPI) -> None:
    repo = name()
    assert await api.list_manifests(repo) == []
    assert await api.repository_size(repo) == 0
    digest, _ = await store_blob(api, os.urandom(5000))
    assert await api.link_blob(repo, digest) is not None
    assert await api.repository_size(repo) == 5000

    first = manifest("first")
    second = manifest("second", subject=first.digest)
    await api.put_manifest(repo, first, ["v1", "latest"], [digest])
    await api.put_manifest(repo, second, ["v2"])
    await api.put_manifest(repo, second, ["latest"])  # a tag moves, a push re-stamps
    entries = {e.digest: e for e in await api.list_manifests(repo)}
    assert set(entries) == {first.digest, second.digest}
    one, two = entries[first.digest], entries[second.digest]
    assert (one.media_type, one.tags, one.subject, one.size) == (
        OCI_MANIFEST, ("v1",), "", len(first.content))
    assert (two.tags, two.subject, two.size) == (("latest", "v2"), first.digest,
                                                 len(second.content))
    assert two.stamp > one.stamp and two.pushed_at_ms >= one.pushed_at_ms > 0
    assert await api.repository_size(repo) == 5000 + len(first.content) + len(second.content)
    assert await api.list_manifests(repo + "x") == []  # a longer name is another repository
    for bad in ("UPPER", "a" * 300, "a\0b"):
        with pytest.raises(InvalidArgument):
            await api.list_manifests(bad)
        with pytest.raises(InvalidArgument):
            await api.repository_size(bad)

    assert await api.delete_manifest(repo, first.digest)
    assert await api.unlink_blob(repo, digest)
    assert [e.digest for e in await api.list_manifests(repo)] == [second.digest]
    assert await api.repository_size(repo) == len(second.content)


# -- uploads ------------------------------------------------------------------------------


async def test_upload_session(api: NodeAPI) -> None:
    repo = name()
    data = os.urandom(200_000) + text_bytes(200_000, seed=11)
    chunks = encode(data)
    await api.put_chunks(one_batch(chunks))
    half = len(chunks) // 2
    first, second = recipe_of(chunks[:half]), recipe_of(chunks[half:])

    upload = await api.create_upload(repo)
    assert (upload.repository, upload.size) == (repo, 0)
    assert upload.started_at_ms > 0
    got = await api.get_upload(repo, upload.id)
    assert got == upload
    assert await api.get_upload(name(), upload.id) is None  # sessions belong to a repository

    info = await api.append_upload(repo, upload.id, 0, first)
    assert info.size == first.size
    # A retried append (same offset) is refused, so it cannot add the bytes twice.
    with pytest.raises(OutOfRange):
        await api.append_upload(repo, upload.id, 0, first)
    with pytest.raises(OutOfRange):
        await api.append_upload(repo, upload.id, first.size + 1, second)
    assert await collect(api.read_upload(repo, upload.id)) == data[:first.size]
    # An empty part is accepted and changes nothing.
    same = await api.append_upload(repo, upload.id, first.size, Recipe([], []))
    assert same.size == first.size

    info = await api.append_upload(repo, upload.id, first.size, second)
    assert info.size == len(data)
    assert await collect(api.read_upload(repo, upload.id)) == data

    blob = await api.finish_upload(repo, upload.id, sha256(data))
    assert (blob.digest, blob.size, blob.chunk_count) == (sha256(data), len(data), len(chunks))
    assert await api.get_upload(repo, upload.id) is None
    linked = await api.stat_repository_blob(repo, sha256(data))
    assert linked is not None and linked.size == len(data)
    assert repo in await api.list_repositories(last=repo[:-1])
    assert await api.list_tags(repo) == []
    assert await collect(api.read_blob(sha256(data))) == data
    with pytest.raises(NotFound):
        await api.finish_upload(repo, upload.id, sha256(data))


async def test_upload_cancel_and_empty_finish(api: NodeAPI) -> None:
    repo = name()
    chunks = encode(os.urandom(50_000))
    await api.put_chunks(one_batch(chunks))
    upload = await api.create_upload(repo)
    await api.append_upload(repo, upload.id, 0, recipe_of(chunks))
    assert not await api.cancel_upload(name(), upload.id)
    assert await api.cancel_upload(repo, upload.id)
    assert await api.get_upload(repo, upload.id) is None
    assert not await api.cancel_upload(repo, upload.id)

    empty = await api.create_upload(repo)
    with pytest.raises(InvalidArgument):
        await api.finish_upload(repo, empty.id, unknown_digest())
    with pytest.raises(InvalidArgument):
        await api.finish_upload(repo, empty.id, "sha256:bad")
    blob = await api.finish_upload(repo, empty.id, EMPTY_SHA256)
    assert blob.size == 0
    assert await api.stat_repository_blob(repo, EMPTY_SHA256) is not None


async def test_finish_upload_pinned_to_a_size(api: NodeAPI) -> None:
    repo = name()
    data = os.urandom(40_000)
    chunks = encode(data)
    await api.put_chunks(one_batch(chunks))
    upload = await api.create_upload(repo)
    await api.append_upload(repo, upload.id, 0, recipe_of(chunks))
    for wrong in (len(data) - 1, len(data) + 1, 0):
        with pytest.raises(FailedPrecondition):
            await api.finish_upload(repo, upload.id, sha256(data), expected_size=wrong)
    info = await api.get_upload(repo, upload.id)
    assert info is not None and info.size == len(data)  # left as it was
    assert await api.stat_blob(sha256(data)) is None
    blob = await api.finish_upload(repo, upload.id, sha256(data), expected_size=len(data))
    assert blob.size == len(data)
    assert await collect(api.read_blob(sha256(data))) == data


async def test_append_of_missing_chunks_is_not_found(api: NodeAPI) -> None:
    repo = name()
    upload = await api.create_upload(repo)
    chunks = encode(os.urandom(20_000))
    with pytest.raises(NotFound):
        await api.append_upload(repo, upload.id, 0, recipe_of(chunks))
    info = await api.get_upload(repo, upload.id)
    assert info is not None and info.size == 0


@pytest.mark.parametrize("upload_id", [str(uuid.uuid4()), "not-a-uuid", "", "../etc"])
async def test_unknown_upload(api: NodeAPI, upload_id: str) -> None:
    repo = name()
    assert await api.get_upload(repo, upload_id) is None
    assert not await api.cancel_upload(repo, upload_id)
    with pytest.raises(NotFound):
        await api.append_upload(repo, upload_id, 0, Recipe([], []))
    with pytest.raises(NotFound):
        await collect(api.read_upload(repo, upload_id))
    with pytest.raises(NotFound):
        await api.finish_upload(repo, upload_id, EMPTY_SHA256)


# -- the streaming writer ---------------------------------------------------------------------


async def test_write_blob_20_mib(api: NodeAPI) -> None:
    repo = name()
    data = os.urandom(12 << 20) + text_bytes(8 << 20, seed=uuid.uuid4().int)
    digest = sha256(data)
    upload = await write_blob(api, repo, digest, pieces(data, 300_000))
    assert upload.size == len(data)
    info = await api.stat_repository_blob(repo, digest)
    assert info is not None and info.size == len(data)
    assert await collect(api.read_blob(digest)) == data
    assert await collect(api.read_blob(digest, 10 << 20, 1 << 20)) == data[10 << 20:11 << 20]

    # The same bytes again: every chunk is already there, the blob is the same.
    again = await write_blob(api, name(), digest, pieces(data, 1 << 20))
    assert again.size == len(data)
    recipe = await api.get_recipe(digest)
    assert recipe.size == len(data)


async def test_append_stream_resumes_at_the_session_size(api: NodeAPI) -> None:
    repo = name()
    data = os.urandom(3 << 20)
    head, tail = data[:1_000_000], data[1_000_000:]
    upload = await api.create_upload(repo)
    info = await append_stream(api, repo, upload.id, 0, pieces(head))
    assert info.size == len(head)
    with pytest.raises(OutOfRange):
        await append_stream(api, repo, upload.id, 0, pieces(tail))
    info = await append_stream(api, repo, upload.id, len(head), pieces(tail, 65_536))
    assert info.size == len(data)
    assert await collect(api.read_upload(repo, upload.id)) == data
    await api.finish_upload(repo, upload.id, sha256(data))
    assert await collect(api.read_blob(sha256(data))) == data
    with pytest.raises(NotFound):
        await append_stream(api, repo, str(uuid.uuid4()), 0, pieces(b"x"))


async def test_write_blob_with_the_wrong_digest_commits_nothing(api: NodeAPI) -> None:
    repo = name()
    data = os.urandom(2 << 20)
    claimed = unknown_digest()
    with pytest.raises(InvalidArgument):
        await write_blob(api, repo, claimed, pieces(data))
    assert await api.stat_blob(claimed) is None
    assert await api.stat_blob(sha256(data)) is None
    assert await api.stat_repository_blob(repo, claimed) is None
    assert await api.list_tags(repo) is None  # the repository was never created
    with pytest.raises(InvalidArgument):
        await write_blob(api, repo, "sha256:nothex", pieces(data))


# -- bugs found by this suite (tests/node/BUGS.md), now fixed ---------------------------------


async def test_commit_refuses_a_recipe_whose_lengths_disagree_with_its_chunks(
        api: NodeAPI) -> None:
    data = os.urandom(100_000)
    chunks = encode(data)
    await api.put_chunks(one_batch(chunks))
    for delta in (+10, -10):
        lying = Recipe([c.id for c in chunks], [c.raw_length + delta for c in chunks])
        digest = unknown_digest()
        try:
            await api.commit_blob(digest, lying)
        except InvalidArgument:
            continue
        served = await collect(api.read_blob(digest))
        raise AssertionError(f"committed a blob of {lying.size} bytes that serves "
                             f"{len(served)} bytes, not those of its chunks")


async def test_over_long_names_are_invalid_arguments(api: NodeAPI) -> None:
    digest, _ = await store_blob(api, os.urandom(2000))
    long_name = "a/" + "b" * 600
    attempts: dict[str, Callable[[], Awaitable[object]]] = {
        "link_blob": lambda: api.link_blob(long_name, digest),
        "put_manifest tag": lambda: api.put_manifest(name(), manifest("t"), ["t" * 600]),
        "put_manifest repository": lambda: api.put_manifest(long_name, manifest("r")),
    }
    for what, attempt in attempts.items():
        try:
            await attempt()
        except InvalidArgument:
            continue
        except Exception as exc:
            raise AssertionError(f"{what}: {type(exc).__name__}: {exc}") from None
        raise AssertionError(f"{what}: accepted")
