"""Entropy models: each distribution the codec codes with is one class that holds its
likelihood for training (torch), the exact tables the coder uses (the same integers on every
machine) and its encode / decode / bits over the rANS coder (coder.Coder):

- gaussian.GaussianConditional: latents (û, ẑ, v̂) under a Gaussian per element, or per
  channel (the factorized prior is the same class with broadcast parameters);
- dmol.DMoL: 8-bit images under a discretized logistic mixture with RGB coupling.

A new prior (e.g. a channel-wise context for ẑ) is a new class beside these, with the same
operations."""
