"""Several inputs on the command line: the files that paths, shell globs and folders name, and
a run over them that prints a line per file (name, bytes, bpp, time) and says why any file of a
folder is skipped."""

from __future__ import annotations

import glob
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click

from ._safeio import OutputRefused, atomic_write, check_output

_GLOB = set("*?[")


@dataclass
class Inputs:
    files: list = field(default_factory=list)  # Paths to code
    skipped: list = field(default_factory=list)  # (name, why) of the files of a folder left out
    batch: bool = False  # a folder, a glob or several paths: outputs go to a folder, a line per file


def expand(args, skip_why: Callable[[Path], str | None]) -> Inputs:
    """The files the arguments name: a file as it is; a folder's files, those skip_why(path)
    accepts (returns None for); a pattern (quoted, so the shell left it) the files it matches.
    A missing path or a pattern that matches nothing: click.BadParameter (exit code 2)."""
    found = Inputs(batch=len(args) > 1)
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found.batch = True
            for p in sorted(path.iterdir()):
                why = "a folder (folders are not searched)" if p.is_dir() else skip_why(p)
                if why:
                    found.skipped.append((str(p), why))
                else:
                    found.files.append(p)
        elif path.exists():
            found.files.append(path)
        elif _GLOB & set(arg):
            matches = sorted(Path(m) for m in glob.glob(arg) if Path(m).is_file())
            if not matches:
                raise click.BadParameter(f"no file matches {arg!r}", param_hint="IN")
            found.batch, found.files = True, found.files + matches
        else:
            raise click.BadParameter(f"{arg!r} does not exist", param_hint="IN")
    return found


def output_dir(output: str | None, file_suffix: str) -> Path | None:
    """The folder a batch writes to (made if missing), or None: beside each input. A name with
    the suffix of the files written is taken for a mistake, not a folder to make."""
    if output is None:
        return None
    out = Path(output)
    if output == "-" or (out.exists() and not out.is_dir()) or (not out.exists() and out.suffix.lower() == file_suffix):
        raise click.BadParameter(f"several inputs need a folder for -o, not {output!r}", param_hint="'-o' / '--output'")
    out.mkdir(parents=True, exist_ok=True)
    return out


def run(verb: str, inputs: Inputs, out_dir: Path | None, out_suffix: str, force: bool, quiet: bool,
        work: Callable[[Path], tuple[bytes, int, float | None]], describe: Callable, debug: bool) -> list:
    """Apply work (path -> (output bytes, bytes to report, bpp)) to every input; a line per file
    and one in all on stderr (none with quiet, errors aside). Returns the failures' exit codes."""
    from tqdm import tqdm

    say = (lambda line: None) if quiet else (lambda line: tqdm.write(line, file=sys.stderr))
    for name, why in inputs.skipped:
        say(f"skipped {name}: {why}")
    planned: dict = {}
    input_set = {p.resolve() for p in inputs.files}
    failures, total, bpps, ok, t_all = [], 0, [], 0, time.perf_counter()
    bar = tqdm(inputs.files, desc=verb, unit="img", file=sys.stderr, disable=True if quiet else None, leave=False)
    try:
        for src in bar:
            out = (out_dir if out_dir is not None else src.parent) / (src.stem + out_suffix)
            t0 = time.perf_counter()
            try:
                key = out.resolve()
                if key in planned:
                    raise OutputRefused(f"output {out} would also be written from {planned[key].name}")
                planned[key] = src
                if key in input_set:
                    raise OutputRefused(f"refusing to overwrite the input file {out}")
                check_output(out, [src], force)
                data, counted, bpp = work(src)
                atomic_write(out, data, force=force, inputs=[src])
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
                if debug:
                    raise
                msg, code = describe(exc)
                failures.append(code)
                tqdm.write(f"selfcodec: error: {src}: {msg}", file=sys.stderr)
                continue
            ok, total = ok + 1, total + counted
            bpps += [bpp] if bpp is not None else []
            say(f"{src} -> {out}: {counted} bytes, {fmt_bpp(bpp)}, {time.perf_counter() - t0:.2f} s")
    finally:
        bar.close()
    mean = sum(bpps) / len(bpps) if bpps else None
    say(f"{verb} {ok} ok, {len(failures)} failed, {len(inputs.skipped)} skipped, {total} bytes, "
        f"mean {fmt_bpp(mean)}, {time.perf_counter() - t_all:.1f} s")
    return failures


def fmt_bpp(bpp: float | None) -> str:
    return f"{bpp:.4f} bpp" if bpp is not None else "? bpp"
