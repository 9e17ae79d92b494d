# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""GaussFT's torch model, loss and Lightning module: gradients, BatchNorm, scores, training, checkpoints, export."""

import re
from pathlib import Path

import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from conftest import TINY_MODEL_KWARGS
from lightning.pytorch import Callback, Trainer, seed_everything

from anomalib_gaussft import GaussFT
from anomalib_gaussft.evaluation import rank_auroc
from anomalib_gaussft.model.anomaly_map import AnomalyMapGenerator
from anomalib_gaussft.model.feature_extractor import FeatureExtractor
from anomalib_gaussft.model.gaussian import MultivariateGaussian, StreamingGaussianEstimator
from anomalib_gaussft.model.loss import MahalanobisLoss
from anomalib_gaussft.model.torch_model import GaussFTModel, GaussianEstimators
from anomalib_gaussft.weights import PretrainedWeightsNotFoundError


def _fitted_gaussian(dim: int, seed: int = 0) -> MultivariateGaussian:
    generator = torch.Generator().manual_seed(seed)
    estimator = StreamingGaussianEstimator(dim)
    estimator.update(torch.randn(50, dim, generator=generator, dtype=torch.float64) * 2 + 1)
    gaussian = MultivariateGaussian(dim).double()
    gaussian.load_fit(estimator.fit())
    return gaussian


def test_loss_gradient_is_analytic_and_flows_only_into_features() -> None:
    gaussians = [_fitted_gaussian(4, 0), _fitted_gaussian(3, 1)]
    for gaussian in gaussians:  # were the Gaussian not detached in the loss, these would receive gradients
        gaussian.mean.requires_grad_(True)
        gaussian.whitening.requires_grad_(True)
    features = [
        torch.randn(5, 4, dtype=torch.float64, requires_grad=True),
        torch.randn(5, 3, dtype=torch.float64, requires_grad=True),
    ]
    loss = MahalanobisLoss()(features, gaussians)
    loss.backward()
    for x, gaussian in zip(features, gaussians, strict=True):
        precision = (gaussian.whitening.T @ gaussian.whitening).detach()
        centred = x.detach() - gaussian.mean.detach()
        distance = torch.sqrt(((centred @ precision) * centred).sum(dim=1, keepdim=True))
        expected = (centred @ precision) / distance / x.shape[0]  # d/dx of mean_n d(x_n)
        torch.testing.assert_close(x.grad, expected)
        assert gaussian.mean.grad is None
        assert gaussian.whitening.grad is None
    assert torch.autograd.gradcheck(
        lambda a: MahalanobisLoss()([a], gaussians[:1]), (torch.randn(3, 4, dtype=torch.float64, requires_grad=True),)
    )


def test_loss_rejects_mismatched_levels() -> None:
    with pytest.raises(ValueError, match="one Gaussian per feature level"):
        MahalanobisLoss()([torch.zeros(2, 3)], [])


@pytest.mark.parametrize("freeze", [True, False])
def test_batchnorm_statistics_frozen_by_default(freeze: bool) -> None:
    model = GaussFTModel(
        "tf_efficientnet_lite0", layers=["blocks.1"], map_layers=["blocks.1"], pretrained=False, freeze_batchnorm=freeze
    )
    model.train()
    before = model.feature_extractor.bn1.running_mean.clone()
    model(torch.rand(4, 3, 32, 32) * 5)
    changed = not torch.equal(before, model.feature_extractor.bn1.running_mean)
    assert changed is not freeze
    assert model.feature_extractor.conv_stem.weight.requires_grad


def test_clear_errors_for_bad_settings() -> None:
    with pytest.raises(ValueError, match="Unknown backbone 'no_such_net'"):
        GaussFTModel("no_such_net", pretrained=False)
    with pytest.raises(ValueError, match=r"Unknown feature level\(s\) \['layer9'\]"):
        GaussFTModel("resnet18", layers=["layer9"], pretrained=False)
    with pytest.raises(ValueError, match="image_score"):
        GaussFTModel("resnet18", pretrained=False, image_score="max")


