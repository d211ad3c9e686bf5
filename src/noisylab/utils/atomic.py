"""Writing files so that a kill, a full disk or a crash leaves either the old file or the new one, never a
torn one: write a temporary file in the same folder, flush it to disk, then rename it over the target.

A rename within one folder is atomic on POSIX filesystems; a temporary file elsewhere ($TMPDIR, as fsspec
uses) would make the final step a cross-filesystem copy, which is not.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

TEMPORARY_SUFFIX = ".tmp"  # temporaries are ".<target name>.<random><suffix>": hidden, and found again by it


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path` for writing; on a clean exit it replaces `path`, on an error it
    is removed and `path` is left as it was."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result should look like any other file
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_save(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """`write(f)` into a temporary binary file that then replaces `path` (for np.savez, torch.save, savefig)."""
    with atomic_open(path, "wb") as f:
        write(f)


def remove_torn_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that a killed `atomic_open` left in `folder` (`.<name>.<random>.tmp`) and
    return them. Such a file never replaced its target, so it holds nothing the run needs; a resumed run calls
    this so that a kill during a save leaves no litter behind."""
    removed = []
    for tmp in sorted(Path(folder).glob(f".*{TEMPORARY_SUFFIX}")):
        if tmp.is_file():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every filesystem lets a folder be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
