"""The one place constriction appears: a rANS bitstream (constriction 0.5 AnsCoder, 32-bit
words serialised little-endian, 24-bit probabilities) that holds several sections. Sections
are pushed in reverse decode order: the one decoded first is pushed last. One stream for all
latents of a tile saves each latent its own final coder word, which is most of the size of a
latent that carries (almost) nothing."""

import math

import numpy as np
import constriction

from ..errors import FormatError

Categorical = constriction.stream.model.Categorical
Uniform = constriction.stream.model.Uniform
_AnsCoder = constriction.stream.stack.AnsCoder
_PER_SYMBOL = None


def per_symbol():
    """The Categorical family whose probabilities come with each symbol (non-perfect, as the format fixes)."""
    global _PER_SYMBOL
    if _PER_SYMBOL is None:
        _PER_SYMBOL = Categorical(perfect=False)
    return _PER_SYMBOL


def min_stream_bytes(bits: float) -> int:
    """The fewest bytes a stream whose symbols carry at least `bits` of information can have: the
    coder's 64-bit final state holds no more than 64 of them (a stream of almost certain symbols
    may be empty)."""
    return max(0, math.ceil((bits - 64) / 8))


class Coder:
    """An empty coder to encode into, or one reading `data`."""

    def __init__(self, data: bytes | None = None):
        if data is None:
            self._ans = _AnsCoder()
            return
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("bitstream must be bytes")
        data = bytes(data)
        if len(data) % 4:
            raise FormatError("entropy-coded section has a length that is not a multiple of 4")
        try:
            self._ans = _AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        except Exception as exc:  # constriction raises ValueError on e.g. a trailing zero word
            raise FormatError(f"corrupt entropy-coded section: {exc}") from None

    def push(self, symbols, model, probs=None) -> None:
        """Push symbols (int32) under a fixed model, or under the per-symbol family with `probs`."""
        if probs is None:
            self._ans.encode_reverse(symbols, model)
        else:
            self._ans.encode_reverse(symbols, model, probs)

    def pop(self, model, arg):
        """The next symbols: `arg` of them under a fixed model, or one per row of probabilities
        (or per size of a Uniform) under a family."""
        return self._ans.decode(model, arg)

    def to_bytes(self) -> bytes:
        return np.asarray(self._ans.get_compressed(), dtype=np.uint32).astype("<u4", copy=False).tobytes()

    def check_done(self) -> None:
        """A decoder's check that the stream was used up exactly."""
        if not self._ans.is_empty():
            raise FormatError("corrupt entropy-coded section: data left after decoding")
