"""The ``selfcodec`` command line.

Commands: ``encode``, ``decode``, ``info`` (here) and the commands other modules under
``cli/`` register at the bottom of this file.  ``-`` as input reads stdin, as output
writes stdout.  Outputs are written atomically (temporary file in the same directory,
fsync, rename), never replace an existing file without ``--force``, never replace an
input file even with ``--force``, and nothing is left behind when a command fails or
is interrupted.

Exit codes
----------

=====  =====================================================================
code   meaning
=====  =====================================================================
0      success
1      other codec error, or an internal error (a bug: run again with
       ``SELFCODEC_DEBUG=1`` for the traceback)
2      usage error, or an I/O error: missing input, output exists (without
       ``--force``) or is the input, permission denied, disk full ...
3      unsupported input image: not an image, truncated, too large, 16-bit
       samples not exact in 8 bits, CMYK, animation ...
4      corrupt or truncated ``.svae`` file, not a ``.svae`` file, or one
       that declares more pixels than ``decode --max-pixels`` allows
5      model mismatch: the file was written with other weights than the
       ones available to decode it
6      checksum mismatch: decoded data differ from what the encoder stored
130    interrupted (Ctrl-C)
=====  =====================================================================

In batch mode (several inputs, a glob or a directory; see cli/batch.py) every file is tried,
with a line per file; the exit code is 0 if all succeeded, else the code of the failures if they
all share one, else 1. A directory's files that the command does not take are listed as skipped.

Errors are printed as one line ``selfcodec: error: <message>`` on stderr, without a
traceback unless the environment variable ``SELFCODEC_DEBUG`` is set to 1.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from selfcodec import __version__
from selfcodec.errors import CodecError

from . import batch
from ._safeio import OutputRefused, atomic_write, check_output

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE_IO = 2
EXIT_INTERRUPTED = 130

SVAE_SUFFIX = ".svae"
# Shown in --help without importing the codec; the values are checked against
# selfcodec.api.MODES / LEVELS when a command runs.
_MODES_HELP = "rec1, rec2, cgen, crec, lossless"
_DEFAULT_LEVEL = 3
_DEFAULT_MODE = "rec2"  # the API's default mode
_TILE, _MAX_TILE = 1024, 2048  # selfcodec.codec.files.TILE and MAX_TILE (that module loads torch)


def _debug() -> bool:
    return os.environ.get("SELFCODEC_DEBUG", "") not in ("", "0")


def _api():
    # import_module returns sys.modules' entry, so tests can swap in a fake module.
    return importlib.import_module("selfcodec.api")


# --------------------------------------------------------------------------- errors


class CliError(click.ClickException):
    """An error shown as one line ``selfcodec: error: ...`` with its own exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(_one_line(message))
        self.exit_code = exit_code

    def show(self, file=None) -> None:  # noqa: D102 - click API
        click.echo(f"selfcodec: error: {self.format_message()}", err=True)


def _one_line(msg: str) -> str:
    return " ".join(part.strip() for part in str(msg).splitlines() if part.strip())


def describe(exc: BaseException) -> tuple[str, int]:
    """(one-line message, exit code) for an exception a command let through."""
    if isinstance(exc, CodecError):
        return _one_line(str(exc) or type(exc).__name__), int(getattr(exc, "exit_code", EXIT_ERROR))
    if isinstance(exc, OutputRefused):
        return _one_line(str(exc)), EXIT_USAGE_IO
    if isinstance(exc, OSError):
        if exc.strerror and exc.filename is not None:
            msg = f"{exc.filename}: {exc.strerror}"
        else:
            msg = exc.strerror or str(exc) or type(exc).__name__
        return _one_line(msg), EXIT_USAGE_IO
    if isinstance(exc, MemoryError):
        return "out of memory", EXIT_ERROR
    return (
        _one_line(f"internal error: {type(exc).__name__}: {exc} (set SELFCODEC_DEBUG=1 for a traceback)"),
        EXIT_ERROR,
    )


def _quiet_broken_pipe() -> None:
    # stdout's reader went away (`selfcodec decode x.svae -o - | head -c 10`): point
    # stdout at /dev/null so that the interpreter's final flush does not complain.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


# --------------------------------------------------------------------------- group


