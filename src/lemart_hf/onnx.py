"""SwinIH in ONNX Runtime: `export_onnx` writes the network as an ONNX file; `OnnxHarmonizationModel` runs that file
in place of the PyTorch model, so the "image-harmonization" pipeline (`onnx_pipeline`), `lemart-harmonize --model
model.onnx` and `examples/run_eval.py --model model.onnx` keep their own pre-processing and full-resolution transfer.

    lemart-harmonize export-onnx swinih.onnx                 # the packaged model; or --model PATH_OR_ID
    lemart-harmonize export-onnx swinih-int8.onnx --int8     # int8 weights (`quantize_onnx`)
    lemart-harmonize --model swinih.onnx composite.jpg mask.png -o harmonized.png

The graph is the network of `SwinIHForHarmonization.forward`: `pixel_values` (B, 4, H, W) float32 in [0, 1] (RGB and
mask) -> `harmonized` (B, 3, H, W) float32 in [0, 1] (residual output, background blending and clamp included). B, H
and W are dynamic: H and W are multiples of the model's `size_multiple` (patch x coarsest stage factor x window: 32
for swinih-tiny, 128 for the paper's SwinIH) of at least two windows (64 / 256), where every block's shifted windows
exist; `OnnxHarmonizationModel` pads other sizes to the next one (replicate, as the PyTorch model pads) and crops
back, which gives the PyTorch model's output for any size above one window (for swinih-tiny: over 32 pixels a side).

The window layers are exported in their reference formulation (`attn_implementation="eager"`: roll, window
partition, bias + shift mask, softmax), which is written for any grid size; the shipped fast path orders tokens by
windows with index tables built in Python per input size, which a graph with a symbolic size cannot hold. The global
layer keeps `scaled_dot_product_attention`, exported as one ONNX `Attention` op (opset 23); ONNX Runtime's CPU kernel
of it holds all B x heads x T x T scores at once (T tokens: 1024 at 128 px, 50 MB per image for swinih-tiny; 4096 at
256 px, 0.8 GB per image) and keeps that memory for the next run (its arena). The file records the working size the
pipeline runs at and whether the model blends the background (`metadata_props`, keys in `METADATA`).
Needs `pip install "lemart_hf[onnx]"` (onnx and onnxscript to export, onnxruntime to run).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PretrainedConfig

from .models.modeling_harmonization import HarmonizationOutput, check_unit_range, split_pixel_values
from .models.swinih.modeling_swinih import SwinIHAttention, SwinIHForHarmonization
from .pipelines import ImageHarmonizationPipeline
from .pipelines.image_processing_swinih import SwinIHImageProcessor

OPSET = 23  # the first with the `Attention` op
INSTALL_HINT = 'pip install "lemart_hf[onnx]"'
#: metadata_props keys of an exported file: working size "HxW", sizes the graph takes, background blending ("1"/"0").
METADATA = ("lemart_hf.working_size", "lemart_hf.size_multiple", "lemart_hf.min_size", "lemart_hf.blend_background")


def require_module(module: str):
    """Import ``module`` (onnxruntime, onnxscript) or raise `ImportError` with the pip command that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{module} is not installed: {INSTALL_HINT}") from error


def graph_sizes(config) -> tuple[int, int]:
    """(size_multiple, min_size) of an exported SwinIH: H and W must be multiples of the first and at least the second.

    A multiple of patch x coarsest factor x window tiles every stage's grid with whole windows; two windows a side
    (on the coarsest grid) make every shifted block shift, as the graph was traced.
    """
    multiple = config.patch_size * max(config.stage_resolution_factors) * config.window_size
    return multiple, 2 * multiple


