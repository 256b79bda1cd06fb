#!/usr/bin/env python
"""Inference paths side by side, on the CPU (default) or a CUDA GPU (`--device cuda`).

CPU: torch fp32, torch bf16 (weights cast, as the pipeline's `dtype`; and fp32 weights under autocast), ONNX Runtime
fp32 and ONNX Runtime with int8 dynamic quantization (`export-onnx --int8`).
CUDA: torch fp32, torch bf16 (cast), torch bf16 (autocast) and ONNX Runtime fp32 on the CUDAExecutionProvider,
"ORT fp32 (CUDA)", which needs onnxruntime-gpu (and onnxscript to export): without it the script prints one line
saying the row is skipped and runs the torch rows. There is no int8 row on CUDA: dynamic int8 quantization
(`quantize_onnx`: int8 weights, activations quantized on the fly each call) is a CPU path, measured on a CPU with
AVX512-VNNI integer instructions; int8 on a GPU is usually static (QDQ) quantization run by TensorRT, which this
project does not do.

    python benchmarks/bench_inference.py                          # CPU: paper + tiny, 256 px, batch 1 and 8
    python benchmarks/bench_inference.py --configs tiny --batches 8 --paths "ORT int8 (dynamic)" --rounds 5
    python benchmarks/bench_inference.py --device cuda --rounds 5  # GPU: torch fp32 / bf16, ONNX Runtime CUDA

Every round times every path once, round-robin, so load from other processes hits them alike; the best round
estimates each path's own speed (the median is printed too), and the speed-up column divides torch fp32's best time
by each path's. Images/s are in absolute terms and noisy on a shared machine; compare the ratios of one run.
`tiny` is the packaged model (swinih-tiny with its released weights), `paper` the paper's SwinIH with random
weights (speed does not depend on them). The ONNX files are exported by `lemart_hf.onnx.export_onnx` for this size.
Each path also reports the peak memory its first (warm-up) call added to the process (approximate: sampled RSS) and
its largest absolute difference from torch fp32 on the benchmark input ([0, 1] scale). An ONNX Runtime path whose
estimated peak memory (`onnx_runtime_bytes`) exceeds 60% of the memory available when it starts is skipped (a session
keeps the memory of its largest run, so two ONNX Runtime paths at 256 px, batch 8 may not fit together: `--paths`).

On CUDA each timed call is bracketed by torch.cuda.synchronize(); peak memory is the CUDA allocator's peak
(torch.cuda.max_memory_allocated) during the warm-up call for the torch rows, and "n/a" for ONNX Runtime, whose
memory PyTorch's allocator does not see. The ONNX Runtime row binds its input and output to CUDA tensors (IO
binding), so it times the engine without host copies (`OnnxHarmonizationModel`, which the pipeline uses, passes
numpy arrays through the host); it uses TF32 exactly when torch's fp32 matmuls do
(torch.backends.cuda.matmul.allow_tf32, off by default). After the first table of each config a line tells which
execution provider ran each node of that call (ONNX Runtime's profiler): nodes the CUDA provider lacks a kernel for
run on the CPU, as some onnxruntime-gpu releases do for the ONNX `Attention` op of the global layer; ONNX Runtime
also puts small shape computations on the CPU on purpose.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_model.py: spinning OpenMP threads on a shared CPU

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from bench_model import PeakMemory, available_memory, sync  # noqa: E402

from lemart_hf.onnx import _graph_side  # noqa: E402  (the padding OnnxHarmonizationModel applies)

CONFIGS = {"paper": "swinih-base", "tiny": "swinih-tiny"}
CPU = torch.device("cpu")


def load_model(config_name: str) -> torch.nn.Module:
    from lemart_hf import SwinIHConfig, SwinIHForHarmonization
    from lemart_hf.default_model import default_model_path

    if config_name == "tiny":
        return SwinIHForHarmonization.from_pretrained(default_model_path()).eval()
    torch.manual_seed(0)
    return SwinIHForHarmonization(SwinIHConfig.from_preset(CONFIGS[config_name])).eval()


def onnx_runtime_bytes(model, size: int, batch: int) -> int:
    """Estimated peak of an ONNX Runtime run, from the float32 attention scores of the last stage: 1.4x the global
    layer's (B, heads, T, T), which its Attention op holds at once, plus 3x the windows' (B, heads, T, N) (scores, bias
    + mask, softmax of the reference formulation). Measured: 8.7 GB of RSS for swinih-tiny at 256 px, batch 8 (estimate
    9.3 GB); the paper config at batch 8 went past the 23 GB of the machine (estimate 18 GB)."""
    config = model.config
    side = size // (config.patch_size * config.stage_resolution_factors[-1])
    window = min(config.window_size, side) ** 2
    scores = 4 * batch * config.num_heads[-1] * side * side
    return int(scores * (1.4 * side * side * (config.num_global_layers > 0) + 3 * window))


PATHS = ("torch fp32", "torch bf16 (cast)", "torch bf16 (autocast)", "ORT fp32", "ORT int8 (dynamic)")
CUDA_PATHS = ("torch fp32", "torch bf16 (cast)", "torch bf16 (autocast)", "ORT fp32 (CUDA)")
ORT_CUDA = "ORT fp32 (CUDA)"


def ort_cuda_missing() -> str | None:
    """Why the ONNX Runtime CUDA row cannot run here (one line), or None when it can."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime-gpu is not installed (no onnxruntime at all)"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (
            f"onnxruntime-gpu is not installed (onnxruntime {ort.__version__} reports "
            f"{', '.join(ort.get_available_providers())})"
        )
    try:
        import onnxscript  # noqa: F401  (export_onnx's dependency)
    except ImportError:
        return "onnxscript (needed to export the ONNX graph) is not installed"
    return None


