"""Refuse a composed config's mistakes before anything is built or written, naming key, value, what is allowed
and the fix.

`check_config(cfg)` runs at the start of `train.run()`. All problems are reported at once, one line each, as a
ConfigError (a ValueError, which the CLI prints without a traceback). Combinations a user may mean are warned
about (ConfigWarning). What is checked, and why here:

- Types, generically. Hydra reads `noise.rate=abc` as the string "abc", and the code that finally uses it fails
  deep inside with a TypeError. A config node with a `_target_` names the class or function it is passed to, so
  each of its keys is checked against that callable's signature: a parameter annotated only with numbers (int,
  float; None and torch.Tensor aside, a config holds no tensor), booleans and `Literal[...]` values refuses a
  value of another kind (a string where a number belongs, "maybe" for a bool, 17 for trainer.precision). The
  annotations are what the code accepts, so no list of numeric keys needs upkeep and a key the user overrode
  needs no YAML default to compare with; a parameter without a usable annotation falls back to its default's
  type. A node passed as keyword arguments to another callable is listed in KWARGS_OF (data.augment); keys with
  no callable to read (seed, resume, loss.l1) have VALUE_RULES. Interpolations (`${seed}`) are checked where
  they point, missing values (`???`) are left to Hydra, None is never refused here.
- Values that Lightning or the datamodule take silently the wrong way (VALUE_RULES): trainer.max_epochs (-1
  trains forever, 0 writes an untrained model's metrics), data.val_size (1.0 reads as one sample), batch limits;
  the type walk leaves their keys to them.
- The loss config's head against its criterion and objective (the drainage loss takes the last output as the
  drainage node; every other loss reads all outputs as classes), from the classes' own attributes.
- The trainer's accelerator and devices against this machine (trainer=gpu without CUDA).
- A method whose own phase starts after a warm-up (DivideMix, InstanceGM: method.warmup_epochs) asked to train no
  epoch past it: it would report plain training on the noisy labels under its own name.

Class maps of asymmetric noise are checked where the dataset's classes are known (AsymmetricNoise.check_classes).
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal, get_args, get_origin

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

Rule = Callable[[str, Any], "str | None"]


class ConfigError(ValueError):
    """A config the run cannot use; the message holds one line per problem."""


class ConfigWarning(UserWarning):
    """A config that runs but is probably not what was meant."""


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError listing every problem of `cfg`, and warn about doubtful combinations."""
    problems = [*_type_problems(cfg, ""), *_value_problems(cfg), *_trainer_problems(cfg), *_warmup_problems(cfg)]
    loss_problems, doubts = _loss_problems(cfg)
    problems += loss_problems
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else
                          f"{len(problems)} problems in the config:\n" + "\n".join(f"- {p}" for p in problems))
    for doubt in doubts:
        warnings.warn(doubt, ConfigWarning, stacklevel=2)


# ------------------------------------------------------------------------------------------- showing values
def _show(value: Any) -> str:
    """A value as it is written on the command line (true, null, abc, [0, 2])."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, ListConfig):
        return str(OmegaConf.to_container(value))
    return str(value)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ------------------------------------------------------------------------------------------- types
# Nodes passed as keyword arguments to a callable other than their own `_target_`.
KWARGS_OF = {"data.augment": "noisylab.data.augment.BatchAugment"}


class _Expected(typing.NamedTuple):
    """What a parameter accepts from a config: some of int, float, bool, and literal values."""

    kinds: frozenset[type]
    literals: tuple[Any, ...]

    def fits(self, value: Any) -> bool:
        if any(value == lit and type(value) is type(lit) for lit in self.literals):
            return True
        if isinstance(value, bool):
            return bool in self.kinds
        if isinstance(value, float):
            return float in self.kinds
        return isinstance(value, int) and bool(self.kinds & {int, float})

    def describe(self) -> str:
        parts = []
        if float in self.kinds:
            parts.append("a number")
        elif int in self.kinds:
            parts.append("a whole number")
        if bool in self.kinds:
            parts.append("true or false")
        shown = list(dict.fromkeys(_show(lit) for lit in self.literals))  # Lightning's 16 and "16" read alike
        if shown:
            parts.append(shown[0] if len(shown) == 1 else "one of " + ", ".join(shown))
        return " or ".join(parts)


def _union_members(annotation: Any) -> list[Any]:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _union_members(arg)]
    return [annotation]


def _expected(annotation: Any) -> _Expected | None:
    """The scalar kinds `annotation` allows, or None when it allows a string or anything unjudged (a class)."""
    kinds: set[type] = set()
    literals: list[Any] = []
    for member in _union_members(annotation):
        if member is type(None) or member is torch.Tensor:
            continue
        if get_origin(member) is Literal:
            literals += get_args(member)
        elif member in (int, float, bool):
            kinds.add(member)
        else:
            return None
    return _Expected(frozenset(kinds), tuple(literals)) if kinds or literals else None


def _default_type(default: Any) -> type | None:
    """The type of a parameter's default, when it is one a config can be checked against."""
    for kind in (bool, int, float):
        if isinstance(default, kind):
            return kind
    return None