class SelfcodecGroup(click.Group):
    """A click group that maps exceptions to exit codes and loads commands lazily.

    ``lazy_commands`` maps a command name to ``("module:attribute", "short help")``; the
    module is imported only when that command is run (or its own help is shown).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, tuple[str, str]] = {}

    def register_lazy(self, name: str, target: str, short_help: str = "") -> None:
        self.lazy_commands[name] = (target, short_help)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is None and name in self.lazy_commands:
            target, _ = self.lazy_commands[name]
            module_name, _, attr = target.partition(":")
            cmd = getattr(importlib.import_module(module_name), attr or name)
            self.add_command(cmd, name)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        limit = formatter.width - 6 - max((len(n) for n in self.list_commands(ctx)), default=0)
        for name in self.list_commands(ctx):
            if name in self.commands:
                cmd = self.commands[name]
                if cmd.hidden:
                    continue
                rows.append((name, cmd.get_short_help_str(limit)))
            else:
                rows.append((name, self.lazy_commands[name][1]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            if _debug():
                raise
            click.echo("selfcodec: interrupted", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:  # noqa: BLE001 - the whole point: one line, an exit code
            if _debug():
                raise
            if isinstance(exc, BrokenPipeError):
                _quiet_broken_pipe()
            msg, code = describe(exc)
            raise CliError(msg, code) from None


@click.group(cls=SelfcodecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="selfcodec", message="%(prog)s %(version)s")
def main() -> None:
    """selfcodec: a learned image codec built on self-supervised VAEs.

    Set SELFCODEC_DEBUG=1 to see tracebacks.  Exit codes: 0 ok, 1 codec error,
    2 usage or I/O error, 3 unsupported image, 4 corrupt file, 5 model mismatch,
    6 checksum mismatch, 130 interrupted.
    """


# --------------------------------------------------------------------------- helpers


def _stdin_bytes() -> bytes:
    return getattr(sys.stdin, "buffer", sys.stdin).read()


def _write_stdout(data: bytes, force: bool) -> None:
    sys.stdout.flush()
    stream = getattr(sys.stdout, "buffer", sys.stdout)
    isatty = getattr(stream, "isatty", lambda: False)
    if not force and isatty():
        raise CliError("refusing to write binary data to a terminal (redirect it, use -o FILE, or --force)", EXIT_USAGE_IO)
    stream.write(data)
    stream.flush()


def _emit(data: bytes, out: str, *, force: bool, inputs: list[Path]) -> None:
    if out == "-":
        _write_stdout(data, force)
    else:
        atomic_write(Path(out), data, force=force, inputs=inputs)


def _bpp(nbytes: int, width: Any, height: Any) -> float | None:
    try:
        pixels = int(width) * int(height)
    except (TypeError, ValueError):
        return None
    return nbytes * 8 / pixels if pixels > 0 else None


def _encoded_bpp(svae: bytes) -> float | None:
    try:
        meta = _file_info(svae)
    except Exception:  # noqa: BLE001 - the summary line is a courtesy only
        return None
    return _bpp(len(svae), meta.get("width"), meta.get("height"))


def _file_info(data: bytes) -> dict:
    # import_module returns sys.modules' entry, so tests can swap in a fake module.
    return dict(importlib.import_module("selfcodec.codec.fileinfo").info(data))


def _check_how(mode: str, level: float | None, quality: float | None, target_size: int | None,
               target_psnr: float | None) -> dict:
    """The API's options for the mode and how good a file is; a mode, level, quality or target no
    model has, or two of them at once, is refused before torch loads (selfcodec.codec.plans is torch-free)."""
    from selfcodec.codec import plans

    if mode not in plans.MODES:
        raise click.BadParameter(f"{mode!r} is not one of {', '.join(plans.MODES)}", param_hint="'-m' / '--mode'")
    given = {"--level": level, "--quality": quality, "--target-size": target_size, "--target-psnr": target_psnr}
    named = [k for k, v in given.items() if v is not None]
    if len(named) > 1:
        short = {"--level": "-l", "--quality": "-q"}
        raise click.UsageError(f"give one of -q (quality), -l (level), --target-size and --target-psnr, "
                               f"not {' and '.join(short.get(k, k) for k in named)}")
    hints = {"--level": "'-l' / '--level'", "--quality": "'-q' / '--quality'", "--target-size": "'--target-size'",
             "--target-psnr": "'--target-psnr'"}
    try:
        if level is not None:
            level = plans.as_level(level)
        if quality is not None:
            plans.check_quality(quality)
        plans.check_target(target_size, target_psnr)
    except CodecError as e:
        extra = (f" (a 0-100 quality, as cwebp's -q, is -q {level:g})"
                 if level is not None and plans.QUALITY_RANGE[0] <= level <= plans.QUALITY_RANGE[1] else "")
        raise click.BadParameter(f"{e}{extra}", param_hint=hints[named[0]]) from None
    if named and named[0].startswith("--target") and mode == "lossless":
        raise click.BadParameter("a lossless file's size is the image's: aim with a lossy mode (rec2)",
                                 param_hint=hints[named[0]])
    if not named:
        return {"level": _DEFAULT_LEVEL}
    api_name = {"--level": "level", "--quality": "quality", "--target-size": "target_size", "--target-psnr": "target_psnr"}
    return {api_name[named[0]]: level if named[0] == "--level" else given[named[0]]}


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _say(quiet: bool, line: str) -> None:
    if not quiet:
        click.echo(line, err=True)


def _warn(quiet: bool, line: str) -> None:
    _say(quiet, f"selfcodec: warning: {line}")


def _single_output(input: str, output: str | None, suffix: str) -> str:
    """Output path of a one-file command: -o, else IN with ``suffix`` (stdout for stdin).

    An existing directory as -o receives the file under IN's name.
    """
    if output is None:
        return "-" if input == "-" else str(Path(input).with_suffix(suffix))
    if output != "-" and Path(output).is_dir():
        stem = "stdin" if input == "-" else Path(input).stem
        return str(Path(output) / (stem + suffix))
    return output


def _decoded_format(out: str) -> str:
    from selfcodec.imageio import output_format

    if out == "-":
        return "PNG"
    fmt = output_format(out)
    if fmt is None:
        raise click.BadParameter(
            f"cannot write {Path(out).suffix or 'a file without suffix'}: name an image format Pillow writes "
            "(.png, .tif, .webp and .bmp keep every pixel; .jpg and .avif are lossy)",
            param_hint="'-o' / '--output'",
        )
    return fmt


def _check_svae_output(out: str) -> None:
    """encode writes .svae bytes: refuse an output named like another format's file (x.webp)."""
    if out != "-" and Path(out).suffix.lower() != SVAE_SUFFIX:
        raise click.BadParameter(
            f"{out}: encode writes .svae files, so the output's name must end in {SVAE_SUFFIX} "
            f"(an image in another format comes from decoding one: selfcodec decode IN.svae -o {Path(out).name})",
            param_hint="'-o' / '--output'")


