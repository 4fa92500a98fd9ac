"""Intrinsic rewards: the ``Bonus`` protocol, its implementations and a registry by name.

Example:
    >>> from explora.bonuses import make_bonus
    >>> bonus = make_bonus("rnd", learning_rate=1e-3)
    >>> type(bonus).__name__
    'RND'
"""

from __future__ import annotations

import inspect
from typing import Any

from explora.bonuses.aehash import AEHash
from explora.bonuses.base import Bonus, DiscountedReturnStd, RunningMeanStd, Transitions
from explora.bonuses.combine import NORMALIZE_CHOICES, Sum
from explora.bonuses.count import Count
from explora.bonuses.disagreement import Disagreement
from explora.bonuses.dora import DORA
from explora.bonuses.dynamics import Dynamics
from explora.bonuses.e3b import E3B
from explora.bonuses.ec import EC
from explora.bonuses.episodic import FirstVisit
from explora.bonuses.icm import ICM
from explora.bonuses.ngu import NGU
from explora.bonuses.noveld import NovelD
from explora.bonuses.obs_key import ObsKey
from explora.bonuses.pseudocount import PseudoCount
from explora.bonuses.re3 import RE3
from explora.bonuses.ride import RIDE
from explora.bonuses.rnd import RND
from explora.bonuses.simhash import SimHash
from explora.bonuses.sketch import CountMinSketch
from explora.bonuses.vime import VIME
from explora.bonuses.vqcount import VQCount
from explora.validate import check_settings, hints_of

BONUSES: dict[str, tuple[type, str]] = {
    "count": (Count, "exact visit counts of discrete observations, r = beta / sqrt(N(s'))"),
    "icm": (ICM, "curiosity module, r = eta/2 ||f(phi(s), a) - phi(s')||^2, phi by inverse model"),
    "dynamics": (Dynamics, "forward-model error in raw, random or inverse-dynamics features"),
    "disagreement": (Disagreement, "variance of 5 forward models' predictions of random phi(s')"),
    "e3b": (E3B, "elliptical episodic bonus, r = phi(s')^T C^-1 phi(s'), C = episode covariance"),
    "noveld": (NovelD, "r = max(rnd(s') - 0.5 rnd(s), 0) on the episode's first visit of s'"),
    "ride": (RIDE, "r = ||phi(s') - phi(s)|| / sqrt(N_episode(s')), phi from inverse+forward"),
    "ec": (EC, "episodic curiosity, r = beta - percentile_90 reachability(s', episodic memory)"),
    "ngu": (NGU, "never give up, r = episodic kNN pseudo-count of phi(s') x clip(RND alpha, 1, 5)"),
    "rnd": (RND, "random network distillation, r = ||predictor(s') - random_target(s')||^2"),
    "pseudocount": (PseudoCount, "PixelCNN pseudo-count, r = 1/sqrt(N_hat), N_hat from the gain"),
    "simhash": (SimHash, "counts of SimHash codes in a count-min sketch, r = beta / sqrt(n)"),
    "aehash": (AEHash, "counts of an autoencoder's binary code round(b(s')), r = beta / sqrt(n)"),
    "vime": (VIME, "information gain of a Bayesian dynamics model, KL(q_after || q_before)"),
    "dora": (DORA, "E-values of a reward-free MDP as counters, r = 1 / sqrt(-ln E(s, a))"),
    "re3": (RE3, "k-NN state entropy in a random encoder, r = log(1 + ||y - y_kNN||)"),
    "vqcount": (VQCount, "counts of VQ-VAE code tuples of s', r = beta / sqrt(N(cell(s')))"),
}
"""Bonus name -> (class, one-line description)."""


def make_bonus(
    name: str, first_visit: bool = False, obs_key: str | None = None, **kwargs: Any
) -> Bonus:
    """Build the bonus registered as ``name`` with keyword hyper-parameters ``kwargs``.

    A ``name`` with ``+`` builds a weighted ``Sum`` (``combine.py``): terms are registered
    names, each optionally with a weight ``w*name`` (or ``name*w``), e.g. ``rnd+count`` or
    ``0.5*rnd+2*count``; each name at most once. Its ``kwargs`` are prefixed by the term they
    belong to, ``rnd.learning_rate=1e-3`` (``rnd.first_visit=True`` wraps that term alone);
    unprefixed, only the whole sum's ``normalize``, ``first_visit`` and ``obs_key``.

    ``first_visit=True`` wraps it in ``FirstVisit`` (paid only on the first visit of a view in
    an episode); ``obs_key`` in ``ObsKey`` (the part of a Dict observation it reads; the agents
    give it the image by default). Raises ``ValueError`` naming the accepted choices for an
    unknown name or keyword, and the accepted range for a value of the wrong type or out of range
    (``explora.validate``: the same limits by name as the agents' settings).

    Example:
        >>> make_bonus("count", beta=0.5).beta
        0.5
    """
    if isinstance(name, str) and ("+" in name or "*" in name):
        return _make_sum(name, first_visit, obs_key, kwargs)
    if not isinstance(name, str) or name not in BONUSES:
        raise ValueError(f"unknown bonus {name!r}; choose one of: {', '.join(sorted(BONUSES))}")
    cls = BONUSES[name][0]
    accepted = _accepted_args(cls)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown argument{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for bonus "
            f"{name!r}; accepted: {', '.join(accepted)}"
        )
    owner = f"{name} bonus argument"
    check_settings(
        owner,
        {"first_visit": first_visit, "obs_key": obs_key},
        {"first_visit": bool, "obs_key": str | None},
    )
    bonus: Bonus = cls(**check_settings(owner, kwargs, hints_of(cls)))
    bonus = FirstVisit(bonus) if first_visit else bonus
    return ObsKey(bonus, obs_key) if obs_key is not None else bonus


