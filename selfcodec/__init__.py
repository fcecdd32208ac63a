"""selfcodec: a learned image codec built on self-supervised VAEs (selfVAE)."""

__version__ = "0.1.0"