class OrtIoBinding:
    """An `export_onnx` file run by ONNX Runtime on ``providers`` with its input and output bound to torch tensors on
    their own device (no host copies on CUDA); called as ``self(pixel_values) -> harmonized`` (padded to a size the
    graph takes and cropped back, as `OnnxHarmonizationModel` does). The first call is profiled: `placement` then
    says which execution provider ran each node."""

    def __init__(self, path: Path, providers: list, graph_sizes: tuple[int, int]):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # for nodes left to the CPU provider
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        options.enable_profiling = True
        options.profile_file_prefix = os.fspath(path.with_suffix("")) + "_profile"
        self.session = ort.InferenceSession(os.fspath(path), options, providers=providers)
        self.size_multiple, self.min_size = graph_sizes
        self.placement = None

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        import numpy

        height, width = pixel_values.shape[-2:]
        sides = [_graph_side(side, self.size_multiple, self.min_size) for side in (height, width)]
        padded = pixel_values.float()
        if sides != [height, width]:
            padded = F.pad(padded, (0, sides[1] - width, 0, sides[0] - height), mode="replicate")
        padded = padded.contiguous()
        output = torch.empty(padded.shape[0], 3, *sides, device=padded.device)
        kind, index = padded.device.type, padded.device.index or 0
        binding = self.session.io_binding()
        binding.bind_input("pixel_values", kind, index, numpy.float32, tuple(padded.shape), padded.data_ptr())
        binding.bind_output("harmonized", kind, index, numpy.float32, tuple(output.shape), output.data_ptr())
        sync(padded.device)  # the input is written on torch's stream, ONNX Runtime reads it on its own
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        if self.placement is None:
            self.placement = self._placement(self.session.end_profiling())  # profiling stops here
        return output[..., :height, :width]

    @staticmethod
    def _placement(profile: str) -> str:
        with open(profile) as file:
            events = json.load(file)
        os.remove(profile)
        nodes = {}  # node name -> (op type, provider)
        for event in events:
            args = event.get("args", {})
            if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time") and "provider" in args:
                nodes[event["name"]] = (args.get("op_name", "?"), args["provider"])
        providers = Counter(provider for _, provider in nodes.values())
        on_cpu = Counter(op for op, provider in nodes.values() if provider == "CPUExecutionProvider")
        text = ", ".join(f"{count} on {provider}" for provider, count in providers.most_common())
        if on_cpu:
            text += "; on the CPU: " + ", ".join(f"{op} x{count}" for op, count in sorted(on_cpu.items()))
        return f"{len(nodes)} nodes: {text}"


