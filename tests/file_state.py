"""What a test's "nothing was written" compares: a path's inode (an atomic save os.replace()s a
file: a new inode), its modification time, and a file's sha256 (an mtime alone misses a rewrite
within the filesystem's timestamp granularity)."""
import hashlib
from pathlib import Path


def file_state(path: Path) -> tuple:
    """(inode, mtime in ns, sha256 of a file's bytes or None for a folder) of ``path``."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def listing(folder: Path, recursive: bool = False) -> dict:
    """{name (``recursive``: the path under ``folder``): :func:`file_state`} of ``folder``'s entries."""
    if recursive:
        return {str(p.relative_to(folder)): file_state(p) for p in folder.rglob("*")}
    return {p.name: file_state(p) for p in folder.iterdir()}


def rewrite_keeping_size_and_mtime(path: Path, data: bytes):
    """Writes ``data`` to ``path`` and sets its old times back, as ``cp -p``, ``rsync -a`` or
    ``touch -r`` leave a rewritten file: only its ctime (which no call sets back) tells. The
    kernel's ctime clock is coarse (a few ms), so it rewrites until the ctime has moved (bounded:
    no timing in the caller's assertion). Returns (stat before, stat after)."""
    import os
    import time
    st = path.stat()
    for _ in range(5000):
        path.write_bytes(data)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        if path.stat().st_ctime_ns != st.st_ctime_ns:
            break
        time.sleep(0.002)
    return st, path.stat()
