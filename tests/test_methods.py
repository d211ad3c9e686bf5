"""Units of the multi-network and meta-learning methods: selection, MixMatch, NT-Xent, init_from, wiring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from noisylab.data.augment import BatchAugment, ContrastiveAugment
from noisylab.losses.contrastive import nt_xent
from noisylab.methods.mixmatch import mixup, sharpen
from noisylab.methods.selection import clean_probability, selection_report
from noisylab.models.init import backbone_state_dict, init_backbone, zero_head
from noisylab.train import build_datamodule, build_method
from tests.conftest import compose_config


def test_gmm_gives_low_loss_samples_high_clean_probability() -> None:
    rng = np.random.default_rng(0)
    clean, noisy = rng.gamma(2.0, 0.1, 800), 2.0 + rng.gamma(2.0, 0.3, 200)
    losses = np.concatenate([clean, noisy])
    prob = clean_probability(losses)
    truth = np.r_[np.ones(800, bool), np.zeros(200, bool)]
    assert roc_auc_score(truth, prob) > 0.99
    report = selection_report(prob > 0.5, truth, losses)
    assert report["precision"] > 0.98 and report["recall"] > 0.95
    assert report["selected_fraction"] == pytest.approx((prob > 0.5).mean())
    assert report["loss_threshold"] == pytest.approx(losses[prob > 0.5].max())
    # Invariant to the loss scale (min-max normalisation first).
    assert np.allclose(clean_probability(losses * 100 + 3), prob, atol=1e-6)


def test_selection_report_without_known_truth_has_no_precision() -> None:
    report = selection_report(np.array([True, False]), None, np.array([0.1, 2.0]))
    assert set(report) == {"selected_fraction", "loss_threshold"}


def test_sharpen_and_mixup() -> None:
    p = torch.tensor([[0.6, 0.4], [0.5, 0.5]])
    sharp = sharpen(p, 0.5)
    assert torch.allclose(sharp[0], torch.tensor([0.36, 0.16]) / 0.52)
    assert torch.allclose(sharp[1], p[1]) and torch.allclose(sharp.sum(1), torch.ones(2))
    torch.manual_seed(0)
    x = torch.arange(8.0).view(8, 1)
    targets = F.one_hot(torch.arange(8), 8).float()
    mixed_x, mixed_t = mixup(x, targets, alpha=4.0)
    own = mixed_t.diagonal()  # each sample keeps at least half of its own target (lambda >= 0.5)
    assert torch.all(own >= 0.5 - 1e-6)
    lam = own.min()
    partner = (mixed_t - lam * targets).argmax(1)
    assert torch.allclose(mixed_x, lam * x + (1 - lam) * x[partner])


def test_nt_xent_matches_its_definition_and_prefers_aligned_views() -> None:
    torch.manual_seed(0)
    z = F.normalize(torch.randn(6, 4), dim=1)
    rows = torch.arange(6)
    loss = nt_xent(z, z, (rows + 3) % 6, rows, temperature=0.5)
    expected = 0.0
    for i in range(6):
        others = [j for j in range(6) if j != i]
        logits = torch.stack([z[i] @ z[j] / 0.5 for j in others])
        expected += -(logits[others.index((i + 3) % 6)] - torch.logsumexp(logits, 0))
    assert loss.item() == pytest.approx(expected.item() / 6, rel=1e-5)
    aligned = F.normalize(torch.cat([z[:3], z[:3] + 0.01]), dim=1)
    assert nt_xent(aligned, aligned, (rows + 3) % 6, rows, 0.5) < loss


def test_contrastive_views_keep_shape_and_differ() -> None:
    """Distortions act on [0, 1] pixels; BatchAugment converts to and from the network's normalisation."""
    torch.manual_seed(0)
    distort = ContrastiveAugment()
    x = torch.rand(16, 3, 12, 12)
    a, b = distort(x), distort(x)
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert not torch.allclose(a, b)
    grey = distort(x[:, :1])  # one channel: crop only, no colour
    assert grey.shape == (16, 1, 12, 12) and grey.min() >= 0 and grey.max() <= 1
    augment = BatchAugment((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    assert torch.allclose(augment.to_unit_range(augment.normalise(x)), x, atol=1e-6)


def _method(tmp_path: Path, *overrides: str):
    cfg = compose_config(tmp_path, list(overrides))
    datamodule = build_datamodule(cfg)
    return build_method(cfg, datamodule), datamodule


@pytest.mark.parametrize("name", ["dividemix", "instancegm"])
def test_two_network_methods_build_two_independent_networks(tmp_path: Path, name: str) -> None:
    method, _ = _method(tmp_path, f"method={name}")
    first, second = method.net.state_dict(), method.net2.state_dict()
    assert first.keys() == second.keys()
    assert any(not torch.equal(first[k], second[k]) for k in first)  # each has its own random initialisation
    x = torch.randn(3, 1, 8, 8)
    method.eval()
    with torch.no_grad():
        assert torch.allclose(method(x), (method.net(x) + method.net2(x)) / 2, atol=1e-6)
    assert method.train_views == 2


def test_dividemix_picks_ce_as_warmup_loss_unless_the_user_chooses(tmp_path: Path) -> None:
    assert compose_config(tmp_path, ["method=dividemix"]).loss.criterion._target_.endswith("CrossEntropy")
    assert compose_config(tmp_path, ["method=dividemix", "loss=gce"]).loss.criterion._target_.endswith(
        "GeneralizedCrossEntropy")


def test_meta_weight_net_splits_a_clean_meta_set_off_before_noise(tmp_path: Path) -> None:
    method, datamodule = _method(tmp_path, "method=meta_weight_net", "data.meta_size=200", "noise.rate=0.6")
    meta = datamodule.meta_set
    assert len(meta) == 200
    assert torch.equal(meta.labels, meta.clean)
    _, without_meta = _method(tmp_path, "noise.rate=0.6")
    assert len(datamodule.labels.noisy) == len(without_meta.labels.noisy) - 200
    train_positions = set(datamodule.train_set.index.tolist())
    assert len(datamodule.train_set) + len(datamodule.val_set) == len(datamodule.labels.noisy)
    assert method.weight_net(torch.tensor([0.0, 5.0])).shape == (2,)
    assert train_positions  # the meta samples are not among the training samples (disjoint source positions)


def test_meta_set_is_required_and_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="meta_size"):
        _method(tmp_path, "method=meta_weight_net", "data.meta_size=100000")


def test_init_from_loads_the_backbone_of_any_run_and_zeroes_the_head(tmp_path: Path) -> None:
    method, _ = _method(tmp_path, "loss=ce")
    checkpoint = tmp_path / "pretrained.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in method.net.state_dict().items()}}, checkpoint)
    assert backbone_state_dict(checkpoint).keys() == method.net.backbone.state_dict().keys()
    started, _ = _method(tmp_path, "loss=ce", f"model.init_from={checkpoint}")
    for key, value in method.net.backbone.state_dict().items():
        assert torch.equal(started.net.backbone.state_dict()[key], value)
    assert all(torch.count_nonzero(p) == 0 for p in started.net.head.parameters())
    # A two-network checkpoint (DivideMix) gives its first network's backbone.
    two = tmp_path / "two.ckpt"
    torch.save({"state_dict": {**{f"net2.{k}": v * 0 for k, v in method.net.state_dict().items()},
                               **{f"net.{k}": v for k, v in method.net.state_dict().items()}}}, two)
    assert all(torch.equal(v, method.net.backbone.state_dict()[k]) for k, v in backbone_state_dict(two).items())


def test_init_from_refuses_a_backbone_of_another_shape(tmp_path: Path) -> None:
    method, _ = _method(tmp_path, "loss=ce", "model=mlp")
    checkpoint = tmp_path / "mlp.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in method.net.state_dict().items()}}, checkpoint)
    other, _ = _method(tmp_path, "loss=ce")
    with pytest.raises(ValueError, match="does not fit this backbone"):
        init_backbone(other.net.backbone, checkpoint)
    with pytest.raises(FileNotFoundError, match="init_from"):
        _method(tmp_path, "model.init_from=/no/such.ckpt")
    head = other.net.head
    zero_head(head)
    assert all(torch.count_nonzero(p) == 0 for p in head.parameters())


def test_file_datasets_give_independent_views_to_multi_view_methods(tmp_path: Path) -> None:
    from noisylab.data import NoisyLabelDataModule
    from noisylab.data.folders import load_clothing1m
    from noisylab.noise.base import NoNoise
    from tests.fixtures import write_clothing1m

    write_clothing1m(tmp_path)
    dm = NoisyLabelDataModule("clothing1m", load_clothing1m, str(tmp_path), NoNoise(), batch_size=4)
    dm.build()
    dm.train_set.views = 2
    torch.manual_seed(0)
    views, label, index, clean = dm.train_set[0]
    assert len(views) == 2 and views[0].shape == views[1].shape == (3, 224, 224)
    assert not torch.equal(views[0], views[1])  # each view has its own random crop
    images, labels, _, _ = next(iter(dm._loader(dm.train_set, 4, shuffle=True)))
    normalised = dm.on_after_batch_transfer((images, labels, None, None), 0)[0]
    assert isinstance(normalised, tuple) and len(normalised) == 2 and normalised[0].dtype == torch.float32


# ------------------------------------------------------------------ DivideMix / InstanceGM against the reference
def test_instancegm_kl_term_is_the_references_summed_over_batch_and_latent(tmp_path: Path) -> None:
    """The reference adds -3e-4 * sum(1 + logvar - mu^2 - exp(logvar)) (summed over the batch and z), i.e.
    6e-4 x the KL divergence."""
    from torch import nn

    from noisylab.models.generative import NoiseGenerativeModel

    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3).clamp(-2, 2)

    class FixedEncoder(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return mu, logvar

    model = NoiseGenerativeModel(1, 8, 4, z_dim=3)
    model.encoder = FixedEncoder()
    terms = model.loss(torch.rand(5, 1, 8, 8), torch.randn(5, 4), torch.randint(0, 4, (5,)))
    reference_term = -3e-4 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    rest = terms["reconstruction"] + terms["noisy_label"] + 1e-5 * terms["label_prior"]
    assert (terms["loss"] - rest).item() == pytest.approx(reference_term.item(), rel=1e-5)
    assert terms["kl"].item() == pytest.approx(-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()).item(),
                                               rel=1e-6)
    method, _ = _method(tmp_path, "method=instancegm")
    assert all(m.kl_weight == pytest.approx(6e-4) for m in method.generative)


