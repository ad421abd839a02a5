"""Files in one directory on this machine's disk: the default store."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

from .base import SAFE_NAME

#: Bytes per chunk when streaming a part of a file.
CHUNK_BYTES = 64 * 1024


class LocalStorage:
    """Files in one directory, written atomically (temp file + rename)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def location(self) -> str:
        """The directory, for operators' messages."""
        return str(self.root)

    def _checked(self, name: str) -> Path:
        if not SAFE_NAME.match(name):
            raise ValueError(f"unsafe storage name: {name!r}")
        return self.root / name

    def check(self) -> None:
        """Nothing to check at start-up: the directory was made (or found) above, and a
        start pays no probe; /readyz writes one (health.check_storage)."""

    def save(self, name: str, data: bytes) -> None:
        """Write `data` under `name`; readers never see a half-written file."""
        target = self._checked(name)
        fd, temp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def path(self, name: str) -> Path | None:
        """The file's path on disk, or None if there is no such file."""
        if not SAFE_NAME.match(name):
            return None
        target = self.root / name
        return target if target.is_file() else None

    def read(self, name: str) -> bytes | None:
        """The file's bytes, or None if there is no such file."""
        path = self.path(name)
        return path.read_bytes() if path is not None else None

    def size(self, name: str) -> int | None:
        """The file's length, or None if there is no such file."""
        path = self.path(name)
        return path.stat().st_size if path is not None else None

    def stream(self, name: str, start: int = 0, stop: int | None = None) -> Iterator[bytes] | None:
        """Bytes `start` to `stop` of the file, in chunks; None if there is no such file."""
        path = self.path(name)
        if path is None:
            return None
        handle = open(path, "rb")
        handle.seek(start)
        return _FileChunks(handle, None if stop is None else stop - start)

    def delete(self, name: str) -> None:
        """Remove a file if it exists."""
        self._checked(name).unlink(missing_ok=True)


class _FileChunks:
    """An open file's next `remaining` bytes (None: all), in chunks; close() closes it."""

    def __init__(self, handle, remaining: int | None):
        self._handle, self._remaining = handle, remaining

    def __iter__(self) -> "_FileChunks":
        return self

    def __next__(self) -> bytes:
        wanted = CHUNK_BYTES if self._remaining is None else min(CHUNK_BYTES, self._remaining)
        chunk = self._handle.read(wanted) if wanted else b""
        if not chunk:
            self.close()
            raise StopIteration
        if self._remaining is not None:
            self._remaining -= len(chunk)
        return chunk

    def close(self) -> None:
        """Close the file (again is harmless)."""
        self._handle.close()