def _image_file(path: Path) -> str | None:
    """Why encode skips a file of a folder (None: it tries it): it takes what Pillow reads."""
    from PIL import Image

    Image.init()
    suffix = path.suffix.lower()
    if suffix == SVAE_SUFFIX:
        return "already a .svae file"
    if suffix not in Image.registered_extensions():
        return f"not an image file type Pillow reads ({suffix or 'no suffix'})"
    return None


def _svae_file(path: Path) -> str | None:
    return None if path.suffix.lower() == SVAE_SUFFIX else "not a .svae file"


def _expand(inputs: tuple, skip_why: Callable, verb: str) -> batch.Inputs:
    found = batch.expand(inputs, skip_why)
    if not found.files:
        why = "; ".join(f"{Path(name).name}: {reason}" for name, reason in found.skipped[:3])
        raise CliError(f"no files to {verb} in {', '.join(inputs)}" + (f" ({why})" if why else ""), EXIT_USAGE_IO)
    return found


def _finish_batch(failures: list) -> None:
    if failures:
        codes = set(failures)
        raise click.exceptions.Exit(codes.pop() if len(codes) == 1 else EXIT_ERROR)


# --------------------------------------------------------------------------- commands

_in_arg = click.argument("input", metavar="IN", type=click.Path(exists=True, allow_dash=True))
_inputs_arg = click.argument("inputs", metavar="IN...", nargs=-1, required=True)
_force_opt = click.option("-f", "--force", is_flag=True, help="Overwrite existing output files (never the input).")
_model_opt = click.option("--model", metavar="NAME|PATH", default=None, help="Model name or weights file (default: the file's model; encoding: the mode's default, see README).")
_threads_opt = click.option("--threads", type=click.IntRange(min=1), default=None, metavar="N",
                            help="CPU threads for the networks (default: torch's, one per core).")
