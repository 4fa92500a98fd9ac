"""A variational autoencoder of observations, with a cyclical KL schedule, per-dimension KL
thresholding and an optional inverse autoregressive flow posterior.

Kingma & Welling 2014, "Auto-Encoding Variational Bayes" (ICLR): an encoder gives a posterior
q(z|x) over a ``latent_dim``-dimensional code, a decoder a likelihood p(x|z), the prior is
p(z) = N(0, I), and training maximises the evidence lower bound

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))      <= log p(x)

with one reparameterised sample z per observation. Three additions, each switchable:

* **Cyclical KL annealing** (Fu, Li, Liu, Gao, Celikyilmaz & Carin 2019, "Cyclical Annealing
  Schedule: A Simple Approach to Mitigating KL Vanishing", NAACL; ``cyclical_beta``): the KL
  term is weighted by beta(t). Training is split into M cycles of P = ``anneal_steps`` / M
  steps; within a cycle, at step tau = t mod P, beta rises linearly from 0 to 1 over the first
  R * P steps and stays at 1 for the rest: beta(t) = min(1, tau / (R P)). After the M cycles
  beta stays 1. Optimus's variant holds beta at 0 for the first ``anneal_zero`` of each cycle
  before the ramp (``anneal_zero = 0`` is Fu et al.'s schedule).
* **Per-dimension KL thresholding** (Li, Gao, Li, Peng, Li, Zhang & Gao 2020, "Optimus:
  Organizing Sentences via Pre-trained Modeling of a Latent Space", EMNLP; the "free bits" of
  Kingma et al. 2016 taken per dimension; ``threshold_kl``): the KL term of the loss is
  sum_i max(lambda, KL_i), KL_i the KL of latent dimension i of one observation. A dimension
  whose KL is below lambda gets no gradient from it, so the encoder may put up to lambda nats
  into every dimension before the prior pulls it back: the code does not collapse onto the
  prior.
* **Inverse autoregressive flow** (Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling 2016,
  "Improved Variational Inference with Inverse Autoregressive Flow", NeurIPS; ``IAFStep``):
  the encoder gives mu, sigma_0 and a context h (its last hidden layer); z_0 = mu + sigma_0 * eps,
  eps ~ N(0, I), then K steps

      [m_t, s_t] = AutoregressiveNN_t(z_{t-1}, h),  sigma_t = sigmoid(s_t)
      z_t = sigma_t * z_{t-1} + (1 - sigma_t) * m_t

  where output i of the MADE-style network (Germain et al. 2015, masked dense layers) depends
  only on z_{t-1, <i} in that step's ordering; the ordering is reversed from one step to the
  next. The Jacobian dz_t/dz_{t-1} is triangular with diagonal sigma_t, so

      log q(z_K|x) = -sum_i ( eps_i^2 / 2 + log(2 pi) / 2 + sum_{t=0..K} log sigma_{t,i} ).

  The KL is then the single-sample estimate log q(z_K|x) - log p(z_K), split per dimension i
  by the sum over i above (what the threshold applies to). Without the flow (``iaf_steps=0``)
  q is the diagonal Gaussian and KL_i is exact: (mu_i^2 + sigma_i^2 - 1) / 2 - log sigma_i.

The training loss of a batch is the mean over its observations of

    -log p(x|z) + beta(t) * sum_i max(lambda, KL_i)

and ``evaluate`` reports the ELBO itself (beta 1, no threshold) in nats per observation.

Likelihoods (chosen here; the sources are a language model and pixel VAEs):
    * categorical where the space says an element is a category: MiniGrid's 7x7x3 symbolic
      view (per cell, one categorical over the 11 object codes, one over the 6 colours, one
      over the 3 states), Discrete, MultiDiscrete, MultiBinary (a Bernoulli per element: two
      classes) and integer Boxes of at most 32 values per element (DeepSea's grid) -- the
      classification ``explora.models.vqvae`` makes (``_categories``), with the encoder
      inputs it uses (each element's class index scaled to [0, 1]) and the decoder logits
      grouped by class count. log p(x|z) is the sum over elements of log softmax, so the ELBO
      is a bound on the log-probability of the whole observation, in nats.
    * Gaussian for everything else (floats, pixels): the decoder gives the mean of
      ``obs_features(x)`` (pixels / 255), with one learned log-scale per element (clamped at
      log 1e-3 from below). As large-scale curiosity's non-spherical VAE but with the scale a
      parameter rather than a decoder output; without its dequantisation noise, so on uint8
      pixels the number is a density, not a probability. On pixels this model is tested for
      shapes only, not tuned.

Networks: the encoder is ``explora.models.dynamics.Embedding`` with ``hidden_size`` outputs (an
MLP with one hidden layer on the inputs above, or the Nature-DQN conv stack on images of side
>= 36), a LeakyReLU, then linear heads for mu and log sigma_0^2 (Optimus's ``mu, logvar``);
the decoder an MLP with two hidden layers of ``hidden_size``. Each flow step is a MADE with
one hidden layer of ``iaf_hidden`` (ELU), to which the context h is added, and masked output
layers for m and s; h also enters m and s directly (unmasked: it does not break the ordering,
and a first dimension, which depends on no other, still depends on x).

Defaults and where they come from:
    kl_threshold lambda = 0.5: Optimus's README and fine-tuning script
        (``code/scripts/scripts_local/run_ft_lm_vae_optimus.sh``: ``--dim_target_kl 0.5``; the
        argparse default 3.0 is not what its scripts run). Optimus's code masks rather than
        clamps (``(KL_i > lambda) * KL_i``): the same gradient, a loss lower by lambda per
        thresholded dimension; we write max(lambda, KL_i) as its paper does. Like Optimus, per
        observation and dimension (Kingma et al.'s free bits average KL over the minibatch
        first).
    anneal_cycles M = 4, anneal_ratio R = 0.5, anneal_zero = 0: Fu et al. (their
        ``frange_cycle_linear(n_iter, n_cycle=4, ratio=0.5)``). Optimus fine-tunes with one
        cycle, ``ratio_zero 0.5`` and ``ratio_increase 0.25``: pass ``anneal_cycles=1,
        anneal_zero=0.5, anneal_ratio=0.25``.
    anneal_steps = 10,000: Fu et al. spread the cycles over the whole training run, which an
        online model does not know in advance; 10,000 steps is about a 1M-frame MiniGrid run
        of the ``dynamics`` bonus (24 steps per 2,048-frame rollout). 0 turns annealing off
        (beta = 1 throughout).
    iaf_steps K = 0 (off; the issue asks for an optional flow), iaf_hidden = hidden_size,
        iaf_forget_bias = 1.0: Kingma et al. initialise so that s_t starts "sufficiently
        positive, such as close to +1 or +2", so each step first changes z only a little.
    latent_dim = 32, hidden_size = 128: small, as explora's other MiniGrid models (RND's
        preset is 128/64 wide, the VQ-VAE's 128); large-scale curiosity's VAE has 512 features
        (``feat_dim``), ``dynamics(features="vae")`` uses its ``feature_size``.
    learning_rate = 1e-3 (Adam): a choice, not compared with others here (large-scale
        curiosity trains its VAE at PPO's 1e-4, the IAF paper uses Adamax at 0.002);
        ``dynamics(features="vae")`` trains the VAE with the bonus's own optimiser and rate.

Measured (``benchmarks/generative/vae_quality.py``, DoorKey-8x8 random-policy views: fit on
100,000, scored on 20,000 others; 3,000 Adam steps of 512, defaults otherwise; annealing over
the 3,000 steps):

    | posterior         | KL schedule | ELBO   | recon NLL | KL    | cell acc | view acc |
    | Gaussian          | cyclical    | -20.77 | 3.43      | 17.33 | 0.9980   | 0.873    |
    | Gaussian          | beta = 1    | -20.95 | 3.89      | 17.06 | 0.9972   | 0.824    |
    | IAF, 2 steps      | cyclical    | -14.98 | 2.72      | 12.26 | 0.9976   | 0.857    |
    | IAF, 2 steps      | beta = 1    | -14.66 | 2.93      | 11.73 | 0.9967   | 0.817    |

(nats per view; the test views' plug-in entropy is 6.31 nats; all 32 latent dimensions
active in every row.) The Gaussian posterior's KL sits at the threshold's floor, 32 x 0.5 =
16 nats: each dimension holds the 0.5 nats it may hold for free, so the ELBO is the
reconstruction NLL plus that budget. The flow's single-sample per-dimension estimates are
noisy, and a dimension estimated under the threshold on one view costs nothing there, so its
KL ends lower and its ELBO 6 nats higher. Annealing buys whole-view reconstruction (+4 to +5
points) at about the same ELBO.

Example (fit on a batch of observations, then read the posterior means):
    >>> import gymnasium as gym, numpy as np, torch
    >>> space = gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)       # MiniGrid's view
    >>> vae = VAE(space, latent_dim=8, hidden_size=64, iaf_steps=2, anneal_steps=100, seed=0)
    >>> obs = torch.randint(0, 3, (64, 7, 7, 3), dtype=torch.uint8)
    >>> first = vae.train_step(obs)
    >>> for _ in range(30):
    ...     metrics = vae.train_step(obs)
    >>> metrics["vae/elbo"] > first["vae/elbo"]                   # nats per observation
    True
    >>> vae.mean(obs).shape                                        # the features: [B, latent_dim]
    torch.Size([64, 8])
    >>> vae.reconstruct(obs).shape, vae.reconstruct(obs).dtype
    (torch.Size([64, 7, 7, 3]), torch.uint8)
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from explora.models.dynamics import (
    Embedding,
    InverseDynamics,
    check_space,
    input_dim,
    obs_features,
)
from explora.models.encoders import layer_init
from explora.models.optim import load_training_state, training_state
from explora.models.vqvae import CategoricalElements

LOG_2PI = math.log(2.0 * math.pi)
MIN_LOG_SCALE = math.log(1e-3)  # the Gaussian likelihood's smallest scale


# ---- the KL schedule and threshold ----------------------------------------------------------


def cyclical_beta(
    step: int,
    total_steps: int,
    cycles: int = 4,
    ratio_increase: float = 0.5,
    ratio_zero: float = 0.0,
) -> float:
    """beta at training step ``step`` (0-based) of Fu et al.'s cyclical schedule over
    ``total_steps`` steps in ``cycles`` cycles: with P = total_steps / cycles and tau = step
    mod P, 0 while tau < ratio_zero * P (Optimus's zero phase), then rising linearly to 1 over
    ratio_increase * P steps, then 1; 1 from ``total_steps`` on, and always when
    ``total_steps`` is 0.

    Example (100 steps, 4 cycles of 25, ramp over 12.5 steps):
        >>> [cyclical_beta(t, 100) for t in (0, 5, 12, 13, 25, 30, 99, 100)]
        [0.0, 0.4, 0.96, 1.0, 0.0, 0.4, 1.0, 1.0]
    """
    if total_steps <= 0 or step >= total_steps:
        return 1.0
    period = total_steps / cycles
    tau = step - math.floor(step / period) * period
    start = ratio_zero * period
    if tau < start:
        return 0.0
    if ratio_increase <= 0:
        return 1.0
    return min(1.0, (tau - start) / (ratio_increase * period))


def threshold_kl(kl: Tensor, threshold: float) -> Tensor:
    """Optimus's dimension-wise thresholding: ``max(threshold, kl)`` elementwise, for KL terms
    ``kl`` ``[B, D]`` (one per observation and latent dimension). A term below the threshold
    contributes the constant ``threshold`` and no gradient.

    Example:
        >>> threshold_kl(torch.tensor([[0.1, 0.7]]), 0.5)
        tensor([[0.5000, 0.7000]])
    """
    return kl.clamp_min(threshold)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per element: ``(mu^2 + exp(logvar) - 1 - logvar) / 2``."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)


# ---- the inverse autoregressive flow ---------------------------------------------------------


class MaskedLinear(nn.Linear):
    """A dense layer whose weight is multiplied by a fixed 0/1 ``mask`` ``[out, in]`` (a
    buffer)."""

    mask: Tensor

    def __init__(self, mask: Tensor) -> None:
        super().__init__(int(mask.shape[1]), int(mask.shape[0]))
        self.register_buffer("mask", mask.float())

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def made_masks(dim: int, hidden: int, reverse: bool = False) -> tuple[Tensor, Tensor]:
    """MADE's masks (Germain et al. 2015) for ``dim`` inputs and outputs through ``hidden``
    units: ``(hidden_mask [hidden, dim], output_mask [dim, hidden])`` such that output i
    depends only on the inputs before i in the ordering 1..dim (``reverse``: dim..1).

    Example (output 0 sees nothing; output 2 sees inputs 0 and 1):
        >>> h, o = made_masks(3, 4)
        >>> ((o @ h) > 0).int()
        tensor([[0, 0, 0],
                [1, 0, 0],
                [1, 1, 0]], dtype=torch.int32)
    """
    order = torch.arange(1, dim + 1)
    if reverse:
        order = order.flip(0)
    degrees = torch.arange(hidden) % max(1, dim - 1) + 1  # each hidden unit's degree
    hidden_mask = degrees[:, None] >= order[None, :]
    output_mask = order[:, None] > degrees[None, :]
    return hidden_mask.float(), output_mask.float()


class IAFStep(nn.Module):
    """One step of an inverse autoregressive flow: ``(z [B, D], h [B, C]) -> (z' [B, D],
    log sigma [B, D])`` with z' = sigma * z + (1 - sigma) * m, sigma = sigmoid(s), [m, s] from
    a MADE on z (ordering 1..D, or D..1 when ``reverse``) plus the context h."""

    def __init__(
        self, dim: int, context_dim: int, hidden: int, reverse: bool, forget_bias: float
    ) -> None:
        super().__init__()
        hidden_mask, output_mask = made_masks(dim, hidden, reverse)
        self.reverse = reverse
        self.forget_bias = forget_bias
        self.z_in = MaskedLinear(hidden_mask)
        self.h_in = nn.Linear(context_dim, hidden)
        self.m_out = MaskedLinear(output_mask)
        self.s_out = MaskedLinear(output_mask)
        self.h_out = nn.Linear(context_dim, 2 * dim)
        for layer in (self.m_out, self.s_out, self.h_out):  # start close to the identity
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        a = F.elu(self.z_in(z) + self.h_in(h))
        dm, ds = self.h_out(h).chunk(2, dim=-1)
        m = self.m_out(a) + dm
        s = self.s_out(a) + ds + self.forget_bias
        sigma = torch.sigmoid(s)
        return sigma * z + (1.0 - sigma) * m, F.logsigmoid(s)


# ---- the model ------------------------------------------------------------------------------


class VAE(nn.Module):
    """Variational autoencoder of observations of one space (see the module docstring).

    Args:
        observation_space: the space of one observation (Box, Discrete, MultiDiscrete,
            MultiBinary).
        latent_dim: D, the size of the code z.
        hidden_size: width of the encoder's and the decoder's hidden layers.
        iaf_steps: K, steps of the inverse autoregressive flow (0: a diagonal Gaussian).
        iaf_hidden: hidden units of each flow step's MADE (None: ``hidden_size``).
        iaf_forget_bias: added to s_t, so that sigma_t starts near sigmoid(bias).
        kl_threshold: lambda of ``threshold_kl`` (0: the plain KL; it can be negative with
            the flow's single-sample estimate, so 0 is then a threshold too: pass ``None`` for
            none at all).
        anneal_steps, anneal_cycles, anneal_ratio, anneal_zero: ``cyclical_beta``'s
            ``total_steps``, ``cycles``, ``ratio_increase``, ``ratio_zero`` (``anneal_steps=0``:
            beta = 1 throughout).
        learning_rate: Adam step size of ``train_step``.
        seed: seed of the weights and of the posterior samples; None draws it from torch's
            global generator.

    Shapes: ``obs`` arguments are ``[B, *obs_shape]`` in the space's dtype; codes ``[B, D]``.
    ``train_step(obs)`` takes one Adam step and counts it (the schedule's ``steps``, a buffer);
    ``loss(obs)`` is the same loss for an outside optimiser (then call ``count_step``).
    ``state_dict`` holds the networks, ``steps``, Adam's state and the generator.
    """

    steps: Tensor
    classes: Tensor
    low: Tensor

    def __init__(
        self,
        observation_space: gym.Space,
        *,
        latent_dim: int = 32,
        hidden_size: int = 128,
        iaf_steps: int = 0,
        iaf_hidden: int | None = None,
        iaf_forget_bias: float = 1.0,
        kl_threshold: float | None = 0.5,
        anneal_steps: int = 10_000,
        anneal_cycles: int = 4,
        anneal_ratio: float = 0.5,
        anneal_zero: float = 0.0,
        learning_rate: float = 1e-3,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        check_space(observation_space, "VAE")
        if min(latent_dim, hidden_size, anneal_cycles) < 1:
            raise ValueError(
                f"latent_dim, hidden_size and anneal_cycles must be >= 1, got {latent_dim}, "
                f"{hidden_size}, {anneal_cycles}"
            )
        if iaf_steps < 0 or anneal_steps < 0:
            raise ValueError(f"iaf_steps and anneal_steps must be >= 0, got {iaf_steps}, "
                             f"{anneal_steps}")  # fmt: skip
        if not (0 <= anneal_zero and 0 <= anneal_ratio and anneal_zero + anneal_ratio <= 1):
            raise ValueError(
                f"anneal_zero and anneal_ratio must be >= 0 with a sum <= 1, got {anneal_zero}, "
                f"{anneal_ratio}"
            )
        self.space = observation_space
        self.obs_shape = tuple(int(d) for d in observation_space.shape or ())
        self.latent_dim = latent_dim
        self.hidden_size = hidden_size
        self.iaf_steps = iaf_steps
        self.iaf_hidden = iaf_hidden or hidden_size
        self.kl_threshold = kl_threshold
        self.anneal_steps = anneal_steps
        self.anneal_cycles = anneal_cycles
        self.anneal_ratio = anneal_ratio
        self.anneal_zero = anneal_zero
        self.learning_rate = learning_rate
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.generator = torch.Generator()
        self.generator.manual_seed(int(torch.randint(0, 2**62, ())) if seed is None else int(seed))

        self.elements = CategoricalElements.for_space(observation_space)
        self.categorical = self.elements is not None
        if self.elements is not None:
            n = self.elements.num_elements
            body_space: gym.Space = gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)
            out_dim = self.elements.out_dim
        else:
            body_space = observation_space
            out_dim = input_dim(observation_space)
        self.out_dim = out_dim

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (), generator=self.generator)))
            self.body = Embedding(body_space, feature_size=hidden_size, hidden_size=hidden_size)
            self.mu_head = layer_init(nn.Linear(hidden_size, latent_dim), gain=1.0)
            self.logvar_head = layer_init(nn.Linear(hidden_size, latent_dim), gain=1.0)
            self.flow = nn.ModuleList(
                IAFStep(latent_dim, hidden_size, self.iaf_hidden, t % 2 == 1, iaf_forget_bias)
                for t in range(iaf_steps)
            )
            self.decoder = nn.Sequential(
                layer_init(nn.Linear(latent_dim, hidden_size)),
                nn.LeakyReLU(),
                layer_init(nn.Linear(hidden_size, hidden_size)),
                nn.LeakyReLU(),
                layer_init(nn.Linear(hidden_size, out_dim), gain=1.0),
            )
            self.log_scale = (
                None if self.categorical else nn.Parameter(torch.zeros(out_dim))
            )  # the Gaussian likelihood's per-element log sigma
        self.optimizer = torch.optim.Adam(self.parameters(), lr=learning_rate)

    # ---- inputs and outputs ----------------------------------------------------------------

    def inputs(self, obs: Tensor) -> Tensor:
        """The encoder's inputs: class indices scaled to [0, 1] per element ``[B, E]``
        (categorical spaces), else the observations as they are (``Embedding`` takes them)."""
        if self.elements is None:
            return obs
        return self.elements.inputs(obs)

    # ---- posterior ---------------------------------------------------------------------------

    def encode(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(mu, logvar, h)``: the initial Gaussian's mean and log-variance ``[B, D]`` and the
        flow's context ``[B, hidden_size]`` (the encoder's last hidden layer)."""
        h = F.leaky_relu(self.body(self.inputs(obs)))
        return self.mu_head(h), self.logvar_head(h), h

    def flow_forward(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """Run z_0 ``[B, D]`` through the K flow steps with context ``h``: ``(z_K, sum_t log
        sigma_t [B, D])`` (zeros when K = 0)."""
        log_sigma = torch.zeros_like(z)
        for step in self.flow:
            z, ls = step(z, h)
            log_sigma = log_sigma + ls
        return z, log_sigma

    def sample(self, mu: Tensor, logvar: Tensor, h: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """``(z_K, log q(z_K|x) per dimension [B, D])`` for noise ``eps`` ``[B, D]``:
        ``-(eps^2 / 2 + log(2 pi) / 2 + log sigma_0 + sum_t log sigma_t)``."""
        z0 = mu + (0.5 * logvar).exp() * eps
        z, log_sigma = self.flow_forward(z0, h)
        log_q = -(0.5 * eps.square() + 0.5 * LOG_2PI + 0.5 * logvar + log_sigma)
        return z, log_q

    def mean(self, obs: Tensor) -> Tensor:
        """The features of ``obs``: ``[B, *obs_shape]`` -> ``[B, D]``, the posterior mean mu
        (with the flow: mu carried through the flow, z_K at eps = 0, the image of the initial
        Gaussian's mean; the flow's true posterior mean has no closed form)."""
        mu, _, h = self.encode(obs)
        if not self.flow:
            return mu
        return self.flow_forward(mu, h)[0]

    def kl_per_dim(self, mu: Tensor, logvar: Tensor, z: Tensor, log_q: Tensor) -> Tensor:
        """``[B, D]``: the exact Gaussian KL per dimension without the flow, else the
        single-sample estimate log q(z_i..) - log p(z_i) split by dimension."""
        if not self.flow:
            return gaussian_kl(mu, logvar)
        return log_q + 0.5 * z.square() + 0.5 * LOG_2PI

    # ---- likelihood -------------------------------------------------------------------------

    def log_likelihood(self, obs: Tensor, out: Tensor) -> Tensor:
        """``[B]``: log p(x|z), summed over the elements, from decoder output ``out``."""
        if self.elements is None:
            assert self.log_scale is not None
            x = obs_features(obs, self.space)
            log_scale = self.log_scale.clamp_min(MIN_LOG_SCALE)
            z = (x - out) * torch.exp(-log_scale)
            return -(0.5 * z.square() + log_scale + 0.5 * LOG_2PI).sum(-1)
        return -self.elements.cross_entropy(out, obs).sum(-1)

    def decode(self, z: Tensor) -> Tensor:
        """Decoder output for codes ``z`` ``[B, D]``: the logits of every element's classes
        (categorical) or the Gaussian's means ``[B, out]``."""
        return self.decoder(z)

    @torch.no_grad()
    def reconstruct(self, obs: Tensor) -> Tensor:
        """Decode the posterior mean (``mean``): the most likely class of each element in the
        space's values and dtype ``[B, *obs_shape]`` (categorical), or the Gaussian's means
        ``[B, input_dim]`` in ``obs_features``' scale."""
        out = self.decode(self.mean(obs))
        if self.elements is None:
            return out
        return self.elements.values(self.elements.predict(out), obs)

    # ---- training ----------------------------------------------------------------------------

    @property
    def beta(self) -> float:
        """beta of the next training step (``cyclical_beta`` at ``steps``)."""
        return cyclical_beta(
            int(self.steps),
            self.anneal_steps,
            self.anneal_cycles,
            self.anneal_ratio,
            self.anneal_zero,
        )

    def terms(self, obs: Tensor, eps: Tensor | None = None) -> dict[str, Tensor]:
        """One posterior sample per observation (noise ``eps`` ``[B, D]``, drawn from the
        model's generator when None): ``{"log_likelihood" [B], "kl" [B, D], "z" [B, D]}``."""
        mu, logvar, h = self.encode(obs)
        if eps is None:
            eps = torch.randn(mu.shape, generator=self.generator).to(mu.device)
        z, log_q = self.sample(mu, logvar, h, eps)
        return {
            "log_likelihood": self.log_likelihood(obs, self.decode(z)),
            "kl": self.kl_per_dim(mu, logvar, z, log_q),
            "z": z,
        }

    def loss(self, obs: Tensor, beta: float | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """``(loss, parts)`` on ``obs`` ``[B, *obs_shape]``: the batch mean of ``-log p(x|z) +
        beta * sum_i max(lambda, KL_i)`` (beta: the schedule's unless given) and, detached,
        ``elbo``, ``reconstruction`` (-log p(x|z)) and ``kl``, each a batch mean in nats per
        observation, and ``beta``."""
        beta = self.beta if beta is None else beta
        parts = self.terms(obs)
        kl = parts["kl"]
        penalty = kl if self.kl_threshold is None else threshold_kl(kl, self.kl_threshold)
        log_lik = parts["log_likelihood"]
        loss = (-log_lik + beta * penalty.sum(-1)).mean()
        kl_sum = kl.detach().sum(-1)
        return loss, {
            "elbo": (log_lik.detach() - kl_sum).mean(),
            "reconstruction": -log_lik.detach().mean(),
            "kl": kl_sum.mean(),
            "beta": torch.tensor(beta),
        }

    def count_step(self) -> None:
        """Advance the annealing schedule by one training step (``train_step`` does it)."""
        self.steps.add_(1)

    def train_step(self, obs: Tensor) -> dict[str, float]:
        """One Adam step on ``obs`` ``[B, *obs_shape]``; returns ``vae/*`` scalars of the batch
        (``elbo``, ``reconstruction``, ``kl`` in nats per observation, ``beta``)."""
        loss, parts = self.loss(obs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.count_step()
        return {f"vae/{name}": float(value) for name, value in parts.items()}

    @torch.no_grad()
    def evaluate(self, obs: Tensor, batch_size: int = 4096, seed: int = 0) -> dict[str, float]:
        """Quality on held-out ``obs`` ``[B, *obs_shape]``, means over observations: ``elbo``
        (one posterior sample each, noise from ``seed``; nats per observation),
        ``reconstruction`` (-log p(x|z)), ``kl``, ``active_units`` (latent dimensions whose
        posterior mean varies across ``obs`` by more than 0.01, Burda et al. 2016), and for
        categorical spaces ``element_accuracy`` and ``view_accuracy`` of ``reconstruct``."""
        gen = torch.Generator().manual_seed(seed)
        total = {"elbo": 0.0, "reconstruction": 0.0, "kl": 0.0}
        right = exact = 0.0
        means = []
        for chunk in obs.split(batch_size):
            eps = torch.randn(len(chunk), self.latent_dim, generator=gen)
            parts = self.terms(chunk, eps)
            kl = parts["kl"].sum(-1)
            total["elbo"] += float((parts["log_likelihood"] - kl).sum())
            total["reconstruction"] += float(-parts["log_likelihood"].sum())
            total["kl"] += float(kl.sum())
            means.append(self.mean(chunk))
            if self.categorical:
                hit = self.reconstruct(chunk).reshape(len(chunk), -1) == chunk.reshape(
                    len(chunk), -1
                )
                right += float(hit.float().mean(1).sum())
                exact += float(hit.all(1).float().sum())
        result = {name: value / len(obs) for name, value in total.items()}
        result["active_units"] = float((torch.cat(means).var(0) > 0.01).sum())
        if self.categorical:
            result["element_accuracy"] = right / len(obs)
            result["view_accuracy"] = exact / len(obs)
        return result

    def get_extra_state(self) -> dict[str, Any]:
        return training_state(self.optimizer, self.generator)

    def set_extra_state(self, state: dict[str, Any]) -> None:
        load_training_state(state, self.generator, self.optimizer)


class VAEFeatures(nn.Module):
    """A VAE's posterior mean as the features of a bonus, trained beside it: ``forward(obs)``
    is ``vae.mean(obs)`` ``[B, latent_dim]``; ``loss(obs, actions, next_obs)`` the VAE's loss
    on ``obs`` (the observations of the transitions, as large-scale curiosity's
    ``auxiliary_tasks.VAE`` trains on ``self.obs``) and one step of its annealing schedule.
    This is the encoder-object interface of ``explora.models.dynamics.CuriosityFeatures``: the
    bonus's optimiser trains the VAE, and its own ``optimizer`` stays unused.

    Example:
        >>> import gymnasium as gym, numpy as np, torch
        >>> phi = VAEFeatures(VAE(gym.spaces.Box(0, 255, (7, 7, 3), np.uint8), latent_dim=4))
        >>> obs = torch.zeros(2, 7, 7, 3, dtype=torch.uint8)
        >>> phi(obs).shape, phi.out_dim, phi.loss(obs, None, obs).shape
        (torch.Size([2, 4]), 4, torch.Size([]))
    """

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae
        self.out_dim = vae.latent_dim

    def forward(self, obs: Tensor) -> Tensor:
        return self.vae.mean(obs)

    def embed(self, obs: Tensor) -> Tensor:
        """``forward``, under ``InverseDynamics``'s name for it."""
        return self.vae.mean(obs)

    def loss(self, obs: Tensor, actions: Tensor | None, next_obs: Tensor) -> Tensor:
        loss, _ = self.vae.loss(obs)
        self.vae.count_step()
        return loss


EMBEDDINGS = ("inverse-dynamics", "vae")
"""What phi of an episodic bonus (E3B, NGU) can be: the papers' inverse-dynamics embedding,
or a VAE's posterior mean."""


def check_embedding(embedding: str) -> None:
    if embedding not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {embedding!r}; choose one of: {', '.join(EMBEDDINGS)}")


def episodic_embedding(
    embedding: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    size: int,
    hidden_size: int,
) -> InverseDynamics | VAEFeatures:
    """phi of an episodic bonus, ``size`` wide: ``InverseDynamics`` (its ``embed``, trained by
    telling the action from (s, s')) or ``VAEFeatures`` (a VAE's posterior mean, trained by the
    VAE's loss on s). Both have ``embed(obs)`` and ``loss(obs, actions, next_obs)``."""
    check_embedding(embedding)
    if embedding == "vae":
        return VAEFeatures(VAE(observation_space, latent_dim=size, hidden_size=hidden_size))
    return InverseDynamics(observation_space, action_space, size, hidden_size)
