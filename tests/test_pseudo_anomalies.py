# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Tests of the pseudo-anomaly generators used by the catastrophic-forgetting validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_gaussft.forgetting.pseudo_anomalies import (
    PSEUDO_ANOMALIES,
    AugMixCorruption,
    CutMix,
    CutPaste,
    CutPasteScar,
    Mixup,
    PseudoAnomaly,
    build_pseudo_anomalies,
)
from anomalib_gaussft.forgetting.pseudo_anomalies.base import _derangement

NAMES = ["mixup", "cutmix", "cutpaste", "cutpaste_scar", "augmix"]


def textures(n: int, height: int = 64, width: int = 64, seed: int = 0, dtype: torch.dtype = torch.float32):
    """Random smooth textures plus fine noise, in [0, 1] (pixel values are practically unique)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, max(height // 8, 1), max(width // 8, 1), generator=g)
    smooth = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    noise = torch.rand(n, 3, height, width, generator=g)
    return (0.7 * smooth + 0.3 * noise).clamp(0, 1).to(dtype)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run(aug: PseudoAnomaly, images: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return aug(images, gen(seed))


def mask_bbox(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the bounding box of a (H, W) mask."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    top, left = int(rows[0]), int(cols[0])
    return top, left, int(rows[-1]) - top + 1, int(cols[-1]) - left + 1


@pytest.fixture(params=NAMES)
def aug(request: pytest.FixtureRequest) -> PseudoAnomaly:
    return PSEUDO_ANOMALIES[request.param]()


# ----------------------------------------------------------------------------------------------------------------------
# Contract shared by all generators
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 64, 64), (3, 48, 80)])
def test_output_contract(aug: PseudoAnomaly, shape: tuple[int, int, int]) -> None:
    n, h, w = shape
    images = textures(n, h, w)
    before = images.clone()
    out, masks = run(aug, images)
    assert torch.equal(images, before), "input must not be modified in place"
    assert out.shape == images.shape
    assert out.dtype == images.dtype
    assert masks.shape == (n, 1, h, w)
    assert masks.dtype == images.dtype
    assert out.min() >= 0
    assert out.max() <= 1
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    outside = (masks == 0).expand_as(images)
    assert torch.equal(out[outside], images[outside]), "pixels outside the mask must be bit-identical"
    for i in range(n):
        inside = masks[i, 0].bool()
        assert inside.any(), f"image {i}: empty mask"
        change = (out[i] - images[i]).abs().mean(dim=0)[inside].mean()
        assert change > 1e-2, f"image {i}: mean change {change:.4f} inside the mask"


def test_determinism(aug: PseudoAnomaly) -> None:
    images = textures(5)
    out_a, masks_a = run(aug, images, seed=7)
    out_b, masks_b = run(aug, images, seed=7)
    out_c, _ = run(aug, images, seed=8)
    assert torch.equal(out_a, out_b)
    assert torch.equal(masks_a, masks_b)
    assert not torch.equal(out_a, out_c)


def test_single_image(aug: PseudoAnomaly) -> None:
    images = textures(1, 40, 40, seed=3)
    out, masks = run(aug, images)
    assert out.shape == images.shape
    assert masks.shape == (1, 1, 40, 40)
    outside = (masks == 0).expand_as(images)
    assert torch.equal(out[outside], images[outside])
    inside = masks[0, 0].bool()
    assert inside.any()
    assert (out[0] - images[0]).abs().mean(dim=0)[inside].mean() > 1e-2


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_other_float_dtypes(aug: PseudoAnomaly, dtype: torch.dtype) -> None:
    images = textures(3, 32, 32, dtype=dtype)
    out, masks = run(aug, images)
    assert out.dtype == dtype
    assert masks.dtype == dtype
    outside = (masks == 0).expand_as(images)
    assert torch.equal(out[outside], images[outside])
    assert (out != images).any()


def test_grayscale_images(aug: PseudoAnomaly) -> None:
    images = textures(3, 32, 32)[:, :1]
    out, masks = run(aug, images)
    assert out.shape == (3, 1, 32, 32)
    outside = masks == 0
    assert torch.equal(out[outside], images[outside])
    assert (out != images).any()


@pytest.mark.parametrize(
    "bad",
    [torch.rand(3, 32, 32), torch.rand(2, 4, 32, 32), torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)],
    ids=["3d", "4-channels", "uint8"],
)
def test_rejects_bad_images(aug: PseudoAnomaly, bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="Expected"):
        aug(bad, gen(0))


# ----------------------------------------------------------------------------------------------------------------------
# Rectangle-based generators: mask is a rectangle with area in the configured range
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "aug",
    [CutMix(), CutPaste(), AugMixCorruption(), CutMix(area_range=(0.2, 0.3), aspect_range=(0.5, 2.0))],
    ids=["cutmix", "cutpaste", "augmix", "cutmix-custom"],
)
@pytest.mark.parametrize("size", [(64, 64), (48, 80), (17, 23)])
def test_rectangle_mask_area(aug: PseudoAnomaly, size: tuple[int, int]) -> None:
    h, w = size
    images = textures(12, h, w, seed=5)
    _, masks = run(aug, images, seed=11)
    low, high = aug.area_range
    for i in range(len(images)):
        mask = masks[i, 0].bool()
        _, _, rh, rw = mask_bbox(mask)
        assert mask.sum() == rh * rw, "mask must be a filled rectangle"
        assert low <= rh * rw / (h * w) <= high
        aspect_low, aspect_high = aug.aspect_range
        # Aspect ratio of the rounded rectangle: allow one pixel of rounding on each side.
        assert aspect_low * (rh - 1) / (rw + 1) <= 1 <= aspect_high * (rh + 1) / max(rw - 1, 1)


# ----------------------------------------------------------------------------------------------------------------------
# Generator-specific behaviour
# ----------------------------------------------------------------------------------------------------------------------
def test_mixup_is_a_blend_with_the_other_image() -> None:
    images = textures(2, 32, 32, seed=1)
    out, masks = run(Mixup(alpha_range=(0.3, 0.6)), images)
    assert torch.all(masks == 1)
    for i, j in [(0, 1), (1, 0)]:  # the only permutation of two images without fixed points
        delta = images[j] - images[i]
        alpha = ((out[i] - images[i]) * delta).sum() / (delta * delta).sum()
        assert 0.3 - 1e-4 <= alpha <= 0.6 + 1e-4
        torch.testing.assert_close(out[i], images[i] + alpha * delta, atol=1e-5, rtol=0)


def test_cutmix_copies_the_partner_at_the_same_location() -> None:
    images = textures(2, 32, 32, seed=2)
    out, masks = run(CutMix(), images)
    for i, j in [(0, 1), (1, 0)]:
        inside = masks[i].bool().expand_as(images[i])
        assert torch.equal(out[i][inside], images[j][inside])


def test_cutmix_partners_come_from_other_images() -> None:
    images = textures(6, 32, 32, seed=4)
    out, masks = run(CutMix(), images)
    for i in range(6):
        top, left, rh, rw = mask_bbox(masks[i, 0].bool())
        patch = out[i, :, top : top + rh, left : left + rw]
        sources = [j for j in range(6) if torch.equal(images[j, :, top : top + rh, left : left + rw], patch)]
        assert len(sources) == 1
        assert sources[0] != i


def test_cutpaste_patch_comes_from_the_same_image() -> None:
    images = textures(4, 32, 32, seed=6)
    out, masks = run(CutPaste(color_jitter=0.0), images)
    for i in range(4):
        top, left, rh, rw = mask_bbox(masks[i, 0].bool())
        patch = out[i, :, top : top + rh, left : left + rw]
        windows = images[i].unfold(1, rh, 1).unfold(2, rw, 1)  # (C, H - rh + 1, W - rw + 1, rh, rw)
        matches = (windows == patch[:, None, None]).all(dim=(0, 3, 4))
        assert matches.any(), f"image {i}: pasted patch is not a rectangle of the same image"
        assert not matches[top, left], f"image {i}: patch pasted onto itself"


def test_cutpaste_color_jitter_changes_the_patch_colours() -> None:
    images = textures(4, 32, 32, seed=6)
    jittered, masks = run(CutPaste(color_jitter=0.5), images)
    # With strong jitter, the pasted patch is no longer an exact rectangle of the image (without jitter it is, see
    # test_cutpaste_patch_comes_from_the_same_image).
    for i in range(4):
        top, left, rh, rw = mask_bbox(masks[i, 0].bool())
        patch = jittered[i, :, top : top + rh, left : left + rw]
        windows = images[i].unfold(1, rh, 1).unfold(2, rw, 1)
        assert not (windows == patch[:, None, None]).all(dim=(0, 3, 4)).any()


def test_scar_copies_pixels_of_the_same_image() -> None:
    images = textures(4, 64, 64, seed=8)
    out, masks = run(CutPasteScar(color_jitter=0.0), images)
    for i in range(4):
        inside = masks[i, 0].bool()
        scar_pixels = out[i][:, inside].T  # (K, C)
        all_pixels = images[i].flatten(1).T  # (H * W, C)
        found = (scar_pixels[:, None, :] == all_pixels[None, :, :]).all(dim=2).any(dim=1)
        assert found.all(), f"image {i}: scar pixels are not pixels of the image"


@pytest.mark.parametrize("size", [256, 64])
def test_scar_is_thin_and_scaled(size: int) -> None:
    scar = CutPasteScar()
    images = textures(6, size, size, seed=9)
    _, masks = run(scar, images)
    scale = size / scar.reference_size
    max_w = max(scar.width_range[1] * scale, scar.MIN_WIDTH_PX)
    max_l = max(scar.length_range[1] * scale, scar.MIN_LENGTH_PX)
    for i in range(6):
        mask = masks[i, 0].bool()
        _, _, bh, bw = mask_bbox(mask)
        # Rasterised rotated rectangle: area and extent bounded by the largest scar plus one pixel border.
        assert mask.sum() <= (max_w + 2) * (max_l + 2)
        assert math.hypot(bh, bw) <= math.hypot(max_w, max_l) + 2 * math.sqrt(2)


@pytest.mark.parametrize(("angle", "vertical"), [(0.0, True), (90.0, False)])
def test_scar_orientation(angle: float, vertical: bool) -> None:
    scar = CutPasteScar(width_range=(4, 4), length_range=(24, 24), rotation_range=(angle, angle))
    images = textures(3, 256, 256, seed=10)
    _, masks = run(scar, images)
    for i in range(3):
        mask = masks[i, 0].bool()
        _, _, bh, bw = mask_bbox(mask)
        assert int(mask.sum()) == bh * bw, "an axis-aligned scar is a filled rectangle"
        long_side, short_side = (bh, bw) if vertical else (bw, bh)
        assert long_side in (24, 25)
        assert short_side in (4, 5)


def test_scar_fits_tiny_images() -> None:
    images = textures(4, 8, 8, seed=12)
    out, masks = run(CutPasteScar(), images)
    assert masks.flatten(1).sum(dim=1).min() > 0
    outside = (masks == 0).expand_as(images)
    assert torch.equal(out[outside], images[outside])


def test_augmix_whole_image_mode() -> None:
    images = textures(3, 32, 32, seed=13)
    out, masks = run(AugMixCorruption(region=False), images)
    assert torch.all(masks == 1)
    assert (out - images).abs().mean() > 1e-2


def test_augmix_fixed_depth_and_width() -> None:
    aug = AugMixCorruption(severity=10, width=1, depth=4, mix_weight_range=(1.0, 1.0))
    out, masks = run(aug, textures(3, 32, 32, seed=14))
    assert out.shape == (3, 3, 32, 32)
    assert masks.sum() > 0


def test_retries_reach_the_minimum_change() -> None:
    # Constant images with one textured quadrant: many CutPaste proposals copy flat background onto flat background.
    images = torch.full((16, 3, 32, 32), 0.5)
    images[:, :, :16, :16] = textures(16, 16, 16, seed=15)
    one_try = CutPaste(color_jitter=0.0, min_change=0.05, max_tries=1)
    many_tries = CutPaste(color_jitter=0.0, min_change=0.05, max_tries=50)

    def changes(aug: PseudoAnomaly) -> torch.Tensor:
        out, masks = run(aug, images, seed=16)
        diff = (out - images).abs().mean(dim=1)
        return (diff * masks[:, 0]).flatten(1).sum(1) / masks[:, 0].flatten(1).sum(1)

    assert (changes(one_try) < 0.05).any(), "test setup: some single proposals should be weak"
    assert (changes(many_tries) >= 0.05).all()


def test_constant_images_do_not_crash() -> None:
    images = torch.full((3, 3, 16, 16), 0.25)
    for aug in build_pseudo_anomalies(NAMES).values():
        out, masks = run(aug, images)
        outside = (masks == 0).expand_as(images)
        assert torch.equal(out[outside], images[outside])
        assert out.min() >= 0
        assert out.max() <= 1


@pytest.mark.parametrize("n", range(2, 12))
def test_derangement_has_no_fixed_points(n: int) -> None:
    for seed in range(20):
        perm = _derangement(n, gen(seed))
        assert sorted(perm.tolist()) == list(range(n))
        assert (perm != torch.arange(n)).all()


def test_derangement_rejects_single_element() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        _derangement(1, gen(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_images_with_cpu_generator(aug: PseudoAnomaly) -> None:
    images = textures(4, 32, 32).cuda()
    out, masks = aug(images, gen(0))
    out_cpu, masks_cpu = aug(images.cpu(), gen(0))
    assert out.device.type == "cuda"
    assert masks.device.type == "cuda"
    assert torch.equal(masks.cpu(), masks_cpu)
    outside = (masks == 0).expand_as(images)
    assert torch.equal(out[outside], images[outside])
    torch.testing.assert_close(out.cpu(), out_cpu, atol=2e-2, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# Registry and argument validation
# ----------------------------------------------------------------------------------------------------------------------
def test_registry_names() -> None:
    assert list(PSEUDO_ANOMALIES) == NAMES
    for name, cls in PSEUDO_ANOMALIES.items():
        assert cls.name == name
        assert issubclass(cls, PseudoAnomaly)


def test_build_pseudo_anomalies() -> None:
    built = build_pseudo_anomalies(["CutPaste-Scar", "mixup", "mixup", "augmix"])
    assert list(built) == ["cutpaste_scar", "mixup", "augmix"]
    assert isinstance(built["cutpaste_scar"], CutPasteScar)
    assert all(aug.name == name for name, aug in built.items())
    assert list(build_pseudo_anomalies("cutmix")) == ["cutmix"]
    assert build_pseudo_anomalies([]) == {}


def test_build_unknown_name() -> None:
    with pytest.raises(ValueError, match="'gaussian_noise'") as info:
        build_pseudo_anomalies(["mixup", "gaussian_noise"])
    for name in NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: Mixup(alpha_range=(0.0, 0.5)),
        lambda: Mixup(alpha_range=(0.6, 0.3)),
        lambda: Mixup(alpha_range=(0.5, 1.5)),
        lambda: CutMix(area_range=(0.0, 0.1)),
        lambda: CutMix(aspect_range=(-1.0, 2.0)),
        lambda: CutPaste(area_range=(0.1,)),
        lambda: CutPaste(color_jitter=-0.1),
        lambda: CutPasteScar(width_range=(0, 4)),
        lambda: CutPasteScar(reference_size=0),
        lambda: AugMixCorruption(severity=0),
        lambda: AugMixCorruption(width=0),
        lambda: AugMixCorruption(depth=0),
        lambda: AugMixCorruption(alpha=0.0),
        lambda: AugMixCorruption(mix_weight_range=(0.5, 1.2)),
        lambda: Mixup(min_change=-1.0),
        lambda: CutMix(max_tries=0),
    ],
)
def test_invalid_arguments(factory) -> None:
    with pytest.raises(ValueError, match="must"):
        factory()