_verbose_opt = click.option("-v", "--verbose", is_flag=True, help="Say more: the model and each stream's bytes.")
_quiet_opt = click.option("--quiet", is_flag=True, help="Print nothing but errors (no progress, summaries or warnings).")


def _max_pixels_opt(what: str):
    return click.option("--max-pixels", type=click.IntRange(min=0), default=None, metavar="N",
                        help=f"Refuse {what} more than N pixels (0: no limit). Default: twice Pillow's "
                             "PIL.Image.MAX_IMAGE_PIXELS (178,956,970 with Pillow's default), its decompression-bomb guard.")


def _limit(max_pixels: int | None) -> dict:
    return {} if max_pixels is None else {"max_pixels": max_pixels or None}


@main.command()
@_inputs_arg
@click.option("-m", "--mode", default=_DEFAULT_MODE, show_default=True, metavar="MODE", help=f"Coding mode: {_MODES_HELP}.")
@click.option("-q", "--quality", type=float, default=None, metavar="Q",
              help="Quality 0-100, as cwebp's, cjxl's and avifenc's -q (higher: larger file, closer to the image): "
                   "spread linearly over the model's levels, 0 its lowest (level 1), 100 its highest (7), so "
                   "-q 50 is level 4. Default: level 3 (-q 33.3).")
@click.option("-l", "--level", type=float, default=None, metavar="LEVEL",
              help="The model's trained quality level instead, 1-7, fractions too (3.5: between 3 and 4); "
                   "default 3. A model trained with fewer levels says so.")
@click.option("--target-size", type=int, default=None, metavar="BYTES",
              help="The best file of at most BYTES bytes (up to 8 encodes; a warning if none is that small).")
@click.option("--target-psnr", type=float, default=None, metavar="DB",
              help="The smallest file of at least DB dB PSNR (up to 8 encodes; a warning if none reaches it).")
@_model_opt
@click.option("-o", "--output", metavar="OUT", default=None, help="Output .svae file ('-': stdout), or folder for several inputs. Default: IN with suffix .svae.")
@click.option("--verify", is_flag=True, help="Decode after encoding and check the result.")
@click.option("--search", type=click.IntRange(min=0), default=0, show_default=True, metavar="STEPS",
              help="rec2 only: spend STEPS gradient steps per tile looking for latents that cost fewer bits "
                   "at the same quality (e.g. 30: files about 0.5 % smaller on Kodak for 30x the encoding time). "
                   "Any decoder reads the result.")
@click.option("--tile", type=click.IntRange(16, _MAX_TILE), default=None, metavar="N",
              help=f"Side of the square tiles the image is coded in, pixels, 16-{_MAX_TILE} (default {_TILE}; "
                   "rounded down to the model's multiple, 64 for the default when there are several): each tile "
                   "has its own streams, coded under priors computed over the whole image, and the image is "
                   "synthesised across the tiles, so no border shows and the image is the same whatever the tile "
                   "size; smaller tiles cost a little more rate.")
@click.option("--strip", is_flag=True, help="Leave out the ICC profile, EXIF and XMP (kept by default).")
@click.option("--allow-lossy-convert", is_flag=True,
              help="Code 16-bit, CMYK, float or animated input after a lossy conversion to 8 bits (first frame) "
                   "instead of refusing it.")
