# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""What GaussFT changes in anomalib's export paths: the ONNX opset, float32 OpenVINO, a frozen Torch export.

:class:`ExportMixin` goes before ``AnomalibModule`` in :class:`~anomalib_gaussft.model.GaussFT`'s bases; everything
else (``Engine.export``, OpenVINO conversion and compression, the inferencers) is anomalib's own.

Example:
    >>> from anomalib_gaussft.model import GaussFT
    >>> GaussFT.ONNX_OPSET
    18
"""

from __future__ import annotations

from pathlib import Path

from anomalib_gaussft.model.openvino_precision import keep_float32

__all__ = ["ExportMixin"]


class ExportMixin:
    """Opset-18 ``to_onnx``, float32 ``to_openvino`` and frozen ``to_torch`` for an ``AnomalibModule``."""

    #: ONNX opset of exports. The dynamo exporter writes opset 18; anomalib's default request of 14 makes it try a
    #: down-conversion that fails on the anomaly map's reflect ``Pad`` and logs a traceback, leaving opset 18 anyway.
    ONNX_OPSET = 18

    def to_onnx(self, *args, **kwargs) -> Path:
        """Export to ONNX (also the first step of ``to_openvino``) at opset :attr:`ONNX_OPSET` unless told otherwise.

        Returns:
            Path of the exported ``.onnx`` file.
        """
        kwargs.setdefault("opset_version", self.ONNX_OPSET)
        return super().to_onnx(*args, **kwargs)

    #: Mark every computing node of OpenVINO exports to run in float32 (see
    #: :mod:`anomalib_gaussft.model.openvino_precision`): the CPU plugin's bfloat16 default on recent CPUs shifts
    #: Mahalanobis scores past the validation range. Set to ``False`` on a subclass to let the runtime choose.
    OPENVINO_FLOAT32 = True

    def to_openvino(self, *args, **kwargs) -> Path:
        """Export to OpenVINO IR (arguments as anomalib's), with every computing node kept in float32.

        Returns:
            Path of the exported ``.xml`` file.
        """
        path = super().to_openvino(*args, **kwargs)
        if self.OPENVINO_FLOAT32:
            keep_float32(path)
        return path

    def to_torch(self, *args, **kwargs) -> Path:
        """Export for anomalib's ``TorchInferencer`` with every parameter frozen.

        ``TorchInferencer`` calls the unpickled module without ``torch.no_grad``; frozen parameters mean no autograd
        graph is built at inference. The live model's ``requires_grad`` flags are restored afterwards.

        Returns:
            Path of the exported ``.pt`` file.
        """
        flags = {parameter: parameter.requires_grad for parameter in self.parameters()}
        for parameter in flags:
            parameter.requires_grad_(False)
        try:
            return super().to_torch(*args, **kwargs)
        finally:
            for parameter, flag in flags.items():
                parameter.requires_grad_(flag)
