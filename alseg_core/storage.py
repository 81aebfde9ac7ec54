"""All file and object-store IO of alseg: local paths and fsspec URLs (``s3://``).

Writes are atomic: data goes to a temporary name next to the target and is renamed
into place (local) or uploaded in one PUT (object stores, where an object appears
whole or not at all). No other module opens files.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

# PNGs larger than this are refused rather than decoded (decompression-bomb guard);
# a Cityscapes frame is 2 Mpx.
Image.MAX_IMAGE_PIXELS = 64_000_000

T = TypeVar("T")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()

# Called with the URL just before a write becomes visible (local: the data is on disk
# under a temporary name, not yet renamed; object store: before the upload). None in
# normal use; ``alseg_core.faults`` sets it for the crash tests.
before_commit: Callable[[str], None] | None = None


# Remote calls that fail transiently (connection refused or reset, timeouts, 5xx that
# the S3 client gave up on) are retried with exponential backoff; s3fs and botocore
# retry below this too. After the last attempt the call raises StorageUnavailable.
REMOTE_ATTEMPTS = 4
REMOTE_BACKOFF_S = 0.5


class StorageUnavailable(OSError):
    """Remote storage could not be reached after all retries."""


def _transient(err: BaseException) -> bool:
    if isinstance(err, FileNotFoundError | PermissionError | IsADirectoryError):
        return False
    if isinstance(err, ConnectionError | TimeoutError):
        return True
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - s3fs brings botocore
        return isinstance(err, OSError)
    if isinstance(err, ClientError):
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or status in (408, 429)
    return isinstance(err, BotoCoreError | OSError)


def _remote(url: str, what: str, call: Callable[[], T]) -> T:
    """Run a remote storage call with retries; local calls run once."""
    if not is_remote(url):
        return call()
    delay = REMOTE_BACKOFF_S
    for attempt in range(1, REMOTE_ATTEMPTS + 1):
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - classified just below
            if not _transient(err):
                raise
            if attempt == REMOTE_ATTEMPTS:
                raise StorageUnavailable(
                    f"{url}: storage unreachable ({what} failed {REMOTE_ATTEMPTS} times; "
                    f"last error: {type(err).__name__}: {err})"
                ) from err
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def is_remote(url: str) -> bool:
    """True for URLs with a non-file protocol (``s3://bucket/key``)."""
    return "://" in str(url) and not str(url).startswith("file://")


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for ``url`` and the path inside it."""
    fs, path = fsspec.core.url_to_fs(str(url))
    return fs, path


def join(base: str, *parts: str) -> str:
    """Join path parts; keeps the ``s3://`` prefix intact."""
    base = str(base)
    if is_remote(base):
        return posixpath.join(base, *parts)
    return str(Path(base).joinpath(*parts))


def normalize(url: str) -> str:
    """Absolute local path, or the URL unchanged; makes paths from globs comparable."""
    return str(url) if is_remote(url) else os.path.abspath(url)


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return _remote(url, "exists", lambda: fs.exists(path))


def isdir(url: str) -> bool:
    fs, path = filesystem(url)
    return _remote(url, "isdir", lambda: fs.isdir(path))


def _with_protocol(url: str, fs: fsspec.AbstractFileSystem, path: str) -> str:
    if is_remote(url):
        protocol = url.split("://", 1)[0]
        return f"{protocol}://{path}"
    return path


def glob(url_pattern: str) -> list[str]:
    """Sorted paths matching a glob pattern, with the same protocol as the pattern."""
    fs, pattern = filesystem(url_pattern)
    found = _remote(url_pattern, "glob", lambda: fs.glob(pattern))
    return sorted(_with_protocol(url_pattern, fs, p) for p in found)


def listdir(url: str) -> list[str]:
    """Sorted child names (not paths) of a directory."""
    fs, path = filesystem(url)
    names = _remote(url, "list", lambda: fs.ls(path, detail=False))
    return sorted(posixpath.basename(p.rstrip("/")) for p in names)


def makedirs(url: str) -> None:
    fs, path = filesystem(url)
    if not is_remote(url):
        fs.makedirs(path, exist_ok=True)


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)

    def read() -> bytes:
        with fs.open(path, "rb") as handle:
            return handle.read()

    try:
        return _remote(url, "read", read)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{url}: file not found") from err


def write_bytes(url: str, data: bytes) -> None:
    """Write ``data`` atomically: readers see the old file or the whole new one."""
    fs, path = filesystem(url)
    if is_remote(url):
        if before_commit is not None:
            before_commit(url)

        def put() -> None:
            # One PUT: the object appears whole or not at all.
            with fs.open(path, "wb") as handle:
                handle.write(data)

        _remote(url, "write", put)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp_name, 0o666 & ~_UMASK)  # mkstemp creates 0600; match a plain open()
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if before_commit is not None:
            before_commit(url)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def remove(url: str) -> None:
    fs, path = filesystem(url)
    if exists(url):
        _remote(url, "remove", lambda: fs.rm(path, recursive=True))