@_max_pixels_opt("an image of")
@_threads_opt
@_verbose_opt
@_quiet_opt
@_force_opt
def encode(inputs: tuple, mode: str, level: float | None, quality: float | None, target_size: int | None,
           target_psnr: float | None, model: str | None, output: str | None, verify: bool, search: int,
           tile: int | None, strip: bool, allow_lossy_convert: bool, max_pixels: int | None, threads: int | None,
           verbose: bool, quiet: bool, force: bool) -> None:
    """Encode the image IN to .svae; several images, a glob or a folder: each to OUT/NAME.svae."""
    how = _check_how(mode, level, quality, target_size, target_psnr)  # before torch loads
    options = {**_limit(max_pixels), **({"strip": True} if strip else {}), **({"tile": tile} if tile else {}),
               **({"allow_lossy_convert": True} if allow_lossy_convert else {})}

    def run(src: Any) -> bytes:
        import warnings

        from selfcodec.errors import NeedsLossyConvertError, TargetMissedWarning

        api = _api()
        _set_threads(threads)
        try:
            with warnings.catch_warnings(record=True) as missed:
                warnings.simplefilter("always", TargetMissedWarning)
                svae = api.encode(src, mode=mode, model=model, verify=verify, search=search, **how, **options)
        except NeedsLossyConvertError as e:
            raise e.naming("--allow-lossy-convert") from None
        for w in missed:
            if issubclass(w.category, TargetMissedWarning):
                _warn(quiet, f"{src + ': ' if isinstance(src, str) else ''}{w.message}")
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if verbose:
            _say(quiet, f"  {_describe_file(svae)}")
        return svae

    if inputs == ("-",):
        _encode_one("-", output, run, force, quiet, mode)
        return
    found = _expand(inputs, _image_file, "encode")
    if not found.batch:
        _encode_one(str(found.files[0]), output, run, force, quiet, mode)
        return

    def work(p: Path) -> tuple[bytes, int, float | None]:
        svae = run(str(p))
        return svae, len(svae), _encoded_bpp(svae)

    out_dir = batch.output_dir(output, SVAE_SUFFIX)
    _finish_batch(batch.run("encoded", found, out_dir, SVAE_SUFFIX, force, quiet, work, describe, _debug()))


def _encode_one(input: str, output: str | None, run: Callable, force: bool, quiet: bool, mode: str) -> None:
    inputs = [] if input == "-" else [Path(input)]
    out = _single_output(input, output, SVAE_SUFFIX)
    if out != "-":
        check_output(Path(out), inputs, force)  # fail before the (slow) encoding
    _check_svae_output(out)
    t0 = time.perf_counter()
    svae = run(_stdin_bytes() if input == "-" else input)
    _emit(svae, out, force=force, inputs=inputs)
    if out != "-":
        name = "<stdin>" if input == "-" else input
        _say(quiet, f"{name} -> {out}: {len(svae)} bytes, {batch.fmt_bpp(_encoded_bpp(svae))}, "
                    f"{time.perf_counter() - t0:.2f} s ({mode}, level {_file_level(svae)})")


def _file_level(svae: bytes) -> str:
    try:
        return f"{_file_info(svae)['level']:g}"
    except Exception:  # noqa: BLE001 - the summary line is a courtesy only
        return "?"


def _describe_file(svae: bytes) -> str:
    """A line for -v: the model, mode, level, each stream's bytes and the metadata kept."""
    meta = _file_info(svae)
    streams = ", ".join(f"{k} {v}" for k, v in meta.get("streams", {}).items())
    kept = ", ".join(f"{k} {v}" for k, v in meta.get("metadata", {}).items()) or "none"
    return (f"model {meta.get('model')}, {meta.get('mode')} level {meta.get('level')}, streams (bytes): {streams}; "
            f"metadata (bytes): {kept}")


@main.command()
@_inputs_arg
@click.option("-o", "--output", metavar="OUT", default=None,
              help="Output image, in any format Pillow writes ('-': PNG on stdout), or folder for several inputs "
                   "(PNG files). Default: IN with suffix .png.")
@_model_opt
@_max_pixels_opt("a file that declares")
@click.option("--partial", is_flag=True,
              help="Decode a layered file cut anywhere after its first layer to the image of its last complete "
                   "layer (stderr says which mode that is); without it a cut file is an error.")
@click.option("--device", default="cpu", show_default=True, metavar="DEVICE",
              help="Run the synthesis of the image on this device (cuda: a GPU); the probability path stays "
                   "exact on the CPU, so the file decodes the same.")
