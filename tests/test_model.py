# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""GaussFT's torch model, loss and Lightning module: gradients, BatchNorm, training, checkpoints, export."""

import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from conftest import TINY_MODEL_KWARGS

from anomalib_gaussft import GaussFT
from anomalib_gaussft.model.gaussian import MultivariateGaussian, StreamingGaussianEstimator
from anomalib_gaussft.model.loss import MahalanobisLoss
from anomalib_gaussft.model.torch_model import GaussFTModel
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
    features = [
        torch.randn(5, 4, dtype=torch.float64, requires_grad=True),
        torch.randn(5, 3, dtype=torch.float64, requires_grad=True),
    ]
    loss = MahalanobisLoss()(features, gaussians)
    loss.backward()
    for x, gaussian in zip(features, gaussians, strict=True):
        precision = gaussian.whitening.T @ gaussian.whitening
        centred = x.detach() - gaussian.mean
        distance = torch.sqrt(((centred @ precision) * centred).sum(dim=1, keepdim=True))
        expected = (centred @ precision) / distance / x.shape[0]  # d/dx of mean_n d(x_n)
        torch.testing.assert_close(x.grad, expected)
        assert not gaussian.mean.requires_grad
        assert gaussian.mean.grad is None
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


def test_training_reports_image_and_pixel_metrics(trained: tuple) -> None:
    _, model, _, metrics = trained
    for key in ("image_AUROC", "pixel_AUROC", "image_F1Score", "pixel_F1Score"):
        assert 0.0 <= metrics[key] <= 1.0
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


def test_eval_forward_is_exportable_with_dynamic_batch(trained: tuple) -> None:
    _, model, _, _ = trained
    torch_model = model.model.eval()
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
    datamodule = MVTecAD(root=demo_root, category="coffee", train_batch_size=8, eval_batch_size=8, num_workers=0)
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", logger=False)
    metrics = engine.train(model, datamodule=datamodule)[0]
    assert engine.trainer.current_epoch == 1
    assert "image_AUROC" in metrics
    assert not any(type(c).__name__ == "ForgettingDetection" for c in engine.trainer.callbacks)
