# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Pseudo-anomaly generators for detecting the onset of catastrophic forgetting.

Rippel et al. (2021) fine-tune the backbone of a Gaussian anomaly detector on normal data only and stop before the
representation collapses. Collapse is detected without real anomalies: held-out normal images are turned into
*pseudo-anomalies* with augmentations commonly used for vicinal risk minimisation (Mixup, CutMix, CutPaste, ...), and
the AUROC of normal versus pseudo-anomalous scores is tracked every epoch.

Every generator in this module works on **un-normalised** float images in ``[0, 1]`` of shape ``(N, C, H, W)``
(``C`` is 1 or 3; apply the model's pre-processor afterwards) and returns ``(augmented_images, masks)``:

* ``augmented_images`` has the input's shape and dtype and lies in ``[0, 1]``;
* ``masks`` has shape ``(N, 1, H, W)``, the input's dtype and values in ``{0, 1}``; it marks exactly the region whose
  pixels were replaced. Pixels outside the mask are bit-identical to the input (the output is assembled with
  :func:`torch.where`, never by arithmetic on untouched pixels). For :class:`Mixup` and whole-image
  :class:`AugMixCorruption` the mask covers the whole image.

All randomness comes from the ``torch.Generator`` passed to ``__call__``, so the same generator state gives the same
output. Random numbers are drawn on the generator's device and the image work happens on the images' device, so a CPU
generator can drive augmentations of CUDA images.

Minimum change: a proposal can be nearly invisible (a CutMix rectangle taken from the same flat background of a
similar image, a CutPaste patch pasted onto itself, an AugMix chain that happens to be near the identity). Each image
is therefore proposed up to ``max_tries`` times; the first proposal whose mean absolute change inside its mask (over
pixels and channels) reaches ``min_change`` is kept, otherwise the proposal with the largest change is kept. This is
best effort: nothing can change a constant image by cutting and pasting it, and partners that are nearly identical
to the image (Mixup) bias the kept blend weight towards the top of its range.

Partners (:class:`Mixup`, :class:`CutMix`) are the other images of the batch, assigned by a random permutation without
fixed points. A batch of one image is paired with a horizontally flipped copy of itself rolled by a third of its
height and width.

Example:
    >>> import torch
    >>> from anomalib_gaussft.forgetting.pseudo_anomalies import build_pseudo_anomalies
    >>> generators = build_pseudo_anomalies(["cutpaste", "mixup"])
    >>> sorted(generators)
    ['cutpaste', 'mixup']
    >>> images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    >>> augmented, masks = generators["cutpaste"](images, torch.Generator().manual_seed(0))
    >>> augmented.shape, masks.shape
    (torch.Size([4, 3, 64, 64]), torch.Size([4, 1, 64, 64]))
    >>> bool(((augmented != images).any(dim=1, keepdim=True) <= masks.bool()).all())
    True


Modules: :mod:`~.base` (the :class:`PseudoAnomaly` contract and shared helpers), :mod:`~.mixing` (Mixup, CutMix),
:mod:`~.cutpaste` (CutPaste, CutPaste-scar), :mod:`~.augmix` (AugMix). A new generator subclasses
:class:`PseudoAnomaly` and is added to :data:`PSEUDO_ANOMALIES` here.
"""

from __future__ import annotations

from collections.abc import Sequence

from anomalib_gaussft.forgetting.pseudo_anomalies.augmix import AugMixCorruption
from anomalib_gaussft.forgetting.pseudo_anomalies.base import PseudoAnomaly
from anomalib_gaussft.forgetting.pseudo_anomalies.cutpaste import CutPaste, CutPasteScar
from anomalib_gaussft.forgetting.pseudo_anomalies.mixing import CutMix, Mixup

__all__ = [
    "PSEUDO_ANOMALIES",
    "AugMixCorruption",
    "CutMix",
    "CutPaste",
    "CutPasteScar",
    "Mixup",
    "PseudoAnomaly",
    "build_pseudo_anomalies",
]

PSEUDO_ANOMALIES: dict[str, type[PseudoAnomaly]] = {
    cls.name: cls for cls in (Mixup, CutMix, CutPaste, CutPasteScar, AugMixCorruption)
}
"""Pseudo-anomaly generator classes by registry name."""


def build_pseudo_anomalies(names: Sequence[str]) -> dict[str, PseudoAnomaly]:
    """Instantiate pseudo-anomaly generators with their default arguments.

    Names are matched case-insensitively, with ``-`` accepted for ``_`` (``"CutPaste-Scar"`` is ``"cutpaste_scar"``);
    duplicates are built once. A single string is treated as one name.

    Args:
        names: Registry names, keys of :data:`PSEUDO_ANOMALIES`: ``"mixup"``, ``"cutmix"``, ``"cutpaste"``,
            ``"cutpaste_scar"``, ``"augmix"``.

    Returns:
        The generators by canonical name, in the order given.

    Raises:
        ValueError: If a name is not in the registry; the message names it and lists the valid names.

    """
    if isinstance(names, str):
        names = [names]
    generators: dict[str, PseudoAnomaly] = {}
    for raw in names:
        key = str(raw).strip().lower().replace("-", "_")
        if key not in PSEUDO_ANOMALIES:
            msg = f"Unknown pseudo-anomaly {raw!r}; valid names are: {', '.join(PSEUDO_ANOMALIES)}."
            raise ValueError(msg)
        if key not in generators:
            generators[key] = PSEUDO_ANOMALIES[key]()
    return generators
