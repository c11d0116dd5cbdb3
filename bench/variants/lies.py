"""Class 6: lies. The store answers the newest revision's requests with what was not
asked for, or with bytes it does not hold, through a rewriting proxy
(tests/rewriteproxy.py) in front of gcp-storage-emulator, moto or Azurite.

Once (a glitch on the way, not a property of the revision):
- ``range-200``: a ranged GET of a large file is answered 200 with the whole object;
- ``range-shifted``: a ranged GET is answered with another range's bytes, its
  Content-Range saying so;
- ``range-flipped``: a ranged GET is answered with one byte changed, its headers as
  they were (what a resumed download keeps must not keep the damage);
- ``gzip-manifest``: the manifest is answered gzip-encoded (identity was asked), its
  checksum headers dropped.
Every answer of the lie (a lasting one):
- ``altered``: one file's body has a byte changed (same length) and its checksum
  headers dropped; in manifest mode, or in ``complete_marker`` mode (``marker``), where
  only the store's checksum protects the bytes.
- ``excused-marker``: as ``altered-marker``, on the streamed or the ranged road, and
  every answer for that file (its HEAD and metadata too) also says, in one to three
  headers drawn from every store's vocabulary, why its checksum would not apply
  (stored gzip-encoded, SSE-KMS or SSE-C, a composite checksum, a multipart ETag).

Judged: the served tree passes the oracle after every pass; revision 1 stays served
and intact while the store lies; after a lie told once, revision 2 is served within
two passes of honest answers and is never refused; altered bytes are never served.
"""

from __future__ import annotations

import gzip
import random
import re

from bench.variants.core import Ctx
from bench.variants.world import MANIFEST, MODEL, World, files_for
from tests.rewriteproxy import Answer, Rewrite, RewriteProxy

__all__ = ["lies"]

ONCE = ("range-200", "range-shifted", "range-flipped", "gzip-manifest")
LASTING = ("altered", "altered-marker")
EXCUSED = "excused-marker"
# Salt of the draw that picks EXCUSED (see lies()); none of the seeds recorded in
# tests/test_variants.py draws it with this one.
_APART = 0x6C696574
# Headers with which a store's answer says its bytes are not what its checksum covers.
_EXCUSES = (
    ("X-Goog-Stored-Content-Encoding", "gzip"),
    ("x-amz-server-side-encryption", "aws:kms"),
    ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
    ("x-amz-checksum-type", "COMPOSITE"),
    ("ETag", '"0123456789abcdef0123456789abcdef-3"'),
    ("x-ms-server-encrypted", "true"),
)
# The large file of a range lie, and the options that read it as three ranges.
_LARGE = 1536 * 1024
_RANGED = {"range_threshold": 1024 * 1024, "range_size": 512 * 1024}
# What a store's answer says of its bytes' checksum (gs, s3, az).
_CHECKSUMS = ("x-goog-hash", "etag", "content-md5", "content-crc64")


def _stripped(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        (k, v)
        for k, v in headers
        if k.lower() not in _CHECKSUMS and not k.lower().startswith("x-amz-checksum")
    ]


