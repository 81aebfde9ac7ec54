"""Label Studio's brush RLE, written from its published description.

Label Studio stores a brush mask as the RGBA pixels of a canvas (4 bytes per pixel,
row-major) packed with thi.ng's ``rle-pack``. The bit stream, most significant bit
first:

- 32 bits: the number of values ``num`` (4 x width x height);
- 5 bits: word size minus one (8 for bytes);
- 4 x 4 bits: the four run-length field sizes minus one (Label Studio: 3, 4, 8, 16);
- then chunks until ``num`` values are out: 1 bit *repeat*; 2 bits choosing a field
  size; that many bits of (count - 1); then one word repeated ``count`` times (repeat)
  or ``count`` literal words;
- zero bits pad the stream to whole bytes, which are stored as a list of ints.

A pixel belongs to the mask when its alpha byte (the 4th) is non-zero.
"""

from __future__ import annotations

import numpy as np

WORD_SIZE = 8
RLE_SIZES = (3, 4, 8, 16)


class _BitWriter:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, value: int, bits: int) -> None:
        self.parts.append(format(value, f"0{bits}b"))

    def to_bytes(self) -> list[int]:
        bits = "".join(self.parts)
        bits += "0" * (-len(bits) % 8)
        return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


def encode(values: np.ndarray) -> list[int]:
    """rle-pack a flat uint8 array (repeat chunks only; every decoder reads them)."""
    values = np.asarray(values, np.uint8).ravel()
    out = _BitWriter()
    out.write(values.size, 32)
    out.write(WORD_SIZE - 1, 5)
    for size in RLE_SIZES:
        out.write(size - 1, 4)
    if values.size:
        change = np.flatnonzero(values[1:] != values[:-1]) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [values.size]])
        largest = 1 << RLE_SIZES[-1]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            value = int(values[start])
            n = end - start
            while n > 0:
                count = min(n, largest)
                field = next(i for i, s in enumerate(RLE_SIZES) if count - 1 < (1 << s))
                out.write(1, 1)
                out.write(field, 2)
                out.write(count - 1, RLE_SIZES[field])
                out.write(value, WORD_SIZE)
                n -= count
    return out.to_bytes()


def decode(data: list[int] | bytes, *, source: str = "rle") -> np.ndarray:
    """Unpack an rle-pack stream (repeat and literal chunks) to a flat uint8/uint32 array."""
    raw = np.frombuffer(bytes(bytearray(int(b) & 0xFF for b in data)), np.uint8)
    bits = np.unpackbits(raw)
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        if pos + n > bits.size:
            raise ValueError(f"{source}: brush RLE ends early (truncated or not an RLE)")
        chunk = bits[pos : pos + n]
        pos += n
        return int("".join("01"[b] for b in chunk), 2) if n else 0

    num = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, np.uint32 if word > 8 else np.uint8)
    i = 0
    while i < num:
        repeat = read(1)
        count = read(sizes[read(2)]) + 1
        j = i + count
        if j > num:
            raise ValueError(f"{source}: brush RLE runs past its {num} values")
        if repeat:
            out[i:j] = read(word)
        else:
            for n in range(i, j):
                out[n] = read(word)
        i = j
    return out


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """(H, W) bool -> Label Studio brush RLE (RGBA, 255 on the mask, 0 elsewhere)."""
    pixels = np.where(np.asarray(mask, bool), 255, 0).astype(np.uint8)
    return encode(np.repeat(pixels.ravel(), 4))


def rle_to_mask(rle: list[int], height: int, width: int, *, source: str = "rle") -> np.ndarray:
    """Label Studio brush RLE -> (H, W) bool (alpha > 0)."""
    values = decode(rle, source=source)
    if values.size != height * width * 4:
        raise ValueError(
            f"{source}: brush RLE holds {values.size} values, expected 4 x {width} x {height}"
        )
    return values.reshape(height, width, 4)[..., 3] > 0