@functools.cache
def _parameters(target: str) -> dict[str, tuple[_Expected, Any]] | None:
    """Per keyword parameter of the callable `target` names: what it accepts and its default.

    A class's parameters are its __init__'s, and those of the base classes an __init__ passes **kwargs to.
    None when `target` cannot be imported (building it will say why)."""
    try:
        obj = get_object(target)
    except Exception:  # noqa: BLE001 - any import failure: the run reports it when it builds the object
        return None
    functions = [k.__dict__["__init__"] for k in obj.__mro__ if "__init__" in k.__dict__] if isinstance(obj, type) \
        else [obj]
    found: dict[str, tuple[_Expected, Any]] = {}
    for function in functions:
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            break
        hints = _type_hints(function)
        for name, parameter in signature.parameters.items():
            annotation = hints.get(name, _default_type(parameter.default))
            expected = _expected(annotation) if annotation is not None else None
            if name not in found and expected is not None:
                found[name] = (expected, parameter.default)
        if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            break
    return found


def _type_hints(function: Callable) -> dict[str, Any]:
    """The resolved annotations of `function`; empty when they cannot be resolved (names only for type checkers)."""
    try:
        return typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 - NameError, TypeError ... from annotations that are only strings
        return {}


def _type_problems(node: DictConfig, path: str) -> Iterator[str]:
    """Keys of `node` (at `path`) whose value does not fit what their callable accepts, then its children's."""
    target = node.get("_target_") if "_target_" in node and not OmegaConf.is_interpolation(node, "_target_") else None
    callable_path = str(target) if target is not None else KWARGS_OF.get(path)
    params = _parameters(callable_path) if callable_path else None
    for key in node:
        full = f"{path}.{key}" if path else str(key)
        if str(key).startswith("_") or full == "hydra" or full in VALUE_RULES or OmegaConf.is_missing(node, key) \
                or OmegaConf.is_interpolation(node, key):
            continue
        value = node[key]
        if isinstance(value, DictConfig):
            yield from _type_problems(value, full)
            continue
        expected, default = (params or {}).get(str(key), (None, None))
        if expected is None or value is None or isinstance(value, ListConfig) or expected.fits(value):
            continue
        where = f" ({str(target).rsplit('.', 1)[-1]}'s {key})" if target is not None else ""
        example = f"; e.g. {full}={_show(default)}" if default is not None and expected.fits(default) else ""
        string = f", not the string {value!r}" if isinstance(value, str) else ""
        yield f"{full}={_show(value)}: must be {expected.describe()}{where}{string}{example}"