@pytest.mark.parametrize("schedule", ["alternating", "joint"])
def test_instancegm_warmup_trains_the_classifiers_only(tmp_path: Path, schedule: str) -> None:
    """As in the reference, the generative models start training after the CE warm-up."""
    import lightning as L

    method, datamodule = _method(tmp_path, "method=instancegm", "method.warmup_epochs=1",
                                 f"method.schedule={schedule}")
    generative = {k: v.clone() for k, v in method.generative.state_dict().items()}
    networks = {k: v.clone() for k, v in method.net.state_dict().items()}

    def fit(epochs: int) -> None:
        L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                  limit_val_batches=0, limit_train_batches=4).fit(method, datamodule=datamodule)

    fit(1)  # the warm-up epoch
    assert all(torch.equal(v, method.generative.state_dict()[k]) for k, v in generative.items())
    assert any(not torch.equal(v, method.net.state_dict()[k]) for k, v in networks.items())
    fit(2)  # a MixMatch epoch: now the generative models train
    assert any(not torch.equal(v, method.generative.state_dict()[k]) for k, v in generative.items())


def test_loss_history_averages_the_last_epochs_normalised_losses() -> None:
    from noisylab.methods.selection import LossHistory, normalise_losses

    rng = np.random.default_rng(0)
    index = np.array([4, 0, 2, 7])
    epochs = [rng.gamma(2.0, 1.0 + e, 4) for e in range(7)]
    history = LossHistory(5, num_samples=8)
    for e, losses in enumerate(epochs):
        mean = history.add(index, losses)
        kept = [normalise_losses(x) for x in epochs[max(0, e - 4): e + 1]]
        assert np.allclose(mean, np.mean(kept, 0), atol=1e-6)
    assert history.state.shape == (5, 8)
    restored = LossHistory(5, num_samples=8)
    restored.load(history.state)
    assert np.allclose(restored.add(index, epochs[0]), history.add(index, epochs[0]))
    single = LossHistory(1, num_samples=8)
    assert np.allclose(single.add(index, epochs[3]), normalise_losses(epochs[3]))  # length 1: this epoch only
    with pytest.raises(ValueError, match="training samples"):
        LossHistory(5, num_samples=9).load(history.state)