@_threads_opt
@_verbose_opt
@_quiet_opt
@_force_opt
def decode(inputs: tuple, output: str | None, model: str | None, max_pixels: int | None, partial: bool, device: str,
           threads: int | None, verbose: bool, quiet: bool, force: bool) -> None:
    """Decode the .svae file IN to an image; several files, a glob or a folder: each to OUT/NAME.png."""
    limit = _limit(max_pixels)
    on = {} if device == "cpu" else {"device": device}

    def run(data: bytes, fmt: str, out: str) -> tuple[bytes, float | None]:
        _check_declared_pixels(data, **limit)  # before torch and the model are loaded
        from selfcodec import metadata
        from selfcodec.imageio import image_to_bytes, is_lossless, to_pil

        if verbose:
            _say(quiet, f"  {_describe_file(data)}")
        _set_threads(threads)
        if partial:
            rgb, meta = _api().decode_rgb(data, model=model, partial=True, **on, **limit)
            img = to_pil(rgb, meta)
            _say(quiet, f"partial file: decoded its layers up to {meta.mode}")
        else:
            img = _api().decode(data, model=model, **on, **limit)
        if not is_lossless(fmt):
            _warn(quiet, f"{out}: {fmt} does not keep every decoded pixel as it is (lossy, or fewer colours); "
                         "write .png, .tif or .webp for that")
        dropped = metadata.dropped(fmt, metadata.of(img))
        if dropped:
            _warn(quiet, f"{out}: {fmt} cannot hold the file's {', '.join(dropped)}; they are not written "
                         "(PNG, TIFF, WebP and JPEG can)")
        return image_to_bytes(img, fmt), _bpp(len(data), img.width, img.height)

    if inputs == ("-",):
        _decode_one("-", output, run, force, quiet, limit)
        return
    found = _expand(inputs, _svae_file, "decode")
    if not found.batch:
        _decode_one(str(found.files[0]), output, run, force, quiet, limit)
        return

    def work(p: Path) -> tuple[bytes, int, float | None]:
        data = p.read_bytes()
        png, bpp = run(data, "PNG", str(p.with_suffix(".png")))
        return png, len(data), bpp

    out_dir = batch.output_dir(output, ".png")
    _finish_batch(batch.run("decoded", found, out_dir, ".png", force, quiet, work, describe, _debug()))


def _decode_one(input: str, output: str | None, run: Callable, force: bool, quiet: bool, limit: dict) -> None:
    inputs = [] if input == "-" else [Path(input)]
    out = _single_output(input, output, ".png")
    if out != "-":
        check_output(Path(out), inputs, force)
    if input != "-":  # refuse a huge declared size before the image and codec modules load
        data = Path(input).read_bytes()
        _check_declared_pixels(data, **limit)
    fmt = _decoded_format(out)
    if input == "-":
        data = _stdin_bytes()
    t0 = time.perf_counter()
    image_bytes, bpp = run(data, fmt, out)
    _emit(image_bytes, out, force=force, inputs=inputs)
    if out != "-":
        name = "<stdin>" if input == "-" else input
        _say(quiet, f"{name} -> {out}: {len(data)} bytes read, {batch.fmt_bpp(bpp)}, {time.perf_counter() - t0:.2f} s")


def _check_declared_pixels(data: bytes, **limit: Any) -> None:
    """Refuse a file whose header declares too many pixels, reading the header only (torch-free);
    a file whose header cannot be read is left to the decoder, which says why."""
    from selfcodec.codec.container import peek_header
    from selfcodec.limits import check_pixels

    try:
        header = peek_header(data)
    except CodecError:
        return
    check_pixels(header, **limit)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


_INFO_ORDER = ("model", "mode", "level", "width", "height", "colour", "bytes", "bpp")