def build_paths(model, size: int, folder: Path, names: list[str], device: torch.device) -> dict:
    """name -> (callable or model: pixel_values -> harmonized, whether it runs in ONNX Runtime).

    ``model`` is on the CPU; the torch paths are moved to ``device`` (the ONNX graph is exported from the CPU model).
    """
    from lemart_hf.onnx import OnnxHarmonizationModel, export_onnx, graph_sizes, quantize_onnx

    exported = None
    if {ORT_CUDA, "ORT fp32", "ORT int8 (dynamic)"} & set(names):
        folder.mkdir(parents=True, exist_ok=True)
        exported = export_onnx(model, folder / "model.onnx", (size, size))
    model.to(device)  # in place: the caller's model runs on `device` too
    cast = copy.deepcopy(model).to(torch.bfloat16)

    def autocast(pixel_values):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return model(pixel_values=pixel_values).harmonized

    paths = {
        "torch fp32": (lambda x: model(pixel_values=x).harmonized, False),
        "torch bf16 (cast)": (lambda x: cast(pixel_values=x).harmonized, False),
        "torch bf16 (autocast)": (autocast, False),
    }
    if device.type == "cuda":
        if exported is not None:
            tf32 = "1" if torch.backends.cuda.matmul.allow_tf32 else "0"
            providers = [("CUDAExecutionProvider", {"device_id": str(device.index or 0), "use_tf32": tf32})]
            try:
                run = OrtIoBinding(exported, [*providers, "CPUExecutionProvider"], graph_sizes(model.config))
            except Exception as error:  # noqa: BLE001  (onnxruntime's own types: Fail, InvalidArgument, ...)
                print(f"{ORT_CUDA}: skipped, no session: {str(error).splitlines()[0][:200]}", flush=True)
            else:
                if run.session.get_providers()[0] == "CUDAExecutionProvider":
                    paths[ORT_CUDA] = (run, True)
                else:  # onnxruntime falls back to the CPU when the CUDA provider cannot start (libraries missing)
                    providers = run.session.get_providers()
                    print(f"{ORT_CUDA}: skipped, the CUDA provider did not start (session: {providers})", flush=True)
        return {name: paths[name] for name in CUDA_PATHS if name in names and name in paths}
    if exported is not None:
        paths["ORT fp32"] = (OnnxHarmonizationModel(exported), True)
    if "ORT int8 (dynamic)" in names:
        quantized = quantize_onnx(exported, folder / "model_int8.onnx")
        paths["ORT int8 (dynamic)"] = (OnnxHarmonizationModel(quantized), True)
    return {name: paths[name] for name in PATHS if name in names}


def run_case(paths: dict, model, size: int, batch: int, rounds: int, device=CPU) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.rand(batch, 4, size, size, generator=generator)
    pixel_values[:, 3] = (pixel_values[:, 3] > 0.5).float()
    pixel_values = pixel_values.to(device)
    rows, live = {}, {}
    # On CUDA a path that fails for any reason (onnxruntime's own exception types included) becomes a skipped row.
    errors = (RuntimeError, MemoryError) if device.type == "cpu" else Exception
    for name, (run, onnx_runtime) in paths.items():
        row = rows[name] = {"path": name, "times": []}
        # Measured now: a session keeps the memory of its largest run (ONNX Runtime's arena) while the others run.
        if onnx_runtime and onnx_runtime_bytes(model, size, batch) > 0.6 * available_memory(device):
            row["skipped"] = f"needs ~{onnx_runtime_bytes(model, size, batch) / 2**30:.1f} GiB"
            continue
        call = run if not isinstance(run, torch.nn.Module) else (lambda x, m=run: m(pixel_values=x).harmonized)
        try:
            with torch.inference_mode(), PeakMemory(device) as memory:
                output = call(pixel_values).float()
                sync(device)
        except errors as error:  # onnxruntime's allocation failures are RuntimeErrors too
            row["skipped"] = f"failed: {str(error).splitlines()[0][:60]}"
            continue
        # On CUDA the allocator's peak does not see ONNX Runtime's memory.
        row["peak_mb"] = None if onnx_runtime and device.type == "cuda" else memory.peak / 2**20
        row["output"] = output
        live[name] = call
    reference = rows["torch fp32"].get("output")
    for row in rows.values():
        if reference is not None and "output" in row:
            row["max_diff"] = float((row.pop("output") - reference).abs().max())
    for _ in range(rounds):
        for name, call in live.items():
            sync(device)
            start = time.perf_counter()
            with torch.inference_mode():
                call(pixel_values)
            sync(device)
            rows[name]["times"].append(time.perf_counter() - start)
    return list(rows.values())


