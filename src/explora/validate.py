"""Type and range checks of hyper-parameters, in one place for every config and bonus.

A setting is checked twice, before anything is built:

* against its type, read from the config dataclass's field annotations or the bonus
  constructor's signature: an int where a float is expected is fine, a string or a bool where
  a number is expected is not, and an integral float (``1e6``) where an int is expected
  becomes that int;
* against ``LIMITS``, a table of accepted ranges by parameter *name* (a learning rate > 0, a
  discount in [0, 1], a width >= 1, ...), shared by every algo and bonus so that
  ``learning_rate`` means the same everywhere. Numbers must also be finite, whatever their name.

A field that is not in the table (a config grows new fields) gets the type check and the
finiteness check only, so the table never has to list every field to stay correct.

Example:
    >>> from explora.agents.ppo import PPOConfig
    >>> check_settings("ppo setting", {"gamma": 0.99, "hidden": 1e2}, hints_of(PPOConfig))
    {'gamma': 0.99, 'hidden': 100}
    >>> check_settings("ppo setting", {"gamma": 1.5}, hints_of(PPOConfig))
    Traceback (most recent call last):
    ...
    ValueError: ppo setting gamma must be in [0, 1], got 1.5
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

__all__ = ["LIMITS", "Limit", "check_settings", "hints_of"]


@dataclass(frozen=True)
class Limit:
    """An interval of accepted values; ``None`` leaves that side open to infinity."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    """the low end itself is refused (``> low`` rather than ``>= low``)"""
    high_open: bool = False

    def accepts(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return "finite"


POSITIVE = Limit(0, low_open=True)
NON_NEGATIVE = Limit(0)
AT_LEAST_ONE = Limit(1)
UNIT = Limit(0, 1)
UNIT_NO_ZERO = Limit(0, 1, low_open=True)

LIMITS: dict[str, Limit] = {
    # A step size of 0 never learns and a negative one climbs the loss; Adam's eps divides.
    "learning_rate": POSITIVE,
    "value_learning_rate": POSITIVE,
    "adam_eps": POSITIVE,
    # Discounts and mixing weights of returns.
    "gamma": UNIT,
    "int_gamma": UNIT,
    "gae_lambda": UNIT,
    # Counts, sizes and widths: a zero-width layer or an empty batch cannot be built.
    **dict.fromkeys(
        (
            "total_frames",
            "num_envs",
            "num_steps",
            "update_epochs",
            "minibatch_size",
            "hidden",
            "hidden_size",
            "feature_size",
            "num_minibatches",
            "num_bits",
            "buffer_size",
            "batch_size",
            "n_step",
            "target_update_every",
            "train_every",
            "gradient_steps",
            "num_heads",
            "log_every",
            "checkpoint_every",
            "episodes_per_update",
            "value_epochs",
            "max_episode_steps",
        ),
        AT_LEAST_ONE,
    ),  # fmt: skip
    # Counts where 0 means "none" or "the default".
    **dict.fromkeys(
        (
            "learning_starts",
            "warmup_steps",
            "epsilon_decay_frames",
            "grad_variance_every",
            "torch_threads",
            "seed",
        ),
        NON_NEGATIVE,
    ),  # fmt: skip
    # Probabilities and fractions.
    "epsilon": UNIT,
    "epsilon_start": UNIT,
    "epsilon_end": UNIT,
    "mask_prob": UNIT_NO_ZERO,
    "solved_threshold": UNIT_NO_ZERO,
    "update_proportion": UNIT_NO_ZERO,
    # Clips, thresholds and scales that divide or bound something: 0 would disable or divide.
    "clip_coef": POSITIVE,
    "max_grad_norm": POSITIVE,
    "target_kl": POSITIVE,
    "temperature": POSITIVE,
    "obs_clip": POSITIVE,
    "int_scale_horizon": POSITIVE,
    "prior_alpha": POSITIVE,
    "prior_beta": POSITIVE,
    "prior_std": POSITIVE,
    "noise_std": POSITIVE,
    # Weights whose sign has no meaning (a negative value weight would climb the value loss).
    "vf_coef": NON_NEGATIVE,
    "beta": NON_NEGATIVE,
    "prior_scale": NON_NEGATIVE,
    "ucb_c": NON_NEGATIVE,
    # The count-min sketch's row moduli: a row of one bucket counts everything together.
    "moduli": Limit(2),
}

#: Where one owner (an algo or bonus name) accepts what the table refuses: DORA's
#: ``hidden_size=0`` is its tabular E-network.
OWNER_LIMITS: dict[tuple[str, str], Limit] = {("dora", "hidden_size"): NON_NEGATIVE}
"""Accepted range by parameter name; applied to each element of a sequence (``hidden`` of DQN,
``moduli`` of SimHash). ``ent_coef``, ``ext_coef``, ``int_coef`` and other weights need only be
finite (a negative entropy or intrinsic weight is unusual, not meaningless)."""


def hints_of(target: type | Callable[..., Any]) -> dict[str, Any]:
    """The resolved type annotations of a dataclass's fields or a constructor's parameters
    (``{}`` when they cannot be resolved: then only ranges and finiteness are checked)."""
    is_class = isinstance(target, type) and not _is_dataclass(target)
    obj = target.__init__ if is_class else target  # type: ignore[misc]  # a class's own
    try:
        hints = typing.get_type_hints(obj)
    except (NameError, TypeError):  # a forward reference the module cannot resolve
        return {}
    hints.pop("return", None)
    return hints


def _is_dataclass(cls: type) -> bool:
    return hasattr(cls, "__dataclass_fields__")


def check_settings(
    owner: str, values: Mapping[str, Any], hints: Mapping[str, Any]
) -> dict[str, Any]:
    """Check each of ``values`` against its type in ``hints`` and its range in ``LIMITS``.

    ``owner`` starts the message (``"ppo setting"``, ``"rnd bonus argument"``, or ``""``).
    Returns the values with integral floats turned into ints and lists into tuples where the
    annotation asks for them. Raises ``ValueError`` naming the parameter, the bad value and what is
    accepted.
    """
    return {name: _check_one(owner, name, value, hints.get(name)) for name, value in values.items()}


def _check_one(owner: str, name: str, value: Any, hint: Any) -> Any:
    what = f"{owner} {name}".strip()
    if hint is not None:
        choices = _literal_choices(hint)
        ok, value = _conform(value, hint)
        if not ok:
            if choices is not None and isinstance(value, str):
                raise ValueError(
                    f"unknown {name} {value!r} for {owner.split()[0]}; choose one of: "
                    f"{', '.join(map(str, choices))}"
                )
            raise ValueError(f"{what} must be {_describe(hint)}, got {value!r}")
    numbers = _numbers_in(value)
    for number in numbers:
        if not math.isfinite(number):
            raise ValueError(f"{what} must be a finite number, got {value!r}")
    limit = OWNER_LIMITS.get(((owner.split() or [""])[0], name), LIMITS.get(name))
    if limit is not None and any(not limit.accepts(n) for n in numbers):
        if _is_number(value):
            raise ValueError(f"{what} must be {limit}, got {value!r}")
        raise ValueError(f"{what} must hold only values {limit}, got {value!r}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers_in(value: Any) -> list[float]:
    if _is_number(value):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if _is_number(v)]
    return []


def _literal_choices(hint: Any) -> tuple[Any, ...] | None:
    if get_origin(hint) is Literal:
        return get_args(hint)
    if _is_union(hint):
        for arg in get_args(hint):
            if get_origin(arg) is Literal:
                return get_args(arg)
    return None


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _conform(value: Any, hint: Any) -> tuple[bool, Any]:
    """``(accepted, value as the field should hold it)``; unknown annotations accept anything."""
    if hint is Any:
        return True, value
    if hint is type(None) or hint is None:
        return value is None, value
    origin, args = get_origin(hint), get_args(hint)
    if _is_union(hint):
        for arg in args:
            ok, converted = _conform(value, arg)
            if ok:
                return True, converted
        return False, value
    if origin is Literal:
        return value in args, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        return _is_number(value), value
    if hint is str:
        return isinstance(value, str), value
    if origin in (tuple, list, Sequence, typing.Sequence):
        if not isinstance(value, list | tuple):
            return False, value
        element = args[0] if args else Any
        items = []
        for item in value:
            ok, converted = _conform(item, element)
            if not ok:
                return False, value
            items.append(converted)
        return True, tuple(items) if origin is tuple else type(value)(items)
    return True, value


def _describe(hint: Any) -> str:
    if _is_union(hint):
        return " or ".join(_describe(a) for a in get_args(hint))
    if hint is type(None) or hint is None:
        return "None"
    if get_origin(hint) is Literal:
        return "one of: " + ", ".join(map(repr, get_args(hint)))
    origin, args = get_origin(hint), get_args(hint)
    if origin in (tuple, list, Sequence, typing.Sequence):
        element = _describe(args[0]) if args else "anything"
        kind = "tuple" if origin is tuple else "list"
        return f"a {kind} of {element.removeprefix('an ').removeprefix('a ')}s"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))