# ------------------------------------------------------------------------------------------- values
def _count(meaning: str, at_least: int, example: int, why: dict[Any, str] | None = None,
           nullable: bool = False) -> Rule:
    """A rule for a whole number >= `at_least` (`meaning` says what it counts; `why` explains some bad values)."""

    def rule(key: str, value: Any) -> str | None:
        if (value is None and nullable) or (_is_whole(value) and value >= at_least):
            return None
        reason = (why or {}).get(value) if _is_whole(value) else None
        null = " or null" if nullable else ""
        return (f"{key}={_show(value)}: must be a whole number >= {at_least}{null} ({meaning}); "
                + (reason or f"e.g. {key}={example}"))

    return rule


def _flag(key: str, value: Any) -> str | None:
    return None if isinstance(value, bool) else f"{key}={_show(value)}: must be true or false"


def _validation_metric(key: str, value: Any) -> str | None:
    """Early stopping, like model selection, watches a validation metric: stopping on a test metric tunes on
    the test set."""
    if isinstance(value, str) and value.startswith("val/"):
        return None
    return (f"{key}={_show(value)}: must be a validation metric (val/..., e.g. {key}=val/acc), never a test or "
            "train metric")


def _weight(key: str, value: Any) -> str | None:
    ok = _is_number(value) and value >= 0
    return None if ok else f"{key}={_show(value)}: must be a number >= 0, e.g. {key}=1e-4 (0 turns it off)"


def _val_size(key: str, value: Any) -> str | None:
    """A fraction in (0, 1) or a count >= 1, as the datamodule reads it (`val_size < 1`: fraction); 0 is left to the
    datamodule, which uses a dataset's official validation split or refuses the empty split."""
    if _is_whole(value) and value >= 0 or isinstance(value, float) and 0 <= value < 1:
        return None
    allowed = "a fraction of the noisy training set below 1 (e.g. 0.1) or a whole number of samples (e.g. 5000)"
    if isinstance(value, float) and value.is_integer() and value >= 1:
        fix = "1 sample: write 1 for one sample or a fraction below 1" if value == 1 else \
            f"{int(value)} samples: write {int(value)}"
        return f"{key}={_show(value)}: must be {allowed}; {value} reads as {fix}"
    if _is_number(value) and value < 0:
        return f"{key}={_show(value)}: must be >= 0, {allowed}"
    return f"{key}={_show(value)}: must be {allowed}"


def _batch_limit(key: str, value: Any) -> str | None:
    """Lightning's limit_*_batches: a fraction in [0, 1] of the batches or a count >= 0 (refused only at fit)."""
    if value is None or _is_whole(value) and value >= 0 or isinstance(value, float) and 0 <= value <= 1:
        return None
    return (f"{key}={_show(value)}: must be a fraction of the batches in [0, 1] (e.g. 0.25) or a whole number of "
            "batches >= 0 (e.g. 10)")


def _seed(key: str, value: Any) -> str | None:
    if _is_whole(value) and 0 <= value < 2**32:
        return None
    return f"{key}={_show(value)}: must be a whole number >= 0 and below 2**32 (numpy's seed range), e.g. {key}=0"


VALUE_RULES: dict[str, Rule] = {
    "seed": _seed,
    "resume": _flag,
    "print_config": _flag,
    "callbacks.early_stopping.monitor": _validation_metric,
    "loss.l1": _weight,
    "data.val_size": _val_size,
    "trainer.max_epochs": _count("the number of epochs to train", 1, 30, {
        -1: "-1 would train forever", 0: "0 would only test an untrained model and write its metrics"}),
    "trainer.num_nodes": _count("machines to train on", 1, 1),
    "trainer.check_val_every_n_epoch": _count("epochs between validations", 1, 1, nullable=True),
    **{f"trainer.limit_{split}_batches": _batch_limit for split in ("train", "val", "test", "predict")},
}


_ABSENT = object()


def _value_problems(cfg: DictConfig) -> Iterator[str]:
    for key, rule in VALUE_RULES.items():
        if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
            continue
        problem = rule(key, OmegaConf.select(cfg, key))
        if problem:
            yield problem


