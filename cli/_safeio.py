"""Safe output for the command line: no clobbering, atomic writes, nothing left behind."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


class OutputRefused(Exception):
    """An output path the CLI will not write (exists without --force, is the input...)."""


def same_file(a: Path, b: Path) -> bool:
    """True if ``a`` and ``b`` name the same file (after resolving links, or same inode)."""
    try:
        if a.resolve() == b.resolve():
            return True
    except OSError:
        pass
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(out: Path, inputs: list[Path], force: bool) -> None:
    """Refuse ``out`` if it is one of ``inputs`` (always) or exists (without ``force``)."""
    for src in inputs:
        if same_file(out, src):
            raise OutputRefused(f"refusing to overwrite the input file {src}")
    if out.is_dir():
        raise OutputRefused(f"output {out} is a directory")
    if not force and (out.exists() or out.is_symlink()):
        raise OutputRefused(f"output {out} exists (use --force to overwrite)")


def _umask() -> int:
    m = os.umask(0o022)
    os.umask(m)
    return m


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, force: bool, inputs: list[Path] = ()) -> None:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same directory, which is fsynced and then
    renamed over ``path``: a reader (or a crash) sees the old file or the whole new one.
    Without ``force`` an existing ``path`` is never replaced, even if it appears while
    we write (the final step is ``link``, which fails if the name exists).  The temporary
    file is removed on any failure, KeyboardInterrupt included.
    """
    path = Path(path)
    check_output(path, list(inputs), force)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as e:  # report the directory, not the random temporary name
        raise OSError(e.errno, e.strerror, str(directory)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputRefused(f"output {path} exists (use --force to overwrite)") from None
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                # File system without hard links: check-then-rename (small race window).
                if path.exists():
                    raise OutputRefused(f"output {path} exists (use --force to overwrite)") from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
        _fsync_dir(directory)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
