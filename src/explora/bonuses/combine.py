"""``Sum``: several bonuses as one, ``r = sum_i w_i * r_i``.

DESIGN.md: "Several bonuses can be combined (sum or product, e.g. NGU = episodic x lifelong)".
The product with a named recipe is ``ngu``; ``Sum`` is the general weighted sum, e.g. RND's
learned novelty plus exact counts, or RND plus an episodic first-visit bonus. On the command
line: ``--bonus rnd+count``, with weights ``--bonus 0.5*rnd+2*count`` (``make_bonus``).

Formula, for terms ``r_1 .. r_k`` with weights ``w_i`` (default 1):

    normalize="none":  r = sum_i w_i * r_i
    normalize="rms":   r = sum_i w_i * r_i / rms_i,   rms_i = sqrt(running mean of r_i^2)

The agent then divides ``r`` by the running std of its discounted return as for any bonus
(``DiscountedReturnStd``), so the overall scale is the agent's business; what the sum decides
is the terms' relative weight. Without per-term normalisation that is set by their raw scales:
RND's squared error of an untrained predictor is ~0.1-10 depending on the input, a count's
``1/sqrt(n)`` is at most 1 and falls like ``n^-1/2``, so ``w_i`` would have to absorb
ratios that differ per env and drift during training. ``rms_i`` (a ``RunningMeanStd`` over all
of term i's raw values of the run, its statistics updated with each computed batch before it
is divided, as the agent updates its return scale) puts every term at a typical size of 1, so
the weights mean "how much of each".

Why the root mean square and not the std: a term whose values are all equal has std 0. Counts
on the first rollout of DeepSea (every state new, every value 1) would then be divided by ~0,
and that early spike stays in the agent's run-long return scale. The RMS is 0 only for a term
that is 0 everywhere (then it is left alone: divided by 1).

Default: ``normalize="rms"``, so that ``rnd+count`` means what it says. Measured with PPO and
explora's env-family presets (``explora.train``, RND's MiniGrid preset on its term), the
running scales at the end of ``rnd+count`` runs (seed 0): RND's raw RMS 13.4 vs the count's
0.069 on DeepSea-10 (24k frames), 7.7 vs 0.094 on DeepSea-20 (80k), 6.1 vs 0.079 on
DoorKey-5x5 (150k): RND is ~100x larger, and with ``normalize="none"`` the sum *is* RND.

    DeepSea-10, 24k frames, seeds 0-4, bsuite's solved-at episode (all solved):
        rnd       861, 755, 887, 952, 1128      count      515, 582, 559, 563, 626
        sum none  859, 752, 888, 952, 1103      sum rms    778, 708, 894, 927, 876
        (sum with each term divided by its running std: 778, 711, 812, 1004, 873)
    DeepSea-20, 80k frames, seeds 0-4, solved-at episode (- = not solved):
        rnd       -, -, 3979, -, -   (1/5)      count      -, 1035, 359, -, 428   (3/5)
        sum none  -, -, 2371, -, 2737 (2/5)     sum rms    -, 2418, 849, -, 1758  (3/5)
        (std: -, -, 2333, 2255, 2261 (3/5))
    MiniGrid-DoorKey-5x5, 150k frames, seeds 0-1, frames to 90% success:
        plain PPO 60.0k, 68.5k    rnd 37.5k, 41.5k    count 60.3k, 77.4k
        sum none  37.8k, 39.2k    sum rms 78.5k, 90.4k    rnd+0.25*count rms 65.7k, 75.8k
        (std: 93.8k, 57.9k)

So without per-term scales the count is noise on RND's scale (DeepSea-10: within 25
episodes of RND alone on every seed); with them both terms act, for better where both are
good signals (DeepSea) and for worse where one is not: lifelong counts of MiniGrid's partial
views learned no faster than plain PPO on DoorKey-5x5, and the equal-weighted sum was slower
than either term. A combination is a hypothesis to test per task, with weights; RMS vs std
made no difference beyond seed noise, and the RMS cannot divide by ~0.

Method names of a sweep (``bench/suites.py``: ``ppo+rnd``) are keys of ``METHODS``, never
parsed; their convention ``<algo>+<bonus>`` stays unambiguous with combinations because no
algo name holds a ``+``: everything after the first ``+`` is the bonus, so a method for this
sum would be ``Method("ppo+rnd+count", bonus="rnd+count")``.

What the agents do with a sum (read from ``agents/ppo.py`` and ``agents/dqn.py``):

- ``episodic`` is True when any term is. PPO ignores the flag (it observes every step and
  computes each rollout, which suits both kinds). DQN computes an episodic bonus once per step,
  as the step happens, and stores it in the replay; a lifelong one it recomputes on every
  sampled batch with the bonus's current models. A sum with an episodic term must take the
  first path (its episodic terms fix their values in ``observe`` and expect ``compute`` on the
  last observed steps), so under DQN its lifelong terms are also valued once, when the step
  happens, not re-valued when sampled later. Every term still trains on every sampled batch.
  The per-term scales move with every batch the agent values: PPO's rollouts, DQN's steps
  (episodic sum) or sampled windows (lifelong sum).
- ``warmup_steps`` is the largest of the terms': the agent runs one random-policy warm-up, and
  every term observes all of it (a term that needs none just sees, and counts, more steps).
- ``start_new_episodes(envs)`` is passed to every term that has the hook.
- ``state_keys`` and every other field of ``Transitions`` reach each term unchanged.
- ``update`` trains every term on the same batch and returns each term's scalars under
  ``bonus/<term>/...``. PPO runs it on a second thread: it touches the terms' own state only
  (the per-term scales move in ``compute``, on the agent's thread).
- ``state_dict`` holds each term's state under its name, the per-term scales and nothing else:
  ``{"terms": {"rnd": ..., "count": ...}, "scales": {"rnd": ..., "count": ...}}``.

Example:
    >>> from explora.bonuses import RND, Count
    >>> bonus = Sum({"rnd": RND(), "count": Count()}, weights={"count": 2.0})
    >>> bonus.episodic, bonus.warmup_steps
    (False, 128)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from explora.bonuses.base import Bonus, RunningMeanStd, Transitions

NORMALIZE_CHOICES = ("none", "rms")


class Sum:
    """``sum_i weights[i] * terms[i]``, each term optionally divided by its running RMS.

    Args:
        terms: name -> bonus; the names label the terms in ``state_dict`` and the logs.
        weights: name -> weight (>= 0, finite); a term not listed weighs 1.
        normalize: ``"rms"`` divides each term by the root mean square of its raw values so
            far (see the module docstring), ``"none"`` sums raw values.
    """

    def __init__(
        self,
        terms: Mapping[str, Bonus],
        *,
        weights: Mapping[str, float] | None = None,
        normalize: Literal["none", "rms"] = "rms",
    ) -> None:
        if not isinstance(terms, Mapping) or not terms:
            raise ValueError(f"Sum needs a non-empty mapping name -> bonus, got {terms!r}")
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(terms))
        if unknown:
            raise ValueError(
                f"weights for unknown term{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(unknown)}; the terms are: {', '.join(terms)}"
            )
        for name, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, int | float) or not np.isfinite(w) or w < 0:
                raise ValueError(f"weight of term {name!r} must be a finite number >= 0, got {w!r}")
        if normalize not in NORMALIZE_CHOICES:
            raise ValueError(
                f"normalize must be one of: {', '.join(NORMALIZE_CHOICES)}; got {normalize!r}"
            )
        self.terms: dict[str, Bonus] = dict(terms)
        self.weights: dict[str, float] = {n: float(weights.get(n, 1.0)) for n in self.terms}
        self.normalize = normalize
        self.episodic = any(t.episodic for t in self.terms.values())
        self.warmup_steps = max(t.warmup_steps for t in self.terms.values())
        self.training = True
        self.scales = {n: RunningMeanStd(shape=()) for n in self.terms}

    @property
    def name(self) -> str:
        """The combination as ``make_bonus`` reads it, e.g. ``rnd+2*count``."""
        return "+".join(n if w == 1.0 else f"{w:g}*{n}" for n, w in self.weights.items())

    def setup(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> None:
        """Set up every term; the first that cannot take the spaces raises its ValueError,
        prefixed with the term's name."""
        for name, term in self.terms.items():
            try:
                term.setup(observation_space, action_space, num_envs)
            except ValueError as error:
                raise ValueError(f"term {name!r} of the sum: {error}") from error

    def observe(self, step: Transitions) -> None:
        """Pass the step ``[1, N, ...]`` to every term."""
        for term in self.terms.values():
            term.observe(step)

    def start_new_episodes(self, envs: np.ndarray) -> None:
        """Pass ``envs`` ``[N]`` bool on to every term with per-episode state."""
        for term in self.terms.values():
            hook = getattr(term, "start_new_episodes", None)
            if hook is not None:
                hook(envs)

    def _scale(self, name: str) -> Tensor:
        stats = self.scales[name]
        mean_square = stats.var + stats.mean.square()
        return torch.where(mean_square > 0, mean_square.sqrt(), torch.ones_like(mean_square))

    @torch.no_grad()
    def compute(self, batch: Transitions) -> Tensor:
        """``sum_i w_i * r_i [/ rms_i]``, float32 ``[T, N]``. Every term computes, also those
        weighing 0: an episodic term consumes the flags it fixed in ``observe``."""
        total: Tensor | None = None
        for name, term in self.terms.items():
            value = term.compute(batch).float()
            if self.normalize == "rms":
                if self.training:
                    self.scales[name].update(value.reshape(-1))
                value = value / self._scale(name).to(value.device, torch.float32)
            value = self.weights[name] * value
            total = value if total is None else total + value
        assert total is not None
        return total

    def update(self, batch: Transitions) -> dict[str, float]:
        """Train every term on ``batch``; their scalars as ``bonus/<term>/<scalar>``."""
        out: dict[str, float] = {}
        for name, term in self.terms.items():
            for key, value in term.update(batch).items():
                out[f"bonus/{name}/{key.removeprefix('bonus/')}"] = value
        return out

    @property
    def num_unique(self) -> int:
        """Distinct states counted by the first term that counts them (for the summary)."""
        for term in self.terms.values():
            found = getattr(term, "num_unique", None)
            if found is not None:
                return int(found)
        raise AttributeError("no term of the sum counts distinct states")

    def state_dict(self) -> dict[str, Any]:
        """Each term's state and its scale statistics, by term name (copies: later calls
        move neither)."""
        return {
            "terms": {name: term.state_dict() for name, term in self.terms.items()},
            "scales": {
                name: {k: v.clone() for k, v in s.state_dict().items()}
                for name, s in self.scales.items()
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        names = sorted(state.get("terms", {}))
        if names != sorted(self.terms):
            raise ValueError(
                f"the state holds the terms {', '.join(names) or 'none'}; this sum has "
                f"{', '.join(sorted(self.terms))}"
            )
        for name, term in self.terms.items():
            term.load_state_dict(state["terms"][name])
            self.scales[name].load_state_dict(state["scales"][name])

    def train(self, mode: bool = True) -> Sum:
        """Training mode (statistics move) or eval mode (they do not), for every term."""
        self.training = mode
        for name, term in self.terms.items():
            if hasattr(term, "train"):
                term.train(mode)
            self.scales[name].train(mode)
        return self

    def eval(self) -> Sum:
        return self.train(False)