def test_missing_weights_fall_back_or_raise(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.warns(UserWarning, match="Falling back to 'tf_efficientnet_lite0'"):
        model = GaussFT(backbone="resnet18", layers=["blocks.2"], map_layers=["blocks.2"], image_size=(64, 64))
    assert model.backbone == "tf_efficientnet_lite0"
    assert model.model.feature_extractor.weights_source.startswith("package")
    with pytest.raises(PretrainedWeightsNotFoundError):
        GaussFT(backbone="resnet18", fallback_backbone=None)


def test_trainer_arguments_leave_epochs_to_the_user(tiny_model_kwargs: dict) -> None:
    assert "max_epochs" not in GaussFT(**tiny_model_kwargs).trainer_arguments
    assert GaussFT(**tiny_model_kwargs, fine_tune=False).trainer_arguments["max_epochs"] == 1


def test_unfitted_model_refuses_to_predict(tiny_model_kwargs: dict) -> None:
    with pytest.raises(RuntimeError, match="has not been fitted"):
        GaussFT(**tiny_model_kwargs).test_step(None, 0)


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory) -> tuple:
    """GaussFT fine-tuned for 2 epochs on the small demo data, with its engine and datamodule."""
    torch.manual_seed(0)
    model = GaussFT(**TINY_MODEL_KWARGS, lr=1e-3)
    datamodule = MVTecAD(root=demo_root, category="brick", train_batch_size=8, eval_batch_size=8, num_workers=0)
    engine = Engine(max_epochs=2, default_root_dir=tmp_path_factory.mktemp("run"), accelerator="cpu", logger=False)
    metrics = engine.train(model, datamodule=datamodule)[0]
    return engine, model, datamodule, metrics


def test_training_reports_the_metrics_of_its_own_test_predictions(trained: tuple) -> None:
    """The reported test metrics are those of the model's post-processed outputs, recomputed here independently."""
    _, model, datamodule, metrics = trained
    scores, labels, predicted, maps, masks = [], [], [], [], []
    model.eval()
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            output = model(batch.image)  # pre-processing, model, post-processing (thresholds, normalisation)
            scores.append(output.pred_score)
            predicted.append(output.pred_label.bool())
            labels.append(batch.gt_label.bool())
            maps.append(output.anomaly_map.flatten())
            masks.append(batch.gt_mask.bool().flatten())
    scores, labels, predicted, maps, masks = (torch.cat(values) for values in (scores, labels, predicted, maps, masks))
    assert 0 < labels.sum() < len(labels)
    assert masks.any()
    assert metrics["image_AUROC"] == pytest.approx(rank_auroc(scores[~labels], scores[labels]), abs=1e-4)
    assert metrics["pixel_AUROC"] == pytest.approx(rank_auroc(maps[~masks], maps[masks]), abs=1e-4)
    true_positives = (predicted & labels).sum().item()
    f1 = 2 * true_positives / (predicted.sum().item() + labels.sum().item())
    assert metrics["image_F1Score"] == pytest.approx(f1, abs=1e-6)
    assert model.model.is_fitted
    assert model.post_processor.image_threshold.isfinite()


def test_checkpoint_reloads_with_identical_scores_and_needs_no_weights(trained: tuple) -> None:
    engine, model, datamodule, _ = trained
    checkpoint = torch.load(engine.best_model_path, weights_only=False)
    assert checkpoint["hyper_parameters"]["pretrained"] is False
    reloaded = GaussFT.load_from_checkpoint(engine.best_model_path)
    images = torch.rand(3, 3, 80, 72)
    model.eval()
    reloaded.eval()
    with torch.no_grad():
        expected, actual = model(images), reloaded(images)
    torch.testing.assert_close(actual.pred_score, expected.pred_score, rtol=0, atol=0)
    torch.testing.assert_close(actual.anomaly_map, expected.anomaly_map, rtol=0, atol=0)
    torch.testing.assert_close(actual.pred_label, expected.pred_label)
    del datamodule