# ------------------------------------------------------------------------------------------- warm-up
def _warmup_problems(cfg: DictConfig) -> Iterator[str]:
    """trainer.max_epochs <= method.warmup_epochs trains only the warm-up (the loss config on every noisy label,
    no co-divide, no MixMatch), and its test would be reported as the method's. Refused, unless the run is not
    tested (test_on=none): training the warm-up now and continuing with resume=true and more epochs later."""
    warmup = OmegaConf.select(cfg, "method.warmup_epochs", default=None)
    epochs = OmegaConf.select(cfg, "trainer.max_epochs", default=None)
    if not (_is_whole(warmup) and _is_whole(epochs)) or epochs < 1 or epochs > warmup or cfg.get("test_on") == "none":
        return
    target = OmegaConf.select(cfg, "method._target_", default=None)
    name = str(target).rsplit(".", 1)[-1] if target else "the method"
    yield (f"trainer.max_epochs={epochs} <= method.warmup_epochs={warmup}: {name} would only run its warm-up (plain "
           f"training with the loss config on the noisy labels) and report that as {name}. Train past the warm-up "
           f"(e.g. trainer.max_epochs={warmup + max(warmup, 1)}) or shorten it (method.warmup_epochs={epochs - 1}); "
           "to train only the warm-up now and continue later, give test_on=none, then resume=true with more epochs")


