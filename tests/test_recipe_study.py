# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The fine-tuning recipe study (docs/studies/recipes.md) on tiny data: random-weight Lite0, 64 px, 2 epochs."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from tools import recipe_study
from tools.recipe_study import RECIPES, Recipe

LAYERS = ["blocks.2", "blocks.4", "head"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[recipe_study.CategoryData, recipe_study.GaussFTModel]:
    from anomalib_gaussft.data.demo_dataset import generate_demo_dataset

    torch.set_num_threads(1)
    root = generate_demo_dataset(
        tmp_path_factory.mktemp("recipes"), ["brick"], image_size=64, n_train=10, n_test_good=4, n_test_defect=1
    )
    data = recipe_study.load_category(root, "brick", 64)
    torch.manual_seed(0)
    return data, recipe_study.GaussFTModel("tf_efficientnet_lite0", layers=LAYERS, pretrained=False)


def _run(tiny: tuple, recipe: Recipe, **kwargs: object) -> tuple[list[dict], recipe_study.GaussFTModel]:
    data, model = tiny
    model = copy.deepcopy(model)
    kwargs = {"seed": 0, "epochs": 2, "batch_size": 4, "holdout": 2, "log": False} | kwargs
    return recipe_study.run_recipe(recipe, model, data, **kwargs), model


def test_rows_epochs_and_label_free_choice(tiny: tuple) -> None:
    rows, _ = _run(tiny, RECIPES["baseline"], test_every=2)
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    pseudo = [row["pseudo_auroc"] for row in rows]
    latest_best = max(epoch for epoch, value in enumerate(pseudo) if value == max(pseudo))
    assert [row["chosen"] for row in rows] == [int(epoch == latest_best) for epoch in range(3)]
    assert rows[1]["step1_loss"] > 0  # 8 training images, batches of 4: two steps in epoch 1
    assert rows[1]["step2_loss"] > 0


def test_chosen_epoch_gets_its_test_auroc(tiny: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """An epoch the test set was skipped at is scored once the label-free rule picks it."""
    monkeypatch.setattr(recipe_study, "select_epoch", lambda scores, **_: (1, None))
    rows, _ = _run(tiny, RECIPES["baseline"], test_every=2)
    assert rows[1]["chosen"] == 1
    assert not math.isnan(rows[1]["test_auroc_sum"])
    assert not math.isnan(rows[1]["test_auroc_sqrtp"])


def test_epoch_zero_is_shared_and_frozen_stages_do_not_move(tiny: tuple) -> None:
    cache: dict = {}
    base, _ = _run(tiny, RECIPES["baseline"], epoch0=cache)
    frozen_recipe = Recipe("frozen", weighting="sqrtp", cross_fit=True, frozen=("conv_stem.", "bn1.", "blocks.0."))
    frozen, model = _run(tiny, frozen_recipe, epoch0=cache)
    assert frozen[0]["test_auroc_sum"] == base[0]["test_auroc_sum"]  # the cache gave the same fixed features
    start = tiny[1].feature_extractor.state_dict()
    after = model.feature_extractor.state_dict()
    assert torch.equal(after["conv_stem.weight"], start["conv_stem.weight"])
    assert torch.equal(after["blocks.0.0.conv_dw.weight"], start["blocks.0.0.conv_dw.weight"])
    assert not torch.equal(after["blocks.1.0.conv_pw.weight"], start["blocks.1.0.conv_pw.weight"])


def test_cross_fit_loss_is_out_of_sample(tiny: tuple) -> None:
    """Against the other fold's Gaussians the training images are farther than against their own (in-sample) fit."""
    in_sample, _ = _run(tiny, RECIPES["sqrtp"], epochs=1)
    cross_fit, _ = _run(tiny, RECIPES["sqrtp_crossfit"], epochs=1)
    assert cross_fit[1]["train_loss"] > 1.2 * in_sample[1]["train_loss"]


def test_unknown_weighting_is_named(tiny: tuple) -> None:
    with pytest.raises(ValueError, match="weighting 'max'"):
        recipe_study.level_weights(tiny[1], "max")


def test_summary_table_reads_the_csv(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "rows.csv"
    lines = ["recipe,category,seed,epoch,pseudo_auroc,test_auroc,step1_loss,step2_loss"]
    for seed in (0, 1):
        for epoch, pseudo in enumerate([0.5, 0.6, 0.9, 0.8]):  # the label-free rule picks epoch 2
            losses = "10,30" if epoch == 1 else ","
            lines.append(f"r,c,{seed},{epoch},{pseudo},{0.8 + 0.01 * epoch + 0.01 * seed},{losses}")
    path.write_text("\n".join(lines) + "\n")
    assert recipe_study.main(["--summarise", str(path)]) == 0
    row = capsys.readouterr().out.splitlines()[2]
    # fixed 0.805, best 0.835, chosen (epoch 2) 0.825: gain +0.020 on both seeds; loss ratio 3.
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells == ["r", "2", "0.805 ± 0.007", "0.835 ± 0.007", "0.825 ± 0.007", "+0.020 ± 0.000", "2/2", "2.0 / 3.0",
                     "3.000 ± 0.000"]  # fmt: skip