def test_eval_forward_with_the_default_mixture_is_exportable_with_dynamic_batch() -> None:
    """``torch.export`` of the plain torch model with the default 64 mixture components (the test fixtures use 4).

    The ONNX export of the whole pipeline (pre- and post-processing, onnxruntime parity) is in ``test_export.py``.
    """
    torch.manual_seed(0)
    kwargs = {key: value for key, value in TINY_MODEL_KWARGS.items() if key not in ("image_size", "local_components")}
    torch_model = GaussFTModel(**kwargs).eval()
    assert torch_model.local_mixture.components == 64  # the default
    estimators = torch_model.new_estimators("cpu")
    torch_model.accumulate(torch.rand(24, 3, 64, 64), estimators)
    torch_model.load_fits(estimators)
    example = torch.rand(2, 3, 64, 64)
    batch = torch.export.Dim("batch", min=1, max=64)
    exported = torch.export.export(torch_model, (example,), dynamic_shapes={"images": {0: batch}})
    for size in (1, 5):
        images = torch.rand(size, 3, 64, 64)
        with torch.no_grad():
            expected = torch_model(images)
        actual = exported.module()(images)
        torch.testing.assert_close(actual.pred_score, expected.pred_score, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(actual.anomaly_map, expected.anomaly_map, rtol=1e-5, atol=1e-5)


def test_fixed_features_mode_fits_in_one_epoch(demo_root, tmp_path) -> None:
    model = GaussFT(
        backbone="resnet18", pretrained=False, image_size=(64, 64), fine_tune=False, layers=["layer2", "layer3"]
    )
    initial = _backbone_state(model)
    datamodule = MVTecAD(root=demo_root, category="coffee", train_batch_size=8, eval_batch_size=8, num_workers=0)
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", logger=False)
    engine.fit(model, datamodule=datamodule)
    assert engine.trainer.current_epoch == 1  # GaussFT's trainer_arguments set max_epochs=1
    assert _changed(initial, _backbone_state(model)) == []
    assert model.model.is_fitted
    assert not any(type(c).__name__ == "ForgettingDetection" for c in engine.trainer.callbacks)


# ---------------------------------------------------------------------------------------------------- fine-tuning
def _backbone_state(model: GaussFT) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.model.feature_extractor.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    return [key for key, value in before.items() if not torch.equal(value, after[key])]


def _fit_one_batch_per_epoch(model: GaussFT, demo_root, epochs: int, validate: bool) -> Trainer:
    """A quiet CPU ``Trainer`` fitted on brick with one training (and, if ``validate``, one validation) batch."""
    trainer = Trainer(
        max_epochs=epochs,
        limit_train_batches=1,
        limit_val_batches=int(validate),
        num_sanity_val_steps=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    datamodule = MVTecAD(root=demo_root, category="brick", train_batch_size=8, eval_batch_size=8, num_workers=0)
    trainer.fit(model, datamodule=datamodule)
    return trainer


def _one_epoch(demo_root, pretrained_epoch: bool = True) -> dict:
    """One epoch of one batch from the same initial weights and data: the backbone before and after, the optimiser."""
    torch.manual_seed(0)
    model = GaussFT(**TINY_MODEL_KWARGS, forgetting_detection=False, visualizer=False, lr=1e-3)
    model.pretrained_epoch = pretrained_epoch  # not a setting: the first epoch without it, to see that it fine-tunes
    initial = _backbone_state(model)
    seed_everything(0)
    trainer = _fit_one_batch_per_epoch(model, demo_root, epochs=1, validate=False)
    return {"initial": initial, "final": _backbone_state(model), "optimizer": trainer.optimizers[0]}


@pytest.fixture(scope="module")
def epochs(demo_root) -> dict[str, dict]:
    """The first epoch with the pretrained (scoring-only) epoch GaussFT always takes, and without it."""
    return {"pretrained": _one_epoch(demo_root), "fine_tuned": _one_epoch(demo_root, pretrained_epoch=False)}


def test_pretrained_epoch_leaves_weights_and_optimiser_untouched(epochs: dict[str, dict]) -> None:
    run = epochs["pretrained"]
    assert _changed(run["initial"], run["final"]) == []  # bit-identical, BatchNorm statistics included
    assert len(run["optimizer"].state) == 0  # Adam took no step: no moments to carry into fine-tuning


def test_without_pretrained_epoch_the_first_epoch_fine_tunes(epochs: dict[str, dict]) -> None:
    run = epochs["fine_tuned"]
    changed = _changed(run["initial"], run["final"])
    assert any(key.startswith("blocks.2.") for key in changed)  # the shallowest map layer and what follows train
    assert not any("running_" in key for key in changed)  # BatchNorm statistics stay fixed while fine-tuning
    assert len(run["optimizer"].state) > 0


def test_gaussians_are_refitted_only_after_weight_updates(demo_root, monkeypatch) -> None:
    """The pretrained epoch changes no weight, so its fit serves it and the first fine-tuning epoch (no second fit)."""
    torch.manual_seed(0)
    model = GaussFT(**TINY_MODEL_KWARGS, forgetting_detection=False, visualizer=False)
    fitted_at: list[int] = []
    fit = model.fit_gaussians

    def counting_fit(*args, **kwargs) -> None:
        fitted_at.append(model.fine_tuning_steps)
        fit(*args, **kwargs)

    monkeypatch.setattr(model, "fit_gaussians", counting_fit)
    _fit_one_batch_per_epoch(model, demo_root, epochs=2, validate=True)
    assert model.fine_tuning_steps == 1
    assert fitted_at == [0, 1]  # before the pretrained epoch, after the one update (the global step was 2 by then)


# ---------------------------------------------------------------------------------------------------- scores
def test_separable_blur_equals_padims_gaussian_blur() -> None:
    """The anomaly map equals PaDiM's upsampling and ``GaussianBlur2d`` (same sigma) to float32 rounding."""
    from anomalib.models.image.padim.anomaly_map import AnomalyMapGenerator as PadimAnomalyMap

    generator = torch.Generator().manual_seed(0)
    for sigma in (1.0, 2.5, 4.0):
        local_scores = torch.rand(2, 1, 28, 20, generator=generator) * 50
        ours = AnomalyMapGenerator(sigma=sigma)(local_scores, (224, 160))
        upsampled = torch.nn.functional.interpolate(local_scores, size=(224, 160), mode="bilinear", align_corners=False)
        padim = PadimAnomalyMap(sigma=sigma).blur(upsampled)
        scale = padim.abs().max().item()
        torch.testing.assert_close(ours, padim, rtol=0, atol=3e-6 * scale)
        assert not torch.allclose(upsampled, padim, rtol=0, atol=3e-4 * scale)  # the blur does something


# ---------------------------------------------------------------------------------------------------- fitting
@pytest.mark.parametrize("backbone", ["tf_efficientnet_lite0", "resnet18"])
def test_channels_last_extractor_returns_the_same_features_and_gradients(backbone: str) -> None:
    """The channels-last default (a CPU speed-up) changes neither the features nor their gradients beyond rounding."""
    fast = FeatureExtractor(backbone, pretrained=False)
    plain = FeatureExtractor(backbone, pretrained=False, channels_last=False)
    plain.load_state_dict(fast.state_dict())
    weights = [p for p in fast.parameters() if p.dim() == 4]
    assert weights
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    assert any(not p.is_contiguous() for p in weights)  # e.g. the stem's (32, 3, 3, 3) kernel
    assert all(p.is_contiguous() for p in plain.parameters())
    images = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    fast_features, plain_features = fast(images), plain(images)

    def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
        return ((ours - reference).norm() / reference.norm()).item()

    assert max(map(relative_error, fast_features, plain_features)) < 1e-5
    sum(f.square().mean() for f in fast_features).backward()
    sum(f.square().mean() for f in plain_features).backward()
    pairs = zip(fast.parameters(), plain.parameters(), strict=True)
    assert max(relative_error(ours.grad, reference.grad) for ours, reference in pairs) < 1e-5  # measured: ~1e-6


def test_estimators_are_named_by_level_and_feed_the_right_gaussians() -> None:
    model = GaussFTModel("resnet18", layers=["layer1", "layer3"], map_layers=["layer2"], pretrained=False).eval()
    estimators = model.new_estimators("cpu")
    assert [e.dim for e in estimators.levels] == [64, 256]
    assert estimators.local.dim == 128
    model.accumulate(torch.rand(5, 3, 64, 64), estimators)
    assert estimators.n_images == 5
    assert estimators.local.n_samples == 5 * 4 * 4  # layer2 of a 64 px image: 8 x 8 positions, one cell per 2 x 2
    model.load_fits(estimators)
    torch.testing.assert_close(model.gaussians[1].mean, estimators.levels[1].mean().float())
    with pytest.raises(ValueError, match="estimators for 1 global levels; this model has 2"):
        model.load_fits(GaussianEstimators(levels=estimators.levels[:1], local=estimators.local))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fit_gaussians_restores_the_mode_when_the_pass_fails(
    tiny_model_kwargs: dict, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    model = GaussFT(**tiny_model_kwargs, forgetting_detection=False)
    model.model.train(mode == "train")

    def failing(images: torch.Tensor) -> list[torch.Tensor]:
        msg = "backbone failed"
        raise RuntimeError(msg)

    monkeypatch.setattr(model.model.feature_extractor, "forward", failing)
    with pytest.raises(RuntimeError, match="backbone failed"):
        model.fit_gaussians([torch.rand(2, 3, 64, 64)])
    assert model.model.training is (mode == "train")
    assert not model.model.feature_extractor.bn1.training  # frozen BatchNorm stays in eval mode either way


# ---------------------------------------------------------------------------------------------------- checkpoints
def test_load_from_checkpoint_names_a_missing_or_unreadable_file(tmp_path) -> None:
    missing = tmp_path / "missing.ckpt"
    with pytest.raises(FileNotFoundError, match=rf"Checkpoint {re.escape(str(missing))} does not exist"):
        GaussFT.load_from_checkpoint(missing)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint")
    truncated = tmp_path / "truncated.ckpt"
    torch.save({"state_dict": {"model.local_gaussian.mean": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    for path in (garbage, truncated):
        with pytest.raises(ValueError, match=rf"Cannot read checkpoint {re.escape(str(path))}: \w+"):
            GaussFT.load_from_checkpoint(path)


@pytest.mark.parametrize(
    ("backbone", "size"), [("tf_efficientnet_lite0", (224, 224)), ("tf_efficientnet_lite1", (240, 240))]
)
def test_image_size_defaults_to_the_backbones_pretrained_input_size(backbone: str, size: tuple[int, int]) -> None:
    model = GaussFT(backbone=backbone, pretrained=False, layers=["blocks.2"], map_layers=["blocks.2"])
    assert model.image_size == size
    assert tuple(model.pre_processor.transform.transforms[0].size) == size
    assert GaussFT(backbone=backbone, pretrained=False, image_size=64).image_size == (64, 64)


def test_image_size_follows_the_fallback_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without B4 weights GaussFT falls back to Lite0, and then resizes to Lite0's 224 px, not B4's 380 px."""
    from anomalib_gaussft.model import feature_extractor

    real = feature_extractor.load_pretrained_weights

    def no_b4(model, backbone, weights_path=None):
        if backbone.startswith("tf_efficientnet_b4"):
            raise PretrainedWeightsNotFoundError(backbone, ["the test's stand-in source"])
        return real(model, backbone, weights_path)

    monkeypatch.setattr(feature_extractor, "load_pretrained_weights", no_b4)
    with pytest.warns(UserWarning, match="Falling back"):
        model = GaussFT(layers=["blocks.2"], map_layers=["blocks.2"])
    assert model.backbone == "tf_efficientnet_lite0"
    assert model.image_size == (224, 224)


def test_warmup_raises_the_learning_rate_linearly_over_the_first_fine_tuning_steps(
    demo_root, tmp_path, tiny_model_kwargs
) -> None:
    """The pretrained epoch makes no warm-up step; then lr/4, lr/2, 3lr/4, lr, lr, ... (Adam's first-step jump)."""
    seen: list[float] = []

    class RecordLr(Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
            seen.append(optimizer.param_groups[0]["lr"])

    model = GaussFT(**tiny_model_kwargs, lr=1e-3, forgetting_detection=False, visualizer=False)
    assert model.warmup_steps == 12  # the default; 4 here so that two short epochs reach the full rate
    model.warmup_steps = 4
    datamodule = MVTecAD(root=demo_root, category="brick", train_batch_size=4, eval_batch_size=8, num_workers=0)
    engine = Engine(max_epochs=2, default_root_dir=tmp_path, accelerator="cpu", logger=False, callbacks=[RecordLr()])
    engine.fit(model, datamodule=datamodule)
    steps_per_epoch = len(seen) // 2
    assert model.fine_tuning_steps == steps_per_epoch >= 5
    assert seen[steps_per_epoch:] == pytest.approx([2.5e-4, 5e-4, 7.5e-4] + [1e-3] * (steps_per_epoch - 3))


def test_fine_tuning_trains_the_shallowest_map_layer_and_deeper_levels_only(
    demo_root, tmp_path, tiny_model_kwargs
) -> None:
    """The stem, ``blocks.0`` and ``blocks.1`` (before the map layer ``blocks.2``) stay; the rest trains."""
    model = GaussFT(**tiny_model_kwargs, lr=1e-3, forgetting_detection=False, visualizer=False)
    extractor = model.model.feature_extractor
    before = {name: parameter.detach().clone() for name, parameter in extractor.named_parameters()}
    frozen = {name for name, parameter in extractor.named_parameters() if not parameter.requires_grad}
    assert frozen == {name for name in before if name.startswith(("conv_stem.", "bn1.", "blocks.0.", "blocks.1."))}
    optimised = {id(parameter) for group in model.configure_optimizers().param_groups for parameter in group["params"]}
    assert optimised == {id(parameter) for name, parameter in extractor.named_parameters() if name not in frozen}
    datamodule = MVTecAD(root=demo_root, category="brick", train_batch_size=4, eval_batch_size=8, num_workers=0)
    Engine(max_epochs=2, default_root_dir=tmp_path, accelerator="cpu", logger=False).fit(model, datamodule=datamodule)
    changed = {name for name, parameter in extractor.named_parameters() if not torch.equal(parameter, before[name])}
    assert not changed & frozen
    assert any(name.startswith("blocks.2.") for name in changed)
    assert any(name.startswith("blocks.4.") for name in changed)
    fixed = GaussFT(**tiny_model_kwargs, fine_tune=False)
    assert all(parameter.requires_grad for parameter in fixed.model.feature_extractor.parameters())


def test_freezing_before_a_level_the_extractor_does_not_run_names_the_setting() -> None:
    extractor = GaussFTModel("resnet18", layers=["layer2"], map_layers=["layer2"], pretrained=False).feature_extractor
    with pytest.raises(ValueError, match=r"'layer4' is not one this extractor returns \(setting `map_layers`\)"):
        extractor.freeze_before("layer4")
    extractor.layers = [*extractor.layers, "layer9"]  # a level whose module is not where it is looked for
    with pytest.raises(ValueError, match=r"'layer9' of 'resnet18' has no module 'model.layer9'"):
        extractor.freeze_before("layer9")
    assert all(parameter.requires_grad for parameter in extractor.parameters())  # nothing frozen on the way


def test_a_non_square_input_size_fits_scores_and_maps_at_that_size(tiny_model_kwargs: dict) -> None:
    """Long parts: ``image_size=(height, width)`` resizes to it; per-position Gaussians take its grid, maps its size."""
    from anomalib_gaussft.benchmark.models import build_model

    model = GaussFT(**{**tiny_model_kwargs, "image_size": (32, 80)}, forgetting_detection=False)
    model.fit_gaussians([torch.rand(6, 3, 50, 120)])  # any size: the pre-processor resizes to 32 x 80
    assert model.model.positional_gaussians.grid.tolist() == [2, 5]  # blocks.2 (stride 8), one cell per 2 x 2
    with torch.no_grad():
        output = model.eval()(torch.rand(2, 3, 50, 120))
    assert output.anomaly_map.shape == (2, 1, 32, 80)
    assert torch.isfinite(output.pred_score).all()
    assert build_model("GaussFT-fixed", "tf_efficientnet_lite0", (32, 80), pretrained=False).image_size == (32, 80)


def test_the_surface_is_lean_and_the_configs_use_only_its_arguments() -> None:
    """At most 16 constructor arguments; every shipped config names only those; the model package exports three."""
    import inspect

    import yaml

    import anomalib_gaussft.model as model_package

    parameters = inspect.signature(GaussFT).parameters
    assert len(parameters) <= 16, list(parameters)
    root = Path(__file__).resolve().parents[1]
    for config in sorted((root / "configs").glob("gaussft*.yaml")):
        init_args = yaml.safe_load(config.read_text())["model"]["init_args"]
        assert set(init_args) <= set(parameters), f"{config.name}: {sorted(set(init_args) - set(parameters))}"
    assert model_package.__all__ == ["GaussFT", "GaussFTModel", "GaussFTPostProcessor"]