def _graph_side(side: int, multiple: int, minimum: int) -> int:
    return max(minimum, -(-side // multiple) * multiple)


class _Network(torch.nn.Module):
    """`pixel_values` -> `harmonized` of a SwinIHForHarmonization, with export-friendly attention (module docstring)."""

    def __init__(self, model: SwinIHForHarmonization):
        super().__init__()
        self.model = copy.deepcopy(model).float().eval()
        self.model.config._attn_implementation = "eager"
        for module in self.model.modules():
            if isinstance(module, SwinIHAttention) and module.is_global:
                module.config = copy.copy(module.config)
                module.config._attn_implementation = "sdpa"
        self.eval()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).harmonized


def export_onnx(
    model: SwinIHForHarmonization, path: str | os.PathLike, working_size: tuple[int, int] = (256, 256)
) -> Path:
    """Write ``model`` (any dtype; exported in float32) to ``path`` as ONNX with dynamic batch, height and width.

    Args:
        model: a `SwinIHForHarmonization`.
        path: the .onnx file to write (weights inside it).
        working_size: (height, width) the pipeline runs the exported model at (its image processor's size); also
            the size the graph is traced at (rounded up to a size the graph takes).
    Returns:
        ``path`` as a `Path`.
    Raises:
        TypeError: ``model`` is not a SwinIH harmonization model.
        ValueError: a working side of at most one window on the coarsest grid (``size_multiple`` pixels), where the
            PyTorch model runs unshifted windows the graph does not have.
        ImportError: onnxscript (the exporter's dependency) is not installed.
    """
    if not isinstance(model, SwinIHForHarmonization):
        raise TypeError(f"ONNX export supports SwinIH models (SwinIHForHarmonization), got {type(model).__name__}")
    multiple, minimum = graph_sizes(model.config)
    if min(working_size) <= multiple:
        raise ValueError(
            f"working size {working_size[0]}x{working_size[1]}: the exported model matches this one for sides over "
            f"{multiple} pixels (more than one window); give a larger working size"
        )
    require_module("onnxscript")
    from torch.export import Dim

    height, width = (_graph_side(side, multiple, minimum) for side in working_size)
    # Batch 2: torch.export specializes a dimension of size 1 to a constant.
    example = torch.rand(2, 4, height, width)
    blocks = {axis: Dim(f"{axis}_blocks", min=2) for axis in ("height", "width")}
    shapes = {"pixel_values": {0: Dim("batch"), 2: multiple * blocks["height"], 3: multiple * blocks["width"]}}
    program = torch.onnx.export(
        _Network(model),
        (example,),
        input_names=["pixel_values"],
        output_names=["harmonized"],
        dynamic_shapes=shapes,
        opset_version=OPSET,
        dynamo=True,
        verbose=False,
    )
    values = (f"{working_size[0]}x{working_size[1]}", multiple, minimum, int(model.config.blend_background))
    program.model.metadata_props.update({key: str(value) for key, value in zip(METADATA, values)})
    program.save(os.fspath(path))
    return Path(path)


def quantize_onnx(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Dynamic int8 quantization of an `export_onnx` file: the weights of its matrix multiplications stored as int8,
    their inputs quantized on the fly (onnxruntime.quantization.quantize_dynamic); the metadata is kept.

    Only MatMul nodes: the quantizer takes the ONNX `Attention` op (opset 23) for its com.microsoft namesake and would
    write an invalid QAttention node. Returns ``destination`` as a `Path`; `ImportError` without onnxruntime.
    """
    require_module("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, destination, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    return Path(destination)


def is_onnx_path(name_or_path: str | os.PathLike) -> bool:
    """Whether a --model argument names an ONNX file (by its extension)."""
    return os.fspath(name_or_path).lower().endswith(".onnx")


class OnnxHarmonizationModel(torch.nn.Module):
    """An exported SwinIH run by ONNX Runtime, called like the PyTorch model: ``model(pixel_values=x).harmonized``.

    Args:
        path: a file written by `export_onnx`.
        providers: ONNX Runtime execution providers (default: the CPU one).
    Attributes:
        config: `blend_background` as the model had it (what the pipeline and the evaluation read).
        working_size: (height, width) the model was exported for (its image processor's size).
    The session uses `torch.get_num_threads()` threads (so OMP_NUM_THREADS governs it as it does torch).
    Raises:
        ImportError: onnxruntime is not installed (the message says how to install it).
        ValueError: the file cannot be loaded, or was not written by `export_onnx`.
    """

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None):
        super().__init__()
        ort = require_module("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(
                os.fspath(path), options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own Fail / InvalidProtobuf / NoSuchFile types
            raise ValueError(f"cannot load the ONNX model {os.fspath(path)!r}: {error}") from error
        metadata = self.session.get_modelmeta().custom_metadata_map
        if not set(METADATA) <= set(metadata):
            raise ValueError(
                f"{os.fspath(path)!r} was not exported by lemart_hf (no {METADATA[0]} metadata); export the model "
                "with `lemart-harmonize export-onnx`"
            )
        height, width = metadata[METADATA[0]].split("x")
        self.working_size = (int(height), int(width))
        self.size_multiple, self.min_size = int(metadata[METADATA[1]]), int(metadata[METADATA[2]])
        self.config = PretrainedConfig(blend_background=metadata[METADATA[3]] == "1")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, pixel_values: torch.Tensor, **unused) -> HarmonizationOutput:
        """pixel_values (B, 4, H, W) float in [0, 1], any H and W -> `HarmonizationOutput` with harmonized (B, 3, H, W)
        float32 in [0, 1]. Other arguments of the PyTorch forward (e.g. `original_sizes`) are ignored.
        Raises `ValueError` as the PyTorch model does for inputs that are not (B, 4, H, W) floats in [0, 1]."""
        check_unit_range(pixel_values=pixel_values)
        split_pixel_values(pixel_values)
        height, width = pixel_values.shape[-2:]
        padded_h, padded_w = (_graph_side(side, self.size_multiple, self.min_size) for side in (height, width))
        padded = F.pad(pixel_values.float(), (0, padded_w - width, 0, padded_h - height), mode="replicate")
        (harmonized,) = self.session.run(None, {"pixel_values": padded.cpu().numpy()})
        harmonized = torch.from_numpy(harmonized)[..., :height, :width]
        return HarmonizationOutput(harmonized=harmonized.to(pixel_values.device))


def onnx_pipeline(path: str | os.PathLike, **kwargs) -> ImageHarmonizationPipeline:
    """The "image-harmonization" pipeline on an exported model, at the working size recorded in the file.

    ``kwargs`` are the pipeline's (`batch_size`, `highres_method`, `working_size`, `output_type`, ...); the
    pipeline runs on the CPU. Raises as `OnnxHarmonizationModel`.
    """
    model = OnnxHarmonizationModel(path)
    height, width = model.working_size
    processor = SwinIHImageProcessor(size={"height": height, "width": width})
    return ImageHarmonizationPipeline(model=model, image_processor=processor, device=torch.device("cpu"), **kwargs)


__all__ = [
    "METADATA",
    "OnnxHarmonizationModel",
    "export_onnx",
    "graph_sizes",
    "is_onnx_path",
    "onnx_pipeline",
    "quantize_onnx",
    "require_module",
]
