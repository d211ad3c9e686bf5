"""The composed config as a tree, as lightning-hydra-template's `print_config_tree` shows it: printed at the start
of a run with `print_config=true` (the debug presets set it) and written to `<run>/config_tree.log`.

Hydra saves the same config as `.hydra/config.yaml` in every run anyway; the tree is for reading: groups in the
order a run uses them, values resolved (`${seed}` shows the seed, `${paths.output_dir}` the folder), so what is
printed is what the run trains with.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from noisylab.utils.atomic import atomic_write_text

if TYPE_CHECKING:
    from rich.tree import Tree

# Groups first, in the order data flows through a run; the top-level keys (seed, tags, ...) after them.
ORDER = ("data", "noise", "ood", "model", "loss", "method", "optim", "sched", "trainer", "callbacks", "logger",
         "eval", "paths")
FILE_NAME = "config_tree.log"
WIDTH = 120  # of the file; the terminal's own width when printing


def _branch_text(node: object) -> str:
    """A group as YAML with interpolations resolved; where one cannot be (a `${hydra:...}` value outside a Hydra
    run, a `???`), the group is shown as written."""
    if not isinstance(node, DictConfig | ListConfig):
        return str(node)
    try:
        return OmegaConf.to_yaml(node, resolve=True)
    except OmegaConfBaseException:  # InterpolationResolutionError, MissingMandatoryValue, ...
        return OmegaConf.to_yaml(node, resolve=False)


def config_tree(cfg: DictConfig, order: Sequence[str] = ORDER) -> Tree:
    """A rich Tree with one branch per top-level key of `cfg`: the keys in `order` first, then the others in the
    config's own order."""
    from rich.syntax import Syntax  # here, not at import: a run without print_config needs no rich
    from rich.tree import Tree

    tree = Tree("CONFIG", style="dim", guide_style="dim")
    raw = OmegaConf.to_container(cfg, resolve=False)
    keys = [key for key in order if key in cfg] + [key for key in cfg if key not in order]
    for key in keys:
        try:
            value = cfg[key]
        except OmegaConfBaseException:  # a top-level `???` or an interpolation that cannot be resolved here
            value = raw[key]
        branch = tree.add(str(key), style="dim", guide_style="dim")
        branch.add(Syntax(_branch_text(value).rstrip("\n"), "yaml", background_color="default"))
    return tree


def _is_rank_zero() -> bool:
    """Rank 0 of a DDP run (or a single process): the other ranks compose the same config and would repeat it."""
    from lightning.pytorch.utilities import rank_zero_only  # imported by the run already; light at this point

    return rank_zero_only.rank == 0


def print_config_tree(cfg: DictConfig) -> None:
    """Print the config tree when `cfg.print_config` is true, on rank 0 only."""
    if cfg.get("print_config") and _is_rank_zero():
        from rich.console import Console

        Console().print(config_tree(cfg))


def save_config_tree(cfg: DictConfig, output_dir: Path) -> Path | None:
    """Write the config tree as plain text to `<output_dir>/config_tree.log` when `cfg.print_config` is true
    (atomically, like every file of a run); returns the file, or None when nothing was written."""
    if not (cfg.get("print_config") and _is_rank_zero()):
        return None
    from rich.console import Console

    console = Console(file=io.StringIO(), width=WIDTH, record=True, color_system=None)
    console.print(config_tree(cfg))
    path = Path(output_dir) / FILE_NAME
    atomic_write_text(path, console.export_text())
    return path
