"""A Bloom filter over image ids: a sorted run's footer says "certainly absent" for most ids
it does not hold, so a lookup skips that run without reading a block.

Bit positions of an id (Kirsch-Mitzenmacher double hashing): with h1, h2 the two little-endian
64-bit halves of blake2b(id UTF-8, digest_size=16) and h2 made odd, position i (0 <= i < k) is
((h1 + i * h2) mod 2**64) mod m. Bit j lives in byte j // 8, bit j % 8 (least significant
first). About 10 bits per id and k = 7 give ~1 % false positives.
"""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

BITS_PER_ID = 10
HASHES = 7
_MASK64 = (1 << 64) - 1


def id_hashes(ids: Sequence[str]) -> np.ndarray:
    """(len(ids), 2) uint64: h1, h2 of each id (h2 odd), what `BloomFilter.add_hashes` takes."""
    digests = b"".join(hashlib.blake2b(i.encode("utf-8"), digest_size=16).digest() for i in ids)
    pairs = np.frombuffer(digests, dtype="<u8").reshape(len(ids), 2).astype(np.uint64)
    pairs[:, 1] |= np.uint64(1)
    return pairs


class BloomFilter:
    """`m` bits, `k` probes per id; immutable once read back from a footer."""

    def __init__(self, bits: int, k: int = HASHES, data: np.ndarray | None = None) -> None:
        if bits < 1 or k < 1:
            raise ValueError(f"a Bloom filter needs bits >= 1 and k >= 1, not {bits}, {k}")
        self.bits = bits
        self.k = k
        size = (bits + 7) // 8
        self.data = np.zeros(size, dtype=np.uint8) if data is None else data
        if self.data.dtype != np.uint8 or self.data.shape != (size,):
            raise ValueError(f"a Bloom filter of {bits} bits holds {size} bytes, not {self.data.shape}")
        self._view = memoryview(self.data)  # the same bytes; indexing it gives plain ints (fast)

    @classmethod
    def for_ids(cls, count: int) -> BloomFilter:
        """An empty filter sized for `count` ids (BITS_PER_ID each)."""
        return cls(max(64, BITS_PER_ID * count), HASHES)

    def _positions(self, hashes: np.ndarray) -> np.ndarray:
        steps = np.arange(self.k, dtype=np.uint64)
        with np.errstate(over="ignore"):  # wrapping mod 2**64 is part of the definition
            return (hashes[:, :1] + steps * hashes[:, 1:]) % np.uint64(self.bits)

    def add_hashes(self, hashes: np.ndarray) -> None:
        """Set the bits of the ids whose `id_hashes` are given."""
        pos = self._positions(hashes).ravel()
        np.bitwise_or.at(self.data, pos >> np.uint64(3), np.left_shift(1, pos & np.uint64(7)).astype(np.uint8))

    def __contains__(self, image_id: str) -> bool:
        """The same positions as `add_hashes`, in plain integers: a lookup tests one id."""
        digest = hashlib.blake2b(image_id.encode("utf-8"), digest_size=16).digest()
        h1, h2 = int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little") | 1
        for i in range(self.k):
            pos = ((h1 + i * h2) & _MASK64) % self.bits
            if not self._view[pos >> 3] >> (pos & 7) & 1:
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        return {"bits": self.bits, "k": self.k, "data": base64.b64encode(self.data.tobytes()).decode("ascii")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BloomFilter:
        """Inverse of `to_json`; ValueError/KeyError/TypeError when it is not one."""
        raw = base64.b64decode(data["data"], validate=True)
        return cls(int(data["bits"]), int(data["k"]), np.frombuffer(raw, dtype=np.uint8))