def print_table(config_name: str, size: int, batch: int, rows: list[dict], device=CPU) -> None:
    best_fp32 = min(rows[0]["times"]) if rows[0]["times"] else None
    where = f"{torch.get_num_threads()} thread(s)"
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)}, TF32 matmuls {torch.backends.cuda.matmul.allow_tf32}"
    print(f"\n{config_name} {size}x{size}, batch {batch}, {where}")
    print("| path | img/s (best) | img/s (median) | speed-up vs torch fp32 | peak MB | max abs diff vs fp32 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        if "skipped" in row:
            print(f"| {row['path']} | skipped: {row['skipped']} | | | | |")
            continue
        best, median = min(row["times"]), statistics.median(row["times"])
        ratio = f"{best_fp32 / best:.2f}x" if best_fp32 else ""
        peak = "n/a" if row["peak_mb"] is None else f"{row['peak_mb']:.0f}"
        print(
            f"| {row['path']} | {batch / best:.2f} | {batch / median:.2f} | {ratio} | {peak} | {row['max_diff']:.2e} |",
            flush=True,
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the paths run (default cpu)")
    parser.add_argument("--configs", default="paper,tiny", help="comma-separated: paper, tiny")
    parser.add_argument("--size", type=int, default=256, help="working size in pixels (square)")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up call per path)")
    parser.add_argument(
        "--paths",
        default=None,
        help=f"comma-separated, torch fp32 always included; CPU: {', '.join(PATHS)}; CUDA: {', '.join(CUDA_PATHS)} "
        "(default: all of the device's)",
    )
    args = parser.parse_args(argv)
    known_paths = CUDA_PATHS if args.device == "cuda" else PATHS
    configs = args.configs.split(",")
    requested = (args.paths or ",".join(known_paths)).split(",")
    names = ["torch fp32", *(name.strip() for name in requested if name.strip() != "torch fp32")]
    for given, known in ((configs, CONFIGS), (names, known_paths)):
        if unknown := sorted(set(given) - set(known)):
            parser.error(f"unknown {unknown}; choose from {list(known)}")
    batches = [int(b) for b in args.batches.split(",")]
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit(f"{Path(sys.argv[0]).name}: --device cuda, but torch {torch.__version__} sees no CUDA device")
        if ORT_CUDA in names and (reason := ort_cuda_missing()):
            print(f"{ORT_CUDA}: skipped, {reason}", flush=True)
            names.remove(ORT_CUDA)
    with tempfile.TemporaryDirectory() as folder:
        for config_name in configs:
            model = load_model(config_name)
            paths = build_paths(model, args.size, Path(folder) / config_name, names, device)
            ort_cuda = paths.get(ORT_CUDA, (None,))[0]
            for batch in batches:
                rows = run_case(paths, model, args.size, batch, args.rounds, device)
                print_table(config_name, args.size, batch, rows, device)
                if ort_cuda is not None and ort_cuda.placement:  # set by its first (profiled) call
                    print(f"{ORT_CUDA}, which execution provider ran each node: {ort_cuda.placement}", flush=True)
                    ort_cuda = None


if __name__ == "__main__":
    main()