# DivideMix's per-setting hyperparameters (Li et al., ICLR 2020, appendix B, table 7): (lambda_u, p_threshold,
# epochs of averaged losses). "r% symmetric" draws the new label over all K classes: realised r * (K - 1) / K.
DIVIDEMIX_SETTINGS = {
    "dividemix_cifar10_sym20": ("cifar10", "symmetric", 0.2, 0, 0.5, 1),
    "dividemix_cifar10_sym50": ("cifar10", "symmetric", 0.5, 25, 0.5, 1),
    "dividemix_cifar10_sym80": ("cifar10", "symmetric", 0.8, 25, 0.5, 1),
    "dividemix_cifar10_sym90": ("cifar10", "symmetric", 0.9, 50, 0.6, 5),
    "dividemix_cifar10_asym40": ("cifar10", "asymmetric", 0.4, 0, 0.5, 1),
    "dividemix_cifar100_sym20": ("cifar100", "symmetric", 0.2, 25, 0.5, 1),
    "dividemix_cifar100_sym50": ("cifar100", "symmetric", 0.5, 150, 0.5, 1),
    "dividemix_cifar100_sym80": ("cifar100", "symmetric", 0.8, 150, 0.5, 1),
    "dividemix_cifar100_sym90": ("cifar100", "symmetric", 0.9, 150, 0.6, 5),
    "dividemix_cifar10": ("cifar10", "symmetric", 0.5, 25, 0.5, 1),     # the earlier names: the 50% setting
    "dividemix_cifar100": ("cifar100", "symmetric", 0.5, 150, 0.5, 1),
}


