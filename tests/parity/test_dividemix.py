"""DivideMix's components and training step against the reference code (LiJunnan1992/DivideMix).

Fixtures (made by running the reference's own functions on fixed inputs; see each file's reference.note):
- dividemix_gmm.json: Train_cifar.py eval_train on fixed per-sample loss vectors (min-max normalisation,
  GaussianMixture(2, max_iter 10, tol 1e-2, reg_covar 5e-4), posterior of the low-mean component), and its
  90%-noise branch (mean of the last 5 epochs' normalised losses) over six epochs.
- dividemix_mixmatch.json: Train_cifar.py train() run as is on nn.Linear(6, 5) "networks" and fixed batches
  with fixed MixUp draws (lambda, permutation): per step the co-guess average, the sharpened guesses, the
  refined labels, the mixed inputs and targets, the logits of the mixed batch, Lx, Lu, the ramped weight, the
  prior penalty, the total loss, its gradient w.r.t. the logits and the trained network's weights after its
  SGD step; network 1's phase, then network 2's. Also warmup() (CE, + NegEntropy for asym) and linear_rampup.
- dividemix_settings.json: the reference's recipes and the paper's per-setting hyperparameters, with sources.

Ours:
- selection.clean_probability / normalise_losses / LossHistory;
- mixmatch.sharpen and mixmatch.mixup (its Beta draw and permutation fed the reference's draws);
- DivideMix._refine, _semi_loss and _warmup_loss, called on a small stand-in for the module (the attributes
  they read), whose networks are the fixture's linear maps;
- DivideMix._alternating_step, on a real DivideMix whose two networks are the fixture's nn.Linear(6, 5) (as
  backbone Identity + LinearHead), driven by hand: its data streams replaced by the fixture's batches, the
  Lightning plumbing (log, manual_backward, optimizers) by plain calls, the epoch set on the trainer. The
  method's hyperparameters and optimiser come from our presets experiment=dividemix_cifar10_sym50 and
  dividemix_cifar100_sym50 (the fixture's lambda_u / warm-up match those settings).
The ramp of lambda_u (the reference's linear_rampup) and the co-guess average are written inline in the
training step (no function of ours to call): they are checked through the driven step only, which is handed
each phase's num_iter as the reference computes it (n_labeled // batch + 1); _plan_epoch's own computation of
it (and of the phases' step counts, covered by tests/test_dividemix_schedule.py) is not exercised here.

Tolerances: the reference ran in float32 (as on its GPU) except eval_train's GMM, which sklearn fits in
float32 on the reference's float32 losses; we compute the GMM in float64 and the rest in float32. Clean
probabilities: atol 1e-5 (observed <= 3e-7); MixMatch values rtol 1e-5 (atol 1e-6); gradients by relative
L2 error <= 1e-4; weights after the SGD step rtol 1e-5 (atol 1e-6).
"""

from __future__ import annotations

import functools
import types
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from noisylab.methods.dividemix import DivideMix, _Phase
from noisylab.methods.mixmatch import mixup, sharpen
from noisylab.methods.selection import LossHistory, clean_probability, normalise_losses
from noisylab.models.classifier import Classifier
from noisylab.models.heads import LinearHead
from tests.conftest import compose_config
from tests.parity.reference import load_fixture, tensor

CONF = Path(__file__).resolve().parents[2] / "conf"
GMM = load_fixture("dividemix_gmm")
MIXMATCH = load_fixture("dividemix_mixmatch")
SETTINGS = load_fixture("dividemix_settings")

PROB_ATOL = 1e-5
VALUE = {"rtol": 1e-5, "atol": 1e-6}
GRAD_REL_L2 = 1e-4
# The presets whose method settings the driven steps use, per mixmatch case.
PRESET = {"two_phases_epoch12": "dividemix_cifar10_sym50",
          "end_of_rampup_epoch46_cifar100_like": "dividemix_cifar100_sym50"}


def case(fixture: dict, name: str) -> dict:
    return next(c for c in fixture["cases"] if c["name"] == name)


def rel_l2(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours.detach().double() - theirs).norm() / theirs.norm().clamp_min(1e-30))


