"""The paper's DenseNet networks for the selfVAE (Gatopoulos & Tomczak): dense blocks with
weight-normalised convolutions, an optional refine filter on x̂, and context nets that code an
image in three stages per 2x2 block (x_context, y_context). The density-estimation presets use
these; the fast family (fast.py) is the codec's default."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..entropy.dmol import DMoL
from .base import SelfVAE, phase_planes, register_family, stage_mask
from ..nn.flows import RealNVP
from ..nn.blocks import DenseBlock, Down, Up, WNConv2d, scale_image


@register_family("densenet")
class DenseSelfVAE(SelfVAE):
    LEVEL_LISTS = ("enc_z", "prior_img", "prior_lat", "prior_head", "dec_lat", "dec_img", "dec_body")

    def _build_networks(self):
        """The paper's DenseNet networks."""
        cfg = self.cfg
        K, L, ch, g, n = cfg.scales, cfg.latent_down, cfg.ch, cfg.growth, cfg.block_convs
        r_steps = int(math.log2(self.ratio))
        q = 2 if cfg.posterior == "gaussian" else 1

        # u: the latent of the coarsest image, RealNVP prior, DMoL decoder.
        self.enc_u = nn.Sequential(Down(self.img_ch[0], ch, L, g, n), WNConv2d(ch, q * cfg.u_ch, 3, init_scale=0.1))
        self.dec_0 = nn.Sequential(
            WNConv2d(cfg.u_ch, ch, 3), nn.ELU(), Up(ch, L, g, n), DenseBlock(ch, g, n),
            WNConv2d(ch, DMoL.channels(self.img_ch[0], cfg.mixtures), 1, init_scale=0.1),
        )
        self.flow = RealNVP(cfg.u_ch, cfg.flow_hidden, cfg.flow_blocks)  # built here: the seeded init order stays

        # z_k, k = 1..K: the detail of images[k] given images[k-1] and the latent below.
        self.enc_z, self.prior_img, self.prior_lat, self.prior_head = (nn.ModuleList() for _ in range(4))
        self.dec_lat, self.dec_img, self.dec_body = (nn.ModuleList() for _ in range(3))
        for k in range(1, K + 1):
            prev_ch = cfg.u_ch if k == 1 else cfg.z_ch
            self.enc_z.append(nn.Sequential(Down(self.img_ch[k], ch, L, g, n), WNConv2d(ch, q * cfg.z_ch, 3, init_scale=0.1)))
            self.prior_img.append(Down(self.img_ch[k - 1], ch, L - r_steps, g, n))
            self.prior_lat.append(nn.Sequential(WNConv2d(prev_ch, ch, 3), nn.ELU(), Up(ch, r_steps, g, n)))
            self.prior_head.append(nn.Sequential(
                WNConv2d(2 * ch, ch, 1), nn.ELU(), DenseBlock(ch, g, n), WNConv2d(ch, 2 * cfg.z_ch, 3, init_scale=0.1)))
            self.dec_lat.append(nn.Sequential(WNConv2d(cfg.z_ch, ch, 3), nn.ELU(), Up(ch, L - r_steps, g, n)))
            self.dec_img.append(Down(self.img_ch[k - 1], ch, 0, g, n))
            self.dec_body.append(nn.Sequential(
                WNConv2d(2 * ch, ch, 1), nn.ELU(), DenseBlock(ch, g, n), Up(ch, r_steps, g, n),
                WNConv2d(ch, ch, 3), nn.ELU(),
                WNConv2d(ch, DMoL.channels(self.img_ch[k], cfg.mixtures), 1, init_scale=0.1)))
        if cfg.u_slices or cfg.z_slices or cfg.checkerboard:
            raise ValueError("latent contexts (u_slices, z_slices, checkerboard) are for the fast networks")
        if cfg.refine:
            if K < 1:
                raise ValueError("refine needs a selfVAE (levels >= 1): it reads the x decoder's features")
            c = cfg.image_ch
            self.refine_net = nn.Sequential(
                WNConv2d(ch + c, ch, 3), nn.ELU(), *[DenseBlock(ch, g, n) for _ in range(cfg.refine)],
                WNConv2d(ch, c, 3, init_scale=0.01))
            with torch.no_grad():  # starts as the identity: a model gaining it decodes as before
                self.refine_net[-1].g.zero_()
        if cfg.x_context and K < 1:
            raise ValueError("x_context needs a selfVAE (levels >= 1) trained on the ELBO")
        if (cfg.x_context or cfg.y_context) and cfg.rd_lambdas:
            raise ValueError("x_context and y_context need a model trained on the ELBO")
        if cfg.x_context:  # per image k >= 1: the nets of stages 1 and 2
            self.context = nn.ModuleList(self._context_nets(k, cfg.x_context) for k in range(1, K + 1))
        if cfg.y_context:
            self.context0 = self._context_nets(0, cfg.y_context)

    def _context_nets(self, k: int, blocks: int) -> nn.ModuleList:
        """The context nets of stages 1 and 2 of images[k]: read the decoder's features, the
        known pixels, the coarser image (k >= 1) and the phase; start adding nothing, so a model
        gaining them starts where it was."""
        ch, g, n = self.cfg.ch, self.cfg.growth, self.cfg.block_convs
        cin = ch + self.img_ch[k] + (self.img_ch[k - 1] if k >= 1 else 0) + 4
        nets = nn.ModuleList()
        for _ in range(2):
            nets.append(nn.Sequential(
                WNConv2d(cin, ch, 3), nn.ELU(), *[DenseBlock(ch, g, n) for _ in range(blocks)],
                WNConv2d(ch, DMoL.channels(self.img_ch[k], self.cfg.mixtures), 1, init_scale=0.1)))
            with torch.no_grad():
                nets[-1][-1].g.zero_()
        return nets

    @property
    def multiple(self) -> int:
        """Height and width of x must be multiples of this."""
        return self.ratio ** self.cfg.scales * 2 ** self.cfg.latent_down

    @property
    def u_down(self) -> int:
        """2x steps from images[0] down to u."""
        return self.cfg.latent_down

    def table_nets(self) -> tuple:
        return ("dec_0", "prior_img", "prior_lat", "prior_head", "dec_lat", "dec_img", "dec_body") + tuple(
            n for n in ("context", "context0") if hasattr(self, n))

    def _p_img0(self, a, u):
        net = a.net(self, "dec_0")
        h = net[:-1](a.latent(u))
        return a.out(net[-1](h)), a.out(h)

    def _p_z(self, a, k, img_prev, prev_latent):
        n = lambda name: a.net(self, name)[k - 1]  # noqa: E731
        h = torch.cat([n("prior_img")(a.image(img_prev)), n("prior_lat")(a.latent(prev_latent))], 1)
        mean, log_scale = a.out(n("prior_head")(h)).chunk(2, 1)
        return mean, log_scale.clamp(-6.0, 6.0)

    def _p_img(self, a, k, z, img_prev):
        n = lambda name: a.net(self, name)[k - 1]  # noqa: E731
        prev = a.image(img_prev)
        body = n("dec_body")
        h = body[:-1](torch.cat([n("dec_lat")(a.latent(z)), n("dec_img")(prev)], 1))
        params, h = a.out(body[-1](h)), a.out(h)
        if self.cfg.transform == "downscale":
            params = self.offset_means(params, a.out(prev), k)
        return params, h

    def _stage_params(self, a, k, stage, params, h, img, img_prev):
        if stage == 0 or not self.staged(k):
            return params
        b, _, hh, ww = img.shape
        known = stage_mask(stage, hh, ww, img.device, before=True)
        pixels = a.image(img)
        inp = [a.latent(h), torch.where(known, pixels, pixels.new_zeros(()))]
        if k >= 1:
            inp.append(F.interpolate(a.image(img_prev), size=(hh, ww), mode="nearest"))
        inp.append(a.latent(phase_planes(hh, ww, img.device).expand(b, -1, -1, -1)))
        net = a.net(self, "context")[k - 1][stage - 1] if k >= 1 else a.net(self, "context0")[stage - 1]
        x = torch.cat([t.to(inp[0].dtype) for t in inp], 1)
        return params + a.out(net(x)).to(params.dtype)

    def refine(self, xhat, h):
        """The final x̂ (0..255) after the residual filter, given p_img's features."""
        if not self.cfg.refine:
            return xhat
        r = self.refine_net(torch.cat([h, scale_image(xhat).to(h.dtype)], 1))
        return xhat + 127.5 * r.float()


@torch.no_grad()
def scale_z(model: DenseSelfVAE, gain: float) -> None:
    """Reparametrise every z_k as gain * z_k: the posterior mean and the prior (mean and scale)
    grow by `gain`, and the layers that read z_k shrink by it, so every mean the decoder computes
    is unchanged. What changes is z's signal against the posterior's fixed unit-width noise: an
    encoder whose last layer kept its small initial gain is swamped by that noise, and z then
    carries nothing (the collapse seen in training); raising the gain lets detail through."""
    zc = model.cfg.z_ch
    for k in range(model.cfg.scales):
        enc = model.enc_z[k][-1]
        enc.g[:zc] *= gain  # (a Gaussian posterior's log-scales follow below)
        enc.b[:zc] *= gain
        if model.cfg.posterior == "gaussian":
            enc.b[zc:] += math.log(gain)
        head = model.prior_head[k][-1]
        head.g[:zc] *= gain
        head.b[:zc] *= gain
        head.b[zc:] += math.log(gain)
        model.dec_lat[k][0].g /= gain
        if k + 1 < model.cfg.scales:
            model.prior_lat[k + 1][0].g /= gain