# ------------------------------------------------------------------------------------------- trainer
def _trainer_problems(cfg: DictConfig) -> Iterator[str]:
    """Accelerator and devices this machine cannot give (Lightning says so only once the Trainer is built)."""
    accelerator = OmegaConf.select(cfg, "trainer.accelerator")
    devices = OmegaConf.select(cfg, "trainer.devices")
    if _is_whole(devices) and (devices == 0 or devices < -1):
        yield (f"trainer.devices={devices}: must be >= 1 (that many devices), -1 (all of them) or auto, e.g. "
               "trainer.devices=1")
    if not isinstance(accelerator, str):
        return
    from lightning.pytorch.accelerators import AcceleratorRegistry

    known = {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
    name = accelerator.lower()
    if name not in known:
        yield (f"trainer.accelerator={accelerator}: not an accelerator Lightning knows; use one of "
               f"{', '.join(sorted(known))} (or trainer=cpu, trainer=gpu, trainer=default for auto)")
    elif name in ("gpu", "cuda"):
        yield from _cuda_problems(cfg, accelerator, devices)
    elif name == "mps" and not torch.backends.mps.is_available():
        yield f"trainer.accelerator={accelerator} but torch.backends.mps.is_available() is False; use trainer=cpu"


def _cuda_problems(cfg: DictConfig, accelerator: str, devices: Any) -> Iterator[str]:
    if not torch.cuda.is_available():
        yield (f"trainer.accelerator={accelerator} but torch.cuda.is_available() is False (no CUDA GPU here, or a "
               "CPU-only PyTorch build): use trainer=cpu or trainer=default (accelerator auto uses a GPU when "
               "there is one)")
        return
    count = torch.cuda.device_count()
    ids = OmegaConf.to_container(devices) if isinstance(devices, ListConfig) else None
    if _is_whole(devices) and devices > count:
        yield (f"trainer.devices={devices} but this machine has {count} CUDA GPU(s); use trainer.devices={count} or "
               "trainer.devices=-1 (all)")
    elif ids is not None and any(not _is_whole(i) or not 0 <= i < count for i in ids):
        yield f"trainer.devices={_show(devices)}: GPU ids run from 0 to {count - 1} on this machine"
    precision = str(OmegaConf.select(cfg, "trainer.precision"))
    if precision.startswith("bf16") and not torch.cuda.is_bf16_supported():
        yield (f"trainer.precision={precision} but this GPU has no bfloat16 support; use trainer.precision=16-mixed "
               "or trainer.precision=32-true")


# ------------------------------------------------------------------------------------------- loss head
def _targets(node: Any) -> Iterator[str]:
    """Every `_target_` in a config subtree."""
    if isinstance(node, DictConfig):
        for key in node:
            if OmegaConf.is_missing(node, key) or OmegaConf.is_interpolation(node, key):
                continue
            if key == "_target_":
                yield str(node[key])
            else:
                yield from _targets(node[key])


def _locate(key: str, target: str, example: str, problems: list[str]) -> Any:
    try:
        return get_object(target)
    except Exception as exc:  # noqa: BLE001 - ImportError, AttributeError ...: the path names nothing
        problems.append(f"{key}={target}: no such class ({type(exc).__name__}); e.g. {key}={example}")
        return None


def _loss_problems(cfg: DictConfig) -> tuple[list[str], list[str]]:
    """(problems, doubts) of the loss config's head, criterion and objective taken together."""
    problems: list[str] = []
    head_target = OmegaConf.select(cfg, "loss.head._target_")
    criterion_target = OmegaConf.select(cfg, "loss.criterion._target_")
    if not isinstance(head_target, str) or not isinstance(criterion_target, str):
        return problems, []
    head = _locate("loss.head._target_", head_target, "noisylab.models.LinearHead", problems)
    criterion = _locate("loss.criterion._target_", criterion_target, "noisylab.losses.CrossEntropy", problems)
    losses = [obj for t in _targets(cfg.loss.criterion) if isinstance(obj := _quiet_locate(t), type)
              and issubclass(obj, torch.nn.Module)]
    objective_target = OmegaConf.select(cfg, "loss.objective._target_")
    objective = _quiet_locate(objective_target) if isinstance(objective_target, str) else None
    if head is None or criterion is None:
        return problems, []
    problems += _drainage_fit(head, head_target, criterion, losses)
    for needed in getattr(objective, "criterion_needs", ()):
        if not hasattr(criterion, needed):
            problems.append(
                f"loss.objective ({objective.__name__}) needs a criterion with {needed}, and loss.criterion "
                f"({criterion.__name__}) has none: use loss=dismax (noisylab.losses.dismax.EntropicCrossEntropy), or "
                "loss.objective=null to train without the objective")
    return problems, _distance_fit(head, head_target, criterion)


def _quiet_locate(target: str) -> Any:
    try:
        return get_object(target)
    except Exception:  # noqa: BLE001 - reported by _locate where it matters, or when the object is built
        return None


def _drainage_fit(head: type, head_target: str, criterion: type, losses: list[type]) -> list[str]:
    """A drainage loss needs a head with a drainage node, every other loss a head without one."""
    needs_node = any(getattr(loss, "drainage_node", False) for loss in losses)
    has_node = bool(getattr(head, "has_drainage", False))
    if needs_node and not has_node:
        return [f"loss.head._target_={head_target} has no drainage node, but loss.criterion ({criterion.__name__}) "
                "takes the last output as the drainage node: it would drain the last real class. Use loss=drainage "
                "(or loss=drainage_open), or loss.head._target_=noisylab.models.DrainageHead"]
    if has_node and not needs_node:
        return [f"loss.head._target_={head_target} adds a drainage node (output K), but loss.criterion "
                f"({criterion.__name__}) reads every output as a class: it would train the drainage node as an extra "
                "class. Use loss.head._target_=noisylab.models.LinearHead (the head of loss=ce and the other "
                "class losses), or loss=drainage for the drainage loss"]
    return []


def _distance_fit(head: type, head_target: str, criterion: type) -> list[str]:
    """Prototype-distance heads are trained with the entropic-scale loss; apart, each still trains (an ablation)."""
    distances = bool(getattr(head, "prototype_distances", False))
    wants = bool(getattr(criterion, "distance_logits", False))
    if distances == wants:
        return []
    if distances:
        return [f"loss.head._target_={head_target} outputs negative prototype distances, and loss.criterion "
                f"({criterion.__name__}) is not the entropic-scale cross-entropy they are trained with "
                "(noisylab.losses.dismax.EntropicCrossEntropy); loss=dismax or loss=isomax_plus pair them"]
    return [f"loss.criterion ({criterion.__name__}) is meant for a prototype-distance head, and loss.head._target_="
            f"{head_target} is none: it trains a linear head at a sharper temperature; loss=dismax or "
            "loss=isomax_plus bring their distance heads"]
