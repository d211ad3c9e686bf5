"""Run tags (`tags=[baseline,lr_sweep]`, lightning-hydra-template's convention): checked before anything is built,
recorded in metrics.json, and passed to the experiment trackers that have tags (W&B's run tags; MLflow's run tags,
one per tag with the value "true", so that `tags.baseline = 'true'` finds them). CSV and TensorBoard have no
tags: there the run's metrics.json and .hydra/config.yaml hold them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

MAX_LENGTH = 64  # W&B refuses longer tags, and only when the run starts: checked here, before training
EXAMPLE = "tags=[baseline,lr_sweep]"


def run_tags(tags: Any) -> list[str]:
    """The run's tags as a list of distinct strings, in the given order.

    A single word (`tags=baseline`) is one tag; numbers become their text (`tags=[2024]`). Anything else (a
    mapping, a nested list, true/false, an empty or overlong tag) is refused, naming the key and the fix.
    """
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    if isinstance(tags, DictConfig | Mapping) or not isinstance(tags, ListConfig | list | tuple):
        raise ValueError(f"tags={_show(tags)}: not a list of tags. Give words, e.g. {EXAMPLE}")
    names: list[str] = []
    for tag in tags:
        if isinstance(tag, bool) or not isinstance(tag, str | int | float):
            raise ValueError(f"tags={_show(tags)}: {_show(tag)} is not a tag (a word or a number). Give words, "
                             f"e.g. {EXAMPLE}")
        name = str(tag).strip()
        if not name or len(name) > MAX_LENGTH:
            problem = "is empty" if not name else f"has {len(name)} characters, more than W&B takes ({MAX_LENGTH})"
            raise ValueError(f"tags={_show(tags)}: the tag {name!r} {problem}. Give short words, e.g. {EXAMPLE}")
        if name not in names:
            names.append(name)
    return names


def _show(value: Any) -> str:
    """A value as JSON, close to how it is written on the command line (true, not True)."""
    plain = OmegaConf.to_container(value) if isinstance(value, DictConfig | ListConfig) else value
    return json.dumps(plain, default=str)


# Logger class -> how its config takes the run's tags (existing tags of the logger's own config are kept).
def _wandb(existing: Any, tags: list[str]) -> list[str]:
    return list(dict.fromkeys([*(existing or []), *tags]))


def _mlflow(existing: Any, tags: list[str]) -> dict[str, str]:
    return {**(existing or {}), **{tag: "true" for tag in tags}}


TAGGERS = {"WandbLogger": _wandb, "MLFlowLogger": _mlflow}


def tagged_logger_configs(logger_cfg: Mapping[str, Any] | None, tags: list[str]) -> dict[str, Any]:
    """`cfg.logger` with the run's tags added to each logger that takes tags, ready for `instantiate`; the other
    loggers' configs (and None entries) are returned as they are. `logger_cfg` itself is not changed."""
    configs: dict[str, Any] = {}
    for name, spec in (logger_cfg or {}).items():
        cls = str(spec.get("_target_", "")).rsplit(".", 1)[-1] if spec is not None else ""
        if cls not in TAGGERS or not tags:
            configs[name] = spec
            continue
        resolved = OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else dict(spec)
        resolved["tags"] = TAGGERS[cls](resolved.get("tags"), tags)
        configs[name] = OmegaConf.create(resolved)
    return configs