@contextmanager
def atomic_local_dir(target: str) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``target`` (local) only on success."""
    target_path = Path(target)
    target_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = target_path.parent / f".{target_path.name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    try:
        yield tmp
        if target_path.exists():
            old = target_path.parent / f".{target_path.name}.{uuid.uuid4().hex}.old"
            target_path.rename(old)
            tmp.rename(target_path)
            _rmtree(old)
        else:
            tmp.rename(target_path)
    except BaseException:
        _rmtree(tmp)
        raise


@contextmanager
def output_dir(url: str) -> Iterator[str]:
    """Where to write a folder of files that must appear whole or not at all.

    Local: a temporary folder renamed onto ``url`` only when the block succeeds.
    Object store: ``url`` itself (a folder is only a key prefix there); writers put
    their completion marker (``request.json``, ``state.json`` ...) last, and readers
    refuse a folder without it.
    """
    if is_remote(url):
        yield url
        return
    with atomic_local_dir(url) as tmp:
        yield str(tmp)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- images


def decode_png(data: bytes, *, source: str) -> np.ndarray:
    """Decode PNG/JPEG bytes to an array; ``source`` names the file in errors.

    Returns (H, W, 3) uint8 for colour images, (H, W) for single-channel ones
    (uint8, or int32 for 16/32-bit PNGs such as Cityscapes instanceIds). A palette PNG
    (mode ``P``, what CVAT and many tools write for masks) is read by index: the value
    is the class, never the palette colour's brightness.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode in ("I", "I;16", "I;16B", "I;16L"):
                return np.asarray(img, dtype=np.int32)
            if img.mode in ("L", "P"):
                return np.asarray(img, dtype=np.uint8)
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{source}: not a readable image ({err})") from err


def read_image(url: str) -> np.ndarray:
    """Read a PNG from a path or URL (see :func:`decode_png` for the result)."""
    return decode_png(read_bytes(url), source=str(url))


def read_rgb(url: str) -> np.ndarray:
    """(H, W, 3) uint8 photo at ``url``; a single-channel file is an error naming it."""
    image = read_image(url)
    if image.ndim != 3:
        raise ValueError(
            f"{url}: expected an RGB image, got a single-channel image of "
            f"{image.shape[1]}x{image.shape[0]} (greyscale or a label mask in the image folder?)"
        )
    return image


def encode_png(array: np.ndarray) -> bytes:
    """(H, W, 3) uint8, (H, W) uint8, or (H, W) uint16/int32 (16-bit PNG) -> PNG bytes."""
    arr = np.asarray(array)
    if arr.ndim == 2 and arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(f"16-bit PNG values must be in 0..65535, got {arr.min()}..{arr.max()}")
        img = Image.fromarray(arr.astype(np.uint16))
    elif arr.dtype == np.uint8 and arr.ndim in (2, 3):
        img = Image.fromarray(arr)
    else:
        raise TypeError(f"encode_png: unsupported array {arr.dtype} {arr.shape}")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def write_png(url: str, array: np.ndarray) -> None:
    write_bytes(url, encode_png(array))


# ----------------------------------------------------------------------------- tables


def write_parquet(url: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    write_bytes(url, buf.getvalue())


def read_parquet(
    url: str, *, columns: list[str] | None = None, present_only: bool = False
) -> pa.Table:
    """The table at ``url`` (``columns`` only; ``present_only``: those the file has)."""
    data = read_bytes(url)
    try:
        if present_only and columns is not None:
            names = set(pq.ParquetFile(io.BytesIO(data)).schema_arrow.names)
            columns = [c for c in columns if c in names]
        # One thread: pyarrow's reader pool can still be winding down when a short
        # process exits, which aborts it ("terminate called without an active exception",
        # apache/arrow#34314); our tables are small, in memory already.
        return pq.read_table(io.BytesIO(data), columns=columns, use_threads=False)
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{url}: not a readable Parquet file ({err})") from err


def write_json(url: str, obj: Any) -> None:
    write_bytes(url, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(url: str) -> Any:
    try:
        return json.loads(read_bytes(url))
    except json.JSONDecodeError as err:
        raise ValueError(f"{url}: not valid JSON ({err})") from err


def read_text(url: str) -> str:
    return read_bytes(url).decode()


# ----------------------------------------------------------------------------- checkpoints


def _canonical(obj: Any) -> Any:
    """Rebuild containers with interned strings, so equal states pickle to equal bytes.

    Pickle writes a string once per distinct object; a state loaded from disk and the
    same state built in memory share their strings differently. Interning removes that.
    """
    import sys

    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_canonical(v) for v in obj)
    return obj


def save_checkpoint(url: str, state: dict[str, Any]) -> None:
    """Save a checkpoint dict (tensors and plain Python values only) atomically.

    The bytes depend only on the values: a resumed run writes the same file as an
    uninterrupted one, so content hashes (DVC) agree.
    """
    import torch

    buf = io.BytesIO()
    torch.save(_canonical(state), buf)
    write_bytes(url, buf.getvalue())


def load_checkpoint(url: str) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: no arbitrary code from pickles."""
    import torch

    data = read_bytes(url)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for bad files
        raise ValueError(f"{url}: not a loadable alseg checkpoint ({err})") from err
    if not isinstance(state, dict) or "model_state" not in state:
        raise ValueError(f"{url}: not an alseg checkpoint (no 'model_state' entry)")
    return state
