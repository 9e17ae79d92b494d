# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Keep an exported OpenVINO model in float32 on CPUs whose default inference precision is lower.

OpenVINO's CPU plugin runs a float32 model in bfloat16 by default on CPUs with AVX512-BF16 or AMX (Intel Sapphire
Rapids and later, AMD Zen 4 and later) unless the caller passes ``INFERENCE_PRECISION_HINT=f32``, which anomalib's
``OpenVINOInferencer`` does not by default. bfloat16 keeps 8 significant bits. GaussFT's scores are Mahalanobis
distances: the rounding of every activation of the backbone adds a noise vector to the features whose whitened norm
is added to every distance, so the scores of all images move up together (by up to a quarter of their value, in an
emulation of bfloat16 convolutions on a demo texture; see ``docs/deployment.md``), past anomalib's validation range.

The CPU plugin keeps a node in its original precision when the node carries OpenVINO's
``DisablePrecisionConversion`` runtime attribute (serialised in the IR as ``<attribute name="precise" version="0"/>``
under the layer's ``rt_info``; the same mark OpenVINO's own transformations put on precision-sensitive subgraphs).
:func:`keep_float32` writes that mark on every computing layer of an exported ``.xml``, so that
``OpenVINOInferencer(path)`` with no config computes GaussFT in float32 everywhere. The weights file is unchanged.

Example:
    >>> import tempfile, openvino as ov, numpy as np
    >>> from pathlib import Path
    >>> from openvino import opset13 as ops
    >>> x = ops.parameter([1, 4], np.float32, name="x")
    >>> model = ov.Model([ops.matmul(x, ops.constant(np.eye(4, dtype=np.float32)), False, False)], [x])
    >>> path = Path(tempfile.mkdtemp()) / "model.xml"
    >>> ov.save_model(model, path)
    >>> marked_layers(path)
    0
    >>> n_marked = keep_float32(path)
    >>> n_marked > 0 and marked_layers(path) == n_marked
    True
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

__all__ = ["PRECISION_ATTRIBUTE", "keep_float32", "marked_layers"]

#: The IR name of OpenVINO's ``DisablePrecisionConversion`` runtime attribute (C++ ``ov::disable_fp16_compression``).
PRECISION_ATTRIBUTE = "precise"

#: Layers that compute nothing: no precision to keep.
_PASSIVE_LAYERS = frozenset({"Parameter", "Result", "Const"})


def keep_float32(xml_path: str | Path) -> int:
    """Mark every computing layer of an OpenVINO IR so that the CPU plugin keeps it in float32.

    Args:
        xml_path: The exported ``.xml`` (its ``.bin`` is not touched).

    Returns:
        The number of layers marked (already marked layers count too).

    Raises:
        ValueError: If the file is not an OpenVINO IR (named).
    """
    path = Path(xml_path)
    tree = ET.parse(path)
    layers = tree.getroot().find("layers")
    if layers is None:
        msg = f"{path} is not an OpenVINO IR: it has no <layers>."
        raise ValueError(msg)
    marked = 0
    for layer in layers.iter("layer"):
        if layer.get("type") in _PASSIVE_LAYERS:
            continue
        rt_info = layer.find("rt_info")
        if rt_info is None:
            rt_info = ET.Element("rt_info")
            data = layer.find("data")
            layer.insert(0 if data is None else list(layer).index(data) + 1, rt_info)
        if not any(attribute.get("name") == PRECISION_ATTRIBUTE for attribute in rt_info.iter("attribute")):
            ET.SubElement(rt_info, "attribute", {"name": PRECISION_ATTRIBUTE, "version": "0"})
        marked += 1
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return marked


def marked_layers(xml_path: str | Path) -> int:
    """How many operations of the IR OpenVINO reads back with the ``DisablePrecisionConversion`` attribute.

    This asks OpenVINO itself (``read_model``), so it checks that the runtime recognises the mark, not only the text.

    Args:
        xml_path: An OpenVINO ``.xml``.

    Returns:
        The number of operations that carry the attribute.
    """
    import openvino as ov

    model = ov.Core().read_model(str(xml_path))
    return sum(
        1
        for op in model.get_ordered_ops()
        if any(key.startswith("DisablePrecisionConversion") for key in op.get_rt_info())
    )
