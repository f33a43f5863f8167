"""Lists of str held for a whole run, stored compactly (:class:`Strs`): a dataset's records
(``data.layouts.Records``) and synthesize.py's input names (``engine``). A list of str is some
60-100 bytes of Python objects per name, which a DataLoader worker (a fork) also copies page by
page as reference counts and the garbage collector's walks touch them; one bytes blob and one
numpy array are a few objects whatever the count, and stay shared, since they are only read."""
from __future__ import annotations

import operator
import os
from array import array
from collections.abc import Sequence

import numpy as np


class Strs(Sequence):
    """A read-only list of str stored as one bytes blob and a numpy array of ``len + 1`` offsets;
    ``strs[i]`` builds the str when read. Names are encoded as the file system's are
    (``os.fsencode``/``os.fsdecode``: undecodable bytes as surrogate escapes), so any name the file
    system gave comes back as it was. Slices are Strs, ``==`` compares with a list or tuple too, and a
    pickle (a spawned worker, a copy) carries the blob and the array."""

    __slots__ = ("_blob", "_offsets")

    def __init__(self, items=()):
        blob, offsets = bytearray(), array("q", [0])
        for s in items:
            blob += os.fsencode(s)
            offsets.append(len(blob))
        self._blob = bytes(blob)
        self._offsets = np.array(offsets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def _one(self, i: int) -> str:
        b = self._blob[int(self._offsets[i]):int(self._offsets[i + 1])]
        return os.fsdecode(b)

    def __getitem__(self, i):
        n = len(self)
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            if step != 1:
                return Strs(self._one(j) for j in range(start, stop, step))
            stop = max(start, stop)   # a run of names: the blob's and the array's slices
            o = self._offsets
            return _strs_from_state(self._blob[o[start]:o[stop]], o[start:stop + 1] - o[start])
        i = operator.index(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("Strs index out of range")
        return self._one(i)

    def __iter__(self):
        return (self._one(i) for i in range(len(self)))

    def __eq__(self, other):
        if isinstance(other, (Strs, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"Strs({list(self)!r})"

    def __reduce__(self):   # a spawned worker (or a copy) gets the blob and the array
        return (_strs_from_state, (self._blob, self._offsets))


def _strs_from_state(blob: bytes, offsets) -> Strs:
    s = Strs.__new__(Strs)
    s._blob, s._offsets = blob, offsets
    return s