def _accepted_args(cls: type) -> list[str]:
    keyword_only = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    return sorted([*keyword_only, "first_visit", "obs_key"])


def combination_terms(name: str) -> dict[str, float] | None:
    """Term name -> weight of a combination ``name`` (``0.5*rnd+count``), None for a plain
    name. Raises ``ValueError`` on an unknown term, a repeated one or a bad weight.

    Example:
        >>> combination_terms("0.5*rnd+count")
        {'rnd': 0.5, 'count': 1.0}
    """
    if not isinstance(name, str) or not ("+" in name or "*" in name):
        return None
    terms: dict[str, float] = {}
    for piece in name.split("+"):
        parts = [p.strip() for p in piece.split("*")]
        names = [p for p in parts if p in BONUSES]
        numbers = [p for p in parts if p not in BONUSES]
        if len(parts) > 2 or len(names) != 1:
            bad = next((p for p in parts if p not in BONUSES and not _is_number(p)), piece)
            raise ValueError(
                f"bonus {name!r}: {bad.strip()!r} is not a bonus name; a combination is "
                f"terms joined by '+', each a name or weight*name (e.g. 0.5*rnd+count), names "
                f"from: {', '.join(sorted(BONUSES))}"
            )
        weight = 1.0
        if numbers:
            if not _is_number(numbers[0]) or not 0 <= float(numbers[0]) < float("inf"):
                raise ValueError(
                    f"bonus {name!r}: the weight of {names[0]} must be a finite number >= 0, "
                    f"got {numbers[0]!r}"
                )
            weight = float(numbers[0])
        if names[0] in terms:
            raise ValueError(
                f"bonus {name!r} names {names[0]} twice; give one term a weight instead"
            )
        terms[names[0]] = weight
    return terms


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _make_sum(name: str, first_visit: bool, obs_key: str | None, kwargs: dict[str, Any]) -> Bonus:
    """``make_bonus`` for a combination (see there)."""
    terms = combination_terms(name)
    assert terms is not None
    whole = {k: kwargs.pop(k) for k in list(kwargs) if k == "normalize"}
    per_term: dict[str, dict[str, Any]] = {t: {} for t in terms}
    for key, value in kwargs.items():
        term, dot, arg = key.partition(".")
        if not dot:
            owners = [t for t in terms if key in _accepted_args(BONUSES[t][0])]
            hint = (
                f"write {' or '.join(f'{t}.{key}' for t in owners)}"
                if owners
                else f"none of its terms ({', '.join(terms)}) takes {key}"
            )
            raise ValueError(
                f"unknown argument {key} for bonus {name!r}: a combination takes each term's "
                f"arguments prefixed by the term's name ({hint}), and unprefixed only the "
                "whole sum's first_visit, normalize, obs_key"
            )
        if term not in terms:
            raise ValueError(
                f"unknown argument {key} for bonus {name!r}: {term!r} is not one of its terms "
                f"({', '.join(terms)})"
            )
        if arg == "obs_key":
            raise ValueError(
                f"{key}: obs_key applies to the whole combination {name!r} (obs_key=...), "
                "not to one term"
            )
        accepted = _accepted_args(BONUSES[term][0])
        if arg not in accepted:
            raise ValueError(
                f"unknown argument {key} for bonus {name!r}; accepted for {term}: "
                f"{', '.join(f'{term}.{a}' for a in accepted if a != 'obs_key')}"
            )
        per_term[term][arg] = value
    if "normalize" in whole and whole["normalize"] not in NORMALIZE_CHOICES:
        raise ValueError(
            f"{name} bonus argument normalize must be one of: {', '.join(NORMALIZE_CHOICES)}; "
            f"got {whole['normalize']!r}"
        )
    check_settings(
        f"{name} bonus argument",
        {"first_visit": first_visit, "obs_key": obs_key},
        {"first_visit": bool, "obs_key": str | None},
    )
    built = {t: make_bonus(t, **per_term[t]) for t in terms}
    bonus: Bonus = Sum(built, weights=terms, **whole)
    bonus = FirstVisit(bonus) if first_visit else bonus
    return ObsKey(bonus, obs_key) if obs_key is not None else bonus


def bonus_hparams(bonus: object) -> dict[str, Any]:
    """The keyword hyper-parameters a bonus was built with, read back from its attributes."""
    if isinstance(bonus, Sum):
        return {
            "terms": {name: bonus_hparams(term) for name, term in bonus.terms.items()},
            "weights": dict(bonus.weights),
            "normalize": bonus.normalize,
        }
    if isinstance(bonus, FirstVisit):
        return {**bonus_hparams(bonus.inner), "first_visit": True}
    if isinstance(bonus, ObsKey):
        return {**bonus_hparams(bonus.inner), "obs_key": bonus.key}
    params = inspect.signature(type(bonus)).parameters.values()
    return {
        p.name: getattr(bonus, p.name)
        for p in params
        if p.kind is inspect.Parameter.KEYWORD_ONLY and hasattr(bonus, p.name)
    }


__all__ = [
    "AEHash",
    "BONUSES",
    "DORA",
    "RE3",
    "VIME",
    "VQCount",
    "Disagreement",
    "Dynamics",
    "ICM",
    "RND",
    "Bonus",
    "Count",
    "CountMinSketch",
    "E3B",
    "NovelD",
    "RIDE",
    "EC",
    "FirstVisit",
    "ObsKey",
    "NGU",
    "PseudoCount",
    "DiscountedReturnStd",
    "RunningMeanStd",
    "SimHash",
    "Sum",
    "Transitions",
    "bonus_hparams",
    "combination_terms",
    "make_bonus",
]
