"""Content keys: what identifies the bytes at a URL, without trusting names or dates.

The superpixel store keys its rows by them (an image regenerated in place is noticed),
and the scoring shards cache their model by them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from alseg_core import storage


def content_key(url: str) -> str:
    """What identifies the bytes at ``url``: ``etag:<ETag>:<size>`` on S3 (no download),
    ``sha256:<hex>`` of a local file."""
    fs, path = storage.filesystem(url)
    if storage.is_remote(url):
        info = storage._remote(url, "info", lambda: fs.info(path))
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
        if etag:
            return f"etag:{etag}:{info.get('size')}"
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def content_keys(urls: Sequence[str], *, threads: int = 8) -> list[str]:
    """:func:`content_key` of each URL, in order (IO in a few threads)."""
    from concurrent.futures import ThreadPoolExecutor

    if len(urls) <= 1:
        return [content_key(u) for u in urls]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(content_key, urls))
