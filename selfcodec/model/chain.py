"""The selfVAE's chain, written once.

    û -> images[0] | û -> z_1 | images[0], û -> images[1] | images[0], z_1 -> ... -> x | images[K-1], z_K

Training (the ELBO and the rate-distortion objective), the codec's walks (plain and layered),
the encoder-side latent search and generation all run this one chain; they differ only in how
each variable is obtained, which a Walker says: drawn from the posterior, quantized, coded
or decoded through an entropy coder, the prior's mean, a point estimate of the likelihood, or
the true image. The networks each step calls (model.p_img0, p_z, p_img) are handed to the
walker as thunks, so a walker that does not need one (a latent it already knows, an image it
never reconstructs) does not pay for it.
"""

from functools import partial

from ..entropy.latent_parts import WholePart

WHOLE = WholePart()


class Walker:
    """How one use of the chain obtains its variables. Subclasses override what they need."""

    def u(self, model):
        """The top latent û (or u)."""
        raise NotImplementedError

    def z(self, model, k: int, prior, img_prev, prev):
        """z_k; prior() -> (mean, log_scale) of p(z_k | images[k-1], the latent below)."""
        raise NotImplementedError

    def image(self, model, k: int, decode, img_prev):
        """images[k], the value the chain continues with; decode() -> (DMoL params, features)
        of p(images[k] | ...)."""
        raise NotImplementedError

    def stop(self, model, k: int, imgs: list) -> bool:
        """Whether the chain ends before images[k] (k >= 1), with imgs the images so far."""
        return False


def run(model, walker: Walker) -> list:
    """Walk the chain; returns [images[0], ..., images[K]] as the walker obtained them (fewer
    if the walker stopped early)."""
    u = walker.u(model)
    imgs = [walker.image(model, 0, partial(model.p_img0, u, features=True), None)]
    prev = u
    for k in range(1, model.cfg.scales + 1):
        if walker.stop(model, k, imgs):
            break
        img_prev = imgs[k - 1]
        prev = walker.z(model, k, partial(model.p_z, k, img_prev, prev), img_prev, prev)
        imgs.append(walker.image(model, k, partial(model.p_img, k, prev, img_prev, features=True), img_prev))
    return imgs


def by_slices(model, k: int, mean, log_scale, one):
    """A latent (k = 0: û, k >= 1: ẑ_k) obtained part by part under its prior: one(part, mean,
    log_scale) -> that part of the latent as the decoders read it (part.of(t) takes the part out
    of a tensor laid out as the latent, part.step(step) its quantization steps), each part's
    prior given the parts before it (a latent context: entropy/channel_context.py's channel
    slices, entropy/checkerboard.py's two halves). A model without a context makes one call
    with the whole latent's prior."""
    ctx = model.latent_context(k)
    if ctx is None:
        return one(WHOLE, mean, log_scale)
    known = []
    for i, part in enumerate(ctx.parts):
        m, ls = ctx.part_prior(i, mean, log_scale, known)
        known.append(one(part, m, ls))
    return ctx.join(known)
