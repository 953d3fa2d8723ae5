"""Atomic file writes: write to a temporary file beside the target, then rename over it.

Files get the mode an ordinary ``open(path, "w")`` would give them (``0o666 & ~umask``), not the
0600 of :func:`tempfile.mkstemp`. :func:`check_writable` refuses an output path before any work is
done (a folder, under a file, in a read-only folder); :func:`atomic_dir` replaces a whole folder so
that its files change together.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from zoo.errors import OutputError


def _umask() -> int:
    """The process umask: from /proc on Linux (thread-safe), else by setting and restoring it."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status", encoding="ascii") as f:
            return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 minus the process umask."""
    return 0o666 & ~_umask()


def check_writable(target: str | Path, *, what: str = "output") -> Path:
    """Refuse ``target`` unless a file can be written there: not a folder, no file among its
    parents, an existing parent folder writable. Raises :class:`OutputError` before any work."""
    target = Path(target)
    if str(target) == "" or target.name in ("", ".", ".."):
        raise OutputError(f"{what} path {str(target)!r} names no file")
    if target.is_dir():
        raise OutputError(f"{what} path {target} is a folder; give a file name inside it, e.g. {target / 'out'}")
    parent = target.parent
    for p in [parent, *parent.parents]:
        if p.exists():
            if not p.is_dir():
                raise OutputError(f"{what} path {target}: {p} is a file, not a folder")
            if not os.access(p, os.W_OK | os.X_OK):
                raise OutputError(f"{what} path {target}: folder {p} is not writable")
            break
    if target.exists() and not os.access(target, os.W_OK) and not os.access(parent, os.W_OK):
        raise OutputError(f"{what} path {target} is read-only")
    return target


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s folder; on success rename it to ``target``.

    On any error the temporary file is removed and ``target`` is left as it was. The file ends with
    the existing target's mode, or the umask's default mode for a new file.
    """
    target = check_writable(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror or e}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        mode = target.stat().st_mode & 0o7777 if target.is_file() else default_file_mode()
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``target`` atomically."""
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


def atomic_write_text(target: str | Path, text: str) -> Path:
    return atomic_write(target, lambda p: p.write_text(text, encoding="utf-8"))


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` atomically (Linux ``renameat2``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a new empty folder beside ``target``; on success it replaces ``target`` as a whole.

    Files already in ``target`` that the new folder does not hold are carried over (a model card,
    say), so only what was written changes, and it changes together: a reader sees either the old
    set of files or the new one. If ``target`` exists it is renamed aside and removed after the
    swap. On Linux the swap is one atomic ``renameat2(RENAME_EXCHANGE)``; elsewhere it is two renames,
    and a crash between them leaves the complete old folder at ``.<name>.old-*/d`` beside ``target``.
    On error ``target`` is untouched.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target} exists and is not a folder")
    check_writable(target / "_", what="checkpoint folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror or e}") from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if target.is_dir():
            for old in target.iterdir():
                if not (tmp / old.name).exists():
                    (shutil.copytree if old.is_dir() else shutil.copy2)(old, tmp / old.name)
            if _exchange(tmp, target):  # one atomic step on Linux: tmp now holds the old folder
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                os.replace(target, aside / "d")
                os.replace(tmp, target)
                shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
