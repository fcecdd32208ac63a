"""Safe output for the command line: no clobbering, atomic writes, nothing left behind."""

from __future__ import annotations

import os
from pathlib import Path

from selfcodec import fileio


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


def atomic_write(path: Path, data: bytes, *, force: bool, inputs: list[Path] = ()) -> None:
    """Write ``data`` to ``path`` atomically (see selfcodec.fileio.atomic_write), refusing
    an input file always and an existing file without ``force``."""
    path = Path(path)
    check_output(path, list(inputs), force)
    try:
        fileio.atomic_write(path, data, overwrite=force)
    except FileExistsError:
        raise OutputRefused(f"output {path} exists (use --force to overwrite)") from None