class _Liar:
    """The hook: lies about requests whose path has ``mark``, ``times`` times (None:
    always)."""

    def __init__(
        self,
        kind: str,
        mark: str,
        times: int | None,
        flip: int,
        excuses: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.kind, self.mark, self.left, self.flip = kind, mark, times, flip
        self.excuses = excuses
        self.told = 0

    def __call__(self, method: str, path: str, headers: dict[str, str]) -> Rewrite | None:
        if self.mark not in path or self.left == 0:
            return None
        if method == "HEAD" and self.excuses:
            self.told += 1
            return lambda status, answer, body: (
                status,
                [*_stripped(answer), *self.excuses],
                body,
            )
        if method != "GET":
            return None
        ranged = next((k for k in headers if k.lower() in ("range", "x-ms-range")), None)
        if self.kind.startswith("range") and ranged is None:
            return None
        if self.left is not None:
            self.left -= 1
        self.told += 1
        if self.kind == "range-200":
            del headers[ranged]  # type: ignore[arg-type]
            return None  # the store answers the whole object, 200
        if self.kind == "range-shifted":
            start, _, last = headers[ranged].partition("=")[2].partition("-")  # type: ignore[index]
            shift = int(last) - int(start) + 1
            headers[ranged] = f"bytes={int(start) + shift // 2}-{int(last) + shift // 2}"  # type: ignore[index]
            return None  # another range's bytes, and a Content-Range that says so
        if self.kind == "range-flipped":

            def flipped(status: int, answer: list[tuple[str, str]], body: bytes) -> Answer:
                at = self.flip % max(len(body), 1)
                return status, answer, body[:at] + bytes([body[at] ^ 0x5A]) + body[at + 1 :]

            return flipped
        if self.kind == "gzip-manifest":

            def encoded(status: int, answer: list[tuple[str, str]], body: bytes) -> Answer:
                return (
                    status,
                    [*_stripped(answer), ("Content-Encoding", "gzip")],
                    gzip.compress(body),
                )

            return encoded

        def altered(status: int, answer: list[tuple[str, str]], body: bytes) -> Answer:
            if status not in (200, 206) or not body:
                return status, answer, body
            told = [*_stripped(answer), *self.excuses]
            if self.excuses and body.lstrip().startswith(b"{"):
                # GCS's metadata (the ranged road reads it first): its checksum and its
                # encoding are fields of the JSON, dropped or excused there.
                body = re.sub(rb'"(crc32c|md5Hash)": ?"[^"]*",?', b"", body)
                body = body.replace(b'"kind"', b'"contentEncoding": "gzip", "kind"', 1)
                return status, [(k, v) for k, v in told if k.lower() != "content-length"], body
            at = self.flip % len(body)
            return status, told, body[:at] + bytes([body[at] ^ 0x5A]) + body[at + 1 :]

        return altered


def lies(ctx: Ctx) -> None:
    rng = ctx.rng
    kind = rng.choice(ONCE + LASTING)
    # EXCUSED came later: it is drawn from a generator of its own (the trial's seed
    # salted), not from the trial's, so every seed recorded before it existed
    # (tests/test_variants.py) still generates what it did; one trial in seven is it.
    apart = random.Random(ctx.trial.seed ^ _APART)
    if apart.random() < 1 / 7:
        kind = EXCUSED
    probe = ctx.world()  # only to learn the backend's port
    port = probe.backend.port  # type: ignore[attr-defined]
    files2 = files_for(rng, 2)
    ranged = kind.startswith("range") or (kind == EXCUSED and apart.random() < 0.5)
    if ranged:
        files2["variables/large"] = rng.randbytes(_LARGE)
        target = "variables/large"
    elif kind == "gzip-manifest":
        target = MANIFEST
    else:
        target = rng.choice(sorted(files2))
    excuses = tuple(apart.sample(_EXCUSES, apart.randint(1, 3))) if kind == EXCUSED else ()
    lasting = kind in LASTING or kind == EXCUSED
    liar = _Liar(kind, "", None if lasting else 1, rng.randrange(1 << 20), excuses)
    proxy = RewriteProxy(f"http://127.0.0.1:{port}", liar)
    ctx.cleanups.append(proxy.close)
    marker = "_SUCCESS" if kind.endswith("-marker") else None
    world = ctx.world(
        source_endpoint=proxy.url,
        source_options=_RANGED if ranged else None,
        marker=marker,
    )
    liar.left = 0  # honest while revision 1 is set up
    _publish(world, 1, files_for(rng, 1), marker)
    world.sync()
    if world.active() != 1:
        ctx.fail(f"setup: revision 1 not served (active {world.active()})")
        return
    before = world.digest(1)
    _publish(world, 2, files2, marker)
    liar.mark = world.backend.in_path(f"2/{target}")  # type: ignore[attr-defined]
    liar.left = None if lasting else 1
    said = "".join(f", {k}: {v}" for k, v in excuses)
    ctx.describe(f"{kind} on 2/{target}{said}")
    first = world.sync()
    ctx.check(world, f"{kind}: the pass the store lied in")
    if liar.told == 0:
        ctx.fail(f"harness: the proxy never lied (kind {kind})")
    if lasting:
        if world.active() == 2:
            ctx.fail(f"{kind}: revision 2 served with a changed file (exit {first.returncode})")
        if world.active() != 1 or world.digest(1) != before:
            ctx.fail(f"store not intact: active {world.active()} (was 1)")
        return
    for _ in range(2):
        if world.active() == 2:
            break
        world.sync()
        ctx.check(world, f"{kind}: an honest pass after it")
    if world.active() != 2:
        ctx.fail(f"{kind} once: revision 2 not served two honest passes later: {first.tail()}")
    if 2 in _refused(world):
        ctx.fail(f"{kind} once: revision 2 refused for a glitch of one answer")


def _publish(world: World, version: int, files: dict[str, bytes], marker: str | None) -> None:
    if marker is None:
        world.publish(version, files)
        return
    for name, data in files.items():
        world.put(f"{version}/{name}", data)
    world.put(f"{version}/{marker}", b"")


def _refused(world: World) -> set[int]:
    from tests.oracle import refused_versions

    return refused_versions(world.state, MODEL)