def close(ours: torch.Tensor, theirs: Any, what: str, **tol: float) -> None:
    torch.testing.assert_close(ours.detach().double(), tensor(theirs), **(tol or VALUE), msg=lambda m: f"{what}: {m}")


# ============================================================================================ GMM split
GMM_CASES = [c["name"] for c in GMM["cases"] if "losses" in c["inputs"]]


@pytest.mark.parametrize("name", GMM_CASES)
def test_clean_probability_matches_eval_train(name: str) -> None:
    c = case(GMM, name)
    losses = tensor(c["inputs"]["losses"]).numpy()  # the reference held them in float32
    ref = np.asarray(c["outputs"]["clean_prob"])
    assert c["outputs"]["max_abs_diff_over_init_seeds_0_5"] < PROB_ATOL  # the fit does not hinge on the init
    np.testing.assert_allclose(normalise_losses(losses), c["outputs"]["normalised"], rtol=0, atol=1e-6)
    ours = clean_probability(losses)  # our defaults are the reference's GMM settings
    np.testing.assert_allclose(ours, ref, rtol=0, atol=PROB_ATOL, err_msg=f"{name}: clean probabilities")
    np.testing.assert_array_equal(ours > 0.5, ref > 0.5, err_msg=f"{name}: labeled set at p_threshold 0.5")


@pytest.mark.parametrize("name", ["history_r0.9", "history_r0.8"])
def test_loss_history_feeds_the_gmm_as_eval_train_does(name: str) -> None:
    """At r = 0.9 the reference fits the GMM to the mean of the last 5 epochs' normalised losses (fewer in the
    first epochs after the warm-up); otherwise to this epoch's. Ours: LossHistory(5) / LossHistory(1), as
    the 90% presets set method.loss_history (checked below with the settings)."""
    c = case(GMM, name)
    epochs = c["inputs"]["losses_per_epoch"]
    n = len(epochs[0])
    history = LossHistory(5 if c["params"]["r"] == 0.9 else 1, n)
    for e, (losses, ref) in enumerate(zip(epochs, c["outputs"]["clean_prob_per_epoch"], strict=True)):
        averaged = history.add(np.arange(n), tensor(losses).numpy())
        ours = clean_probability(averaged, normalise=False)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=PROB_ATOL, err_msg=f"{name}, epoch {e}")


def test_gmm_settings_are_the_references() -> None:
    recipe = case(SETTINGS, "recipes")["outputs"]["cifar"]["gmm"]
    conf = OmegaConf.load(CONF / "method" / "dividemix.yaml").method.gmm
    keys = ("max_iter", "tol", "reg_covar")
    assert {k: conf[k] for k in keys} == {k: recipe[k] for k in keys}
    defaults = clean_probability.__defaults__  # (max_iter, tol, reg_covar, seed, normalise)
    assert defaults[:3] == (recipe["max_iter"], recipe["tol"], recipe["reg_covar"])


# ============================================================================================ MixMatch pieces
def mixmatch_steps(name: str) -> list[dict[str, Any]]:
    """Each reference step with the two networks' weights it started from: (trained k, step, weights)."""
    c = case(MIXMATCH, name)
    current = {k: dict(v) for k, v in c["inputs"]["init"].items()}
    steps = []
    for k, phase in enumerate(c["outputs"]["phases"]):
        for step in phase["steps"]:
            steps.append({"k": k, "step": step, "weights": {n: dict(w) for n, w in current.items()}, "case": c,
                          "phase": phase})
            current[f"net{k + 1}"] = step["outputs"]["net_after"]
    return steps


def linear(weights: dict) -> nn.Linear:
    w = tensor(weights["weight"]).float()
    layer = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(tensor(weights["bias"]).float())
    return layer


ALL_STEPS = [(name, i) for name in PRESET for i in range(len(mixmatch_steps(name)))]