@main.command()
@_in_arg
@click.option("--json", "as_json", is_flag=True, help="Print the information as JSON.")
def info(input: str, as_json: bool) -> None:
    """Show what is inside the .svae file IN (model, mode, size, streams ...)."""
    if input != "-" and Path(input).is_dir():
        raise click.BadParameter("info takes a .svae file, not a directory", param_hint="IN")
    data = _stdin_bytes() if input == "-" else Path(input).read_bytes()
    meta = _file_info(data)  # torch-free: info answers at once
    if as_json:
        click.echo(json.dumps(meta, indent=2, default=_jsonable))
        return
    keys = [k for k in _INFO_ORDER if k in meta] + [k for k in meta if k not in _INFO_ORDER]
    width = max(len(k) for k in keys) + 1 if keys else 0
    click.echo(f"{'file':<{width}} {'<stdin>' if input == '-' else input}")
    for key in keys:
        value = meta[key]
        if key == "layers" and isinstance(value, list):
            click.echo(f"{key + ':':<{width}} (truncate -m MODE cuts the file to a layer's mode; decode --partial "
                       "reads any prefix that holds a whole layer)")
            for layer in value:
                click.echo(f"  {layer['name']}: {layer['bytes']} bytes, up to byte {layer['ends_at_byte']}: "
                           f"{layer['mode']}")
        elif isinstance(value, dict):
            click.echo(f"{key + ':':<{width}}")
            total = sum(v for v in value.values() if isinstance(v, (int, float))) or 0
            for name, v in value.items():
                if key == "streams" and isinstance(v, int) and total:
                    click.echo(f"  {name}: {v} bytes ({100 * v / total:.1f}%)")
                else:
                    click.echo(f"  {name}: {_jsonable(v) if isinstance(v, (bytes, bytearray)) else v}")
        elif key == "bpp" and isinstance(value, float):
            click.echo(f"{key + ':':<{width}} {value:.4f}")
        else:
            click.echo(f"{key + ':':<{width}} {_jsonable(value) if isinstance(value, (bytes, bytearray)) else value}")


@main.command()
@_in_arg
@click.option("-m", "--mode", required=True, type=click.Choice(["crec", "rec2", "rec1", "crec-y1"]),
              help="The lower mode to cut the file down to.")
@click.option("-o", "--output", metavar="OUT", default=None, help="Output .svae file ('-': stdout). Default: IN.MODE.svae.")
@_force_opt
def truncate(input: str, mode: str, output: str | None, force: bool) -> None:
    """Cut the layered (lossless) .svae file IN down to a file of a lower MODE, dropping layers:
    no model runs."""
    from selfcodec.codec.layered import truncate as cut

    if input != "-" and Path(input).is_dir():
        raise click.BadParameter("truncate takes a .svae file, not a directory", param_hint="IN")
    inputs = [] if input == "-" else [Path(input)]
    out = output or ("-" if input == "-" else str(Path(input).with_suffix(f".{mode}{SVAE_SUFFIX}")))
    if out != "-":
        check_output(Path(out), inputs, force)
    _check_svae_output(out)
    data = _stdin_bytes() if input == "-" else Path(input).read_bytes()
    cut_data = cut(data, mode)
    _emit(cut_data, out, force=force, inputs=inputs)
    if out != "-":
        click.echo(f"{'<stdin>' if input == '-' else input} -> {out}: {len(data)} -> {len(cut_data)} bytes ({mode})",
                   err=True)


# --------------------------------------------------------------------------- more commands
#
# Commands that live in their own modules under cli/ register here, one line each:
#
#     main.register_lazy("NAME", "selfcodec.cli.MODULE:COMMAND_OBJECT", "one-line help")
#
# The module is imported only when the command runs (or `selfcodec NAME --help`), so
# `selfcodec --help` and encode/decode stay fast.  A module may also simply call
# `main.add_command(cmd)` if it is imported anyway.  Exceptions a command lets through
# get the same one-line message and exit code as the commands above.


main.register_lazy("train", "selfcodec.cli.model_cmds:train", "Train a model (resumable, DDP via torchrun).")
main.register_lazy("eval-bpd", "selfcodec.cli.model_cmds:eval_bpd_cmd", "Negative ELBO and IW NLL in bits/dim.")
main.register_lazy("plot-log", "selfcodec.cli.model_cmds:plot_log_cmd", "Plot a training log to PNG.")
main.register_lazy("export", "selfcodec.cli.model_cmds:export_cmd", "Ship a run's EMA weights as a model file.")
main.register_lazy("merge", "selfcodec.cli.model_cmds:merge_cmd", "One model file from a base and parts trained alone on it.")
main.register_lazy("demo", "selfcodec.cli.model_cmds:demo", "Code the bundled sample in every mode.")
main.register_lazy("sample", "selfcodec.cli.generate_cmds:sample_cmd", "Generate images from the prior (grid PNG).")
main.register_lazy("upscale", "selfcodec.cli.generate_cmds:upscale_cmd", "2x/4x super-resolution by conditional generation.")
main.register_lazy("interpolate", "selfcodec.cli.generate_cmds:interpolate_cmd", "Interpolate two images in u, or vary z (--vary-z).")

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="selfcodec")