def test_every_dividemix_cifar_preset_is_its_published_setting(tmp_path: Path) -> None:
    import re

    presets = {p.stem for p in (Path(__file__).parents[1] / "conf" / "experiment").glob("dividemix_cifar*.yaml")}
    assert presets - {"dividemix_cifar100_idn"} == set(DIVIDEMIX_SETTINGS)
    for name, (data, noise, rate, lambda_u, p_threshold, history) in DIVIDEMIX_SETTINGS.items():
        cfg = compose_config(tmp_path, [f"experiment={name}"], quick=False)
        k = {"cifar10": 10, "cifar100": 100}[data]
        named = re.search(r"_(a?sym)(\d+)$", name)
        if named:  # the name says the setting
            assert (named.group(1) == "asym") == (noise == "asymmetric") and int(named.group(2)) == round(rate * 100)
        assert cfg.data.name == data and cfg.noise._target_.endswith(noise.capitalize() + "Noise"), name
        expected_rate = rate * (k - 1) / k if noise == "symmetric" else rate
        assert cfg.noise.rate == pytest.approx(expected_rate), name
        m = cfg.method
        assert (m.lambda_u, m.p_threshold, m.loss_history) == (lambda_u, p_threshold, history), name
        assert m.confidence_penalty == (noise == "asymmetric"), name
        assert m.schedule == "alternating" and m.warmup_epochs == (10 if k == 10 else 30), name
        assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.optim.lr) == (128, 300, 0.02), name
        assert cfg.model._target_.endswith("preact_resnet18"), name
    for name in ("instancegm_cifar100", "dividemix_cifar100_idn"):
        cfg = compose_config(tmp_path, [f"experiment={name}"], quick=False)
        assert cfg.method.schedule == "alternating" and cfg.method.warmup_epochs == 30