class FixedDraws:
    """Feeds our mixup the reference's draws: Beta(alpha, alpha).sample() -> lambda_draw, randperm -> perm."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, steps: list[dict]) -> None:
        self.lams = [s["inputs"]["lambda_draw"] for s in steps]
        self.perms = [s["inputs"]["perm"] for s in steps]
        draws = self
        real_randperm = torch.randperm

        class Beta:
            def __init__(self, a: float, b: float) -> None:
                self.args = (float(a), float(b))

            def sample(self) -> torch.Tensor:
                return torch.tensor(draws.lams.pop(0), dtype=torch.float64)

        def randperm(n: int, *args: Any, **kwargs: Any) -> torch.Tensor:
            if draws.perms and n == len(draws.perms[0]):
                return torch.tensor(draws.perms.pop(0), device=kwargs.get("device"))
            return real_randperm(n, *args, **kwargs)

        monkeypatch.setattr(torch.distributions, "Beta", Beta)
        monkeypatch.setattr(torch, "randperm", randperm)

    def all_used(self) -> bool:
        return not self.lams and not self.perms


def step_inputs(step: dict) -> dict[str, torch.Tensor]:
    i = step["inputs"]
    return {k: tensor(i[k]).float() for k in ("inputs_x", "inputs_x2", "inputs_u", "inputs_u2")} | {
        "labels_x": tensor(i["labels_x"]), "w_x": tensor(i["w_x"]).float()}


@pytest.mark.parametrize("name,index", ALL_STEPS)
def test_sharpen_gives_the_references_targets(name: str, index: int) -> None:
    out = mixmatch_steps(name)[index]["step"]["outputs"]
    close(sharpen(tensor(out["pu"]).float(), 0.5), out["targets_u"], "co-guessed targets (sharpened, T 0.5)")
    close(sharpen(tensor(out["px_refined"]).float(), 0.5), out["targets_x"], "refined targets (sharpened, T 0.5)")


def stand_in(num_classes: int, temperature: float = 0.5, **hparams: Any) -> types.SimpleNamespace:
    """What DivideMix's loss helpers read from the module."""
    return types.SimpleNamespace(head=LinearHead(1, num_classes),
                                 hparams=types.SimpleNamespace(sharpen_temperature=temperature, **hparams))


@pytest.mark.parametrize("name,index", ALL_STEPS)
def test_label_refinement_matches_the_reference(name: str, index: int) -> None:
    """_refine: w * y + (1 - w) * (p(x1) + p(x2)) / 2 of the trained network, sharpened."""
    s = mixmatch_steps(name)[index]
    net = linear(s["weights"][f"net{s['k'] + 1}"])
    x = step_inputs(s["step"])
    with torch.no_grad():
        own = [F.softmax(net(x["inputs_x"]), 1), F.softmax(net(x["inputs_x2"]), 1)]
        ours = DivideMix._refine(stand_in(s["case"]["params"]["num_class"]), own, x["labels_x"], x["w_x"])
    close(ours, s["step"]["outputs"]["targets_x"], "refined, sharpened labels")


