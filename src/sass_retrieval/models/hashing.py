"""Stable hashing of ids and strings into fixed-size embedding tables.

A model trained yesterday must accept today's new users and videos: instead of a vocabulary that
grows (and shifts every index), each field hashes its raw value into a fixed number of buckets.
The hash is a fixed function of (field, value), never Python's salted ``hash``, so checkpoints stay
valid across processes and days.
"""

from __future__ import annotations

import zlib

import numpy as np

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def field_salt(field: str) -> np.uint64:
    return np.uint64(zlib.crc32(field.encode()))


def hash_ids(values: np.ndarray, field: str, buckets: int, pad: int | None = None) -> np.ndarray:
    """Integer ids -> bucket in [1, buckets); bucket 0 is reserved for padding (value == pad)."""
    v = np.asarray(values, dtype=np.int64)
    with np.errstate(over="ignore"):
        h = _splitmix64(v.astype(np.uint64) ^ (field_salt(field) << np.uint64(32)))
    out = (h % np.uint64(buckets - 1)).astype(np.int64) + 1
    if pad is not None:
        out[v == pad] = 0
    return out


def hash_strings(values: np.ndarray, field: str, buckets: int) -> np.ndarray:
    """Strings -> bucket in [1, buckets); each distinct string is hashed once."""
    arr = np.asarray(values, dtype=object)
    uniq, inv = np.unique(arr.astype(str), return_inverse=True)
    codes = np.array([zlib.crc32(u.encode()) for u in uniq], dtype=np.int64)
    return hash_ids(codes, field, buckets)[inv]
