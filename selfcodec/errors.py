"""The codec's own exceptions; the CLI maps each to an exit code."""


class CodecError(Exception):
    """Base class of every error selfcodec raises on purpose."""

    exit_code = 1


class UnsupportedImageError(CodecError):
    """The input image cannot be coded without loss of information the user asked to keep."""

    exit_code = 3


class FormatError(CodecError):
    """A .svae file is truncated, corrupt or not a .svae file at all."""

    exit_code = 4


class TooManyPixelsError(FormatError):
    """A .svae file declares more pixels than the decoder was allowed (``max_pixels``)."""


class ModelMismatchError(CodecError):
    """The file was written with other weights than the ones available to decode it."""

    exit_code = 5


class ChecksumError(CodecError):
    """Decoded data does not match the checksum the encoder stored."""

    exit_code = 6


class NeedsLossyConvertError(UnsupportedImageError):
    """The image can be coded only after a lossy conversion, which the caller has to allow."""

    def __init__(self, problem: str, advice: str = "convert it to 8-bit RGB, RGBA or grayscale first",
                 option: str = "allow_lossy_convert=True") -> None:
        self.problem, self.advice = problem, advice
        super().__init__(f"{problem}; {advice} (or pass {option})")

    def naming(self, option: str) -> "NeedsLossyConvertError":
        """The same error, naming another way to allow the conversion (the command line's flag)."""
        return NeedsLossyConvertError(self.problem, self.advice, option)


class TargetMissedWarning(UserWarning):
    """encode(target_size=...) or encode(target_psnr=...) met no level: the closest file was returned."""