@pytest.mark.parametrize("name,index", ALL_STEPS)
def test_mixup_with_the_references_draws(name: str, index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    s = mixmatch_steps(name)[index]
    out, x = s["step"]["outputs"], step_inputs(s["step"])
    inputs = torch.cat([x["inputs_x"], x["inputs_x2"], x["inputs_u"], x["inputs_u2"]])
    tx, tu = tensor(out["targets_x"]).float(), tensor(out["targets_u"]).float()
    draws = FixedDraws(monkeypatch, [s["step"]])
    mixed_x, mixed_t = mixup(inputs, torch.cat([tx, tx, tu, tu]), s["case"]["params"]["alpha"])
    assert draws.all_used()
    close(mixed_x, out["mixed_input"], "mixed inputs (lambda = max(draw, 1 - draw))")
    close(mixed_t, out["mixed_target"], "mixed targets")


@pytest.mark.parametrize("name,index", ALL_STEPS)
def test_semi_loss_value_and_gradient(name: str, index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """_semi_loss = MixUp + Lx (soft CE) + weight_u * Lu (MSE) + uniform prior penalty, at the reference's weight."""
    s = mixmatch_steps(name)[index]
    out, x = s["step"]["outputs"], step_inputs(s["step"])
    net = linear(s["weights"][f"net{s['k'] + 1}"])
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def class_logits(k: int, inputs: torch.Tensor) -> torch.Tensor:
        logits = net(inputs)
        logits.retain_grad()
        seen.append((inputs, logits))
        return logits

    module = stand_in(s["case"]["params"]["num_class"], mixup_alpha=s["case"]["params"]["alpha"])
    module._class_logits = class_logits
    FixedDraws(monkeypatch, [s["step"]])
    loss = DivideMix._semi_loss(module, s["k"], (x["inputs_x"], x["inputs_x2"]), tensor(out["targets_x"]).float(),
                                (x["inputs_u"], x["inputs_u2"]), tensor(out["targets_u"]).float(), out["lamb"])
    loss.backward()
    (inputs, logits), = seen
    close(inputs, out["mixed_input"], "mixed inputs")
    close(logits, out["logits"], "logits of the mixed batch")
    close(loss, out["loss"], "Lx + lamb * Lu + penalty")
    assert rel_l2(logits.grad, tensor(out["grad_logits"])) <= GRAD_REL_L2, "d loss / d logits"


@pytest.mark.parametrize("name", ["warmup_asym_neg_entropy", "warmup_sym_ce_only"])
def test_warmup_loss_with_and_without_the_confidence_penalty(name: str) -> None:
    """The warm-up: CE, plus the mean negative entropy of the predictions for asymmetric noise."""
    c = case(MIXMATCH, name)
    net = linear(c["inputs"]["init"])
    x, y = tensor(c["inputs"]["inputs"]).float(), tensor(c["inputs"]["labels"])
    outputs: list[torch.Tensor] = []

    def run(k: int, inputs: torch.Tensor) -> torch.Tensor:
        logits = net(inputs)
        logits.retain_grad()
        outputs.append(logits)
        return logits

    module = stand_in(5, confidence_penalty=c["params"]["noise_mode"] == "asym")
    module._outputs, module.criterion = run, nn.CrossEntropyLoss()
    loss = DivideMix._warmup_loss(module, 1, x, y)
    loss.backward()
    close(outputs[0], c["outputs"]["logits"], "logits")
    close(loss, c["outputs"]["loss"], "warm-up loss")
    assert rel_l2(outputs[0].grad, tensor(c["outputs"]["grad_logits"])) <= GRAD_REL_L2, "d loss / d logits"


# ============================================================================================ the driven step
class Driver:
    """A real DivideMix on the fixture's two linear networks, its alternating step driven by hand."""

    def __init__(self, c: dict, cfg: Any) -> None:
        p = c["params"]
        init = c["inputs"]["init"]
        nets = iter([init["net1"], init["net2"]])

        def network() -> Classifier:
            state = next(nets)
            net = Classifier(nn.Identity(), LinearHead(p["features"], p["num_class"]))
            with torch.no_grad():
                net.head.fc.weight.copy_(tensor(state["weight"]).float())
                net.head.fc.bias.copy_(tensor(state["bias"]).float())
            return net

        m = cfg.method
        optimizer = functools.partial(torch.optim.SGD, lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                      weight_decay=cfg.optim.weight_decay, nesterov=cfg.optim.nesterov)
        self.method = DivideMix(
            network=network, criterion=nn.CrossEntropyLoss(), optimizer=optimizer, warmup_epochs=m.warmup_epochs,
            p_threshold=m.p_threshold, sharpen_temperature=m.sharpen_temperature, mixup_alpha=m.mixup_alpha,
            lambda_u=m.lambda_u, rampup_epochs=m.rampup_epochs, schedule="alternating",
            decay_norm_and_bias=m.decay_norm_and_bias)
        self.method.trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                                        enable_progress_bar=False, enable_model_summary=False)
        self.method.trainer.fit_loop.epoch_progress.current.completed = p["epoch"]
        assert self.method.current_epoch == p["epoch"]
        self.method.log = lambda *args, **kwargs: None
        self.method.manual_backward = lambda loss, *args, **kwargs: loss.backward()
        opt = self.method.configure_optimizers()["optimizer"]
        self.method.optimizers = lambda *args, **kwargs: opt
        self.mixed: list[tuple[torch.Tensor, torch.Tensor]] = []
        original = self.method._class_logits

        def class_logits(k: int, x: torch.Tensor) -> torch.Tensor:
            logits = original(k, x)
            if torch.is_grad_enabled():  # the mixed batch (co-guessing and refinement run without grad)
                logits.retain_grad()
                self.mixed.append((x, logits))
            return logits

        self.method._class_logits = class_logits
        # The fixture's batches as the phases' streams; sample indices: phase k's labeled samples, then unlabeled.
        self.batches: dict[str, list] = {}
        phases, clean_prob, start = [], torch.zeros(2, 1000), 0
        for k, phase in enumerate(c["outputs"]["phases"]):
            labeled, unlabeled = [], []
            for step in phase["steps"]:
                x = step_inputs(step)
                index = torch.arange(start, start + len(x["labels_x"]))
                start += len(index)
                clean_prob[1 - k, index] = x["w_x"]  # co-divide: network k reads the other network's row
                labeled.append(([x["inputs_x"], x["inputs_x2"]], x["labels_x"], index))
                u_index = torch.arange(start, start + len(x["inputs_u"]))
                start += len(u_index)
                unlabeled.append(([x["inputs_u"], x["inputs_u2"]], torch.zeros(len(u_index), dtype=torch.long),
                                  u_index))
            self.batches[f"labeled{k}"], self.batches[f"unlabeled{k}"] = labeled, unlabeled
            num_iter = phase["n_labeled"] // p["batch_size"] + 1  # what _plan_epoch computes on one rank
            phases.append(_Phase(k, len(labeled), num_iter, f"labeled{k}", f"unlabeled{k}"))
        self.method.clean_prob = clean_prob
        self.method._phases = phases
        self.method._fetch = lambda stream, views=2: self.batches[stream].pop(0)

    def params(self, k: int) -> dict[str, torch.Tensor]:
        fc = self.method.networks()[k].head.fc
        return {"weight": fc.weight, "bias": fc.bias}


@pytest.mark.parametrize("name", list(PRESET))
def test_alternating_steps_match_the_reference_train_loop(name: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    c = case(MIXMATCH, name)
    cfg = compose_config(tmp_path, [f"experiment={PRESET[name]}"], quick=False)
    p = c["params"]
    # The preset's settings are the ones the reference ran with here (the rest of the step is ours).
    assert (cfg.method.lambda_u, cfg.method.warmup_epochs, cfg.method.rampup_epochs) == (
        p["lambda_u"], p["warm_up"], p["rampup_length"])
    assert (cfg.method.sharpen_temperature, cfg.method.mixup_alpha) == (p["T"], p["alpha"])
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (
        p["sgd"]["lr"], p["sgd"]["momentum"], p["sgd"]["weight_decay"])
    assert cfg.method.decay_norm_and_bias, "the reference decays every parameter, biases included"
    driver = Driver(c, cfg)
    steps = [s for phase in c["outputs"]["phases"] for s in phase["steps"]]
    draws = FixedDraws(monkeypatch, steps)
    number = 0
    for k, phase in enumerate(c["outputs"]["phases"]):
        for step in phase["steps"]:
            where = f"{phase['trained']} step {step['inputs']['batch_idx']}"
            out = step["outputs"]
            driver.mixed.clear()
            loss = driver.method._alternating_step(number)
            number += 1
            (mixed, logits), = driver.mixed
            close(mixed, out["mixed_input"], f"{where}: mixed inputs")
            close(logits, out["logits"], f"{where}: logits of the mixed batch")
            close(loss, out["loss"], f"{where}: loss (lambda_u ramp weight {out['lamb']})")
            err = rel_l2(logits.grad, tensor(out["grad_logits"]))
            assert err <= GRAD_REL_L2, f"{where}: d loss / d logits, rel L2 error {err:.2e}"
            for pname, value in out["net_after"].items():
                close(driver.params(k)[pname], value, f"{where}: {phase['trained']}.{pname} after the SGD step")
            other = driver.params(1 - k)
            first_phase_end = c["outputs"]["phases"][0]["steps"][-1]["outputs"]["net_after"]
            ref_other = c["inputs"]["init"]["net2"] if k == 0 else first_phase_end
            for pname, value in ref_other.items():
                close(other[pname], value, f"{where}: the fixed network's {pname} did not move")
    assert draws.all_used()


def test_co_guessing_uses_the_trained_network_in_train_mode_and_the_other_in_eval_mode(tmp_path: Path) -> None:
    """The reference's train() sets net.train() and net2.eval() before its loop: the network being trained
    predicts the guesses and the refined labels in train mode (BatchNorm batch statistics, dropout), the
    fixed one in eval mode. The fixture's linear networks cannot show modes, so the calls record them."""
    name = next(iter(PRESET))
    c = case(MIXMATCH, name)
    driver = Driver(c, compose_config(tmp_path, [f"experiment={PRESET[name]}"], quick=False))
    method = driver.method
    seen: list[tuple[int, bool, bool]] = []  # (network, grad enabled, training mode) of each forward
    traced = method._class_logits

    def class_logits(k: int, x: torch.Tensor) -> torch.Tensor:
        seen.append((k, torch.is_grad_enabled(), method.networks()[k].training))
        return traced(k, x)

    method._class_logits = class_logits
    for net in method.networks():
        net.train()
    x = step_inputs(c["outputs"]["phases"][0]["steps"][0])
    views = (torch.cat([x["inputs_x"], x["inputs_u"]]), torch.cat([x["inputs_x2"], x["inputs_u2"]]))
    labels = torch.cat([x["labels_x"], torch.zeros(len(x["inputs_u"]), dtype=torch.long)])
    clean_prob = torch.cat([x["w_x"].clamp(min=0.9), torch.zeros(len(x["inputs_u"]))])
    method._joint_mixmatch_loss(0, views, labels, clean_prob, 1.0)
    guesses = [(k, training) for k, grad, training in seen if not grad]
    assert guesses == [(0, True), (0, True), (1, False), (1, False)]
    assert all(training for k, grad, training in seen if grad)  # the mixed batch, trained network
    assert method.networks()[1].training  # the fixed network's mode is put back


# ============================================================================================ settings
PER_SETTING = case(SETTINGS, "per_setting")["outputs"]["settings"]


def preset_name(s: dict) -> str:
    return f"dividemix_{s['dataset']}_{s['noise_mode']}{round(s['r'] * 100)}"


@pytest.mark.parametrize("setting", PER_SETTING, ids=preset_name)
def test_presets_carry_the_papers_per_setting_hyperparameters(setting: dict, tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, [f"experiment={preset_name(setting)}"], quick=False)
    recipe = case(SETTINGS, "recipes")["outputs"]["cifar"]
    m = cfg.method
    assert (m.lambda_u, m.p_threshold) == (setting["lambda_u"], setting["p_threshold"])
    assert m.loss_history == setting["loss_average_epochs"], "GMM on the mean of the last N epochs' losses"
    assert m.warmup_epochs == setting["warm_up"]
    assert bool(m.confidence_penalty) == setting["confidence_penalty"]
    assert (m.sharpen_temperature, m.mixup_alpha, m.rampup_epochs) == (
        recipe["T"], recipe["alpha"], recipe["rampup_length"])
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (
        setting["lr"], recipe["momentum"], recipe["weight_decay"])
    assert list(cfg.sched.milestones) == [setting["lr_decay_epoch"]] and cfg.sched.gamma == 0.1
    assert m.schedule == "alternating" and cfg.data.batch_size == 2 * recipe["labeled_batch"]
    if setting["noise_mode"] == "sym":
        # Our symmetric noise flips to other classes only: the preset asks for the reference's realised rate.
        assert cfg.noise.rate == pytest.approx(setting["realised_noise_rate"], abs=1e-9)
    else:
        assert cfg.noise.rate == setting["r"]
    assert cfg.trainer.max_epochs == setting["num_epochs"]
