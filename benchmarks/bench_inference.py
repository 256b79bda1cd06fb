#!/usr/bin/env python
"""CPU inference paths side by side: torch fp32, torch bf16 (weights cast, as the pipeline's `dtype`; and fp32
weights under autocast), ONNX Runtime fp32 and ONNX Runtime with int8 dynamic quantization (`export-onnx --int8`).

    python benchmarks/bench_inference.py                          # paper + tiny, 256 px, batch 1 and 8
    python benchmarks/bench_inference.py --configs tiny --batches 8 --paths "ORT int8 (dynamic)" --rounds 5

Every round times every path once, round-robin, so load from other processes hits them alike; the best round
estimates each path's own speed (the median is printed too), and the speed-up column divides torch fp32's best time
by each path's. Images/s are in absolute terms and noisy on a shared machine; compare the ratios of one run.
`tiny` is the packaged model (swinih-tiny with its released weights), `paper` the paper's SwinIH with random
weights (speed does not depend on them). The ONNX files are exported by `lemart_hf.onnx.export_onnx` for this size.
Each path also reports the peak memory its first (warm-up) call added to the process (approximate: sampled RSS) and
its largest absolute difference from torch fp32 on the benchmark input ([0, 1] scale). An ONNX Runtime path whose
estimated peak memory (`onnx_runtime_bytes`) exceeds 60% of the memory available when it starts is skipped (a session
keeps the memory of its largest run, so two ONNX Runtime paths at 256 px, batch 8 may not fit together: `--paths`).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_model.py: spinning OpenMP threads on a shared CPU

import torch  # noqa: E402
from bench_model import PeakMemory, available_memory  # noqa: E402

CONFIGS = {"paper": "swinih-base", "tiny": "swinih-tiny"}


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


def build_paths(model, size: int, folder: Path, names: list[str]) -> dict:
    """name -> (callable or model: pixel_values -> harmonized, whether it runs in ONNX Runtime)."""
    from lemart_hf.onnx import OnnxHarmonizationModel, export_onnx, quantize_onnx

    cast = copy.deepcopy(model).to(torch.bfloat16)

    def autocast(pixel_values):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(pixel_values=pixel_values).harmonized

    paths = {
        "torch fp32": (lambda x: model(pixel_values=x).harmonized, False),
        "torch bf16 (cast)": (lambda x: cast(pixel_values=x).harmonized, False),
        "torch bf16 (autocast)": (autocast, False),
    }
    if {"ORT fp32", "ORT int8 (dynamic)"} & set(names):
        folder.mkdir(parents=True, exist_ok=True)
        exported = export_onnx(model, folder / "model.onnx", (size, size))
        paths["ORT fp32"] = (OnnxHarmonizationModel(exported), True)
    if "ORT int8 (dynamic)" in names:
        quantized = quantize_onnx(exported, folder / "model_int8.onnx")
        paths["ORT int8 (dynamic)"] = (OnnxHarmonizationModel(quantized), True)
    return {name: paths[name] for name in PATHS if name in names}


def run_case(paths: dict, model, size: int, batch: int, rounds: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.rand(batch, 4, size, size, generator=generator)
    pixel_values[:, 3] = (pixel_values[:, 3] > 0.5).float()
    rows, live = {}, {}
    for name, (run, onnx_runtime) in paths.items():
        row = rows[name] = {"path": name, "times": []}
        # Measured now: a session keeps the memory of its largest run (ONNX Runtime's arena) while the others run.
        if onnx_runtime and onnx_runtime_bytes(model, size, batch) > 0.6 * available_memory(torch.device("cpu")):
            row["skipped"] = f"needs ~{onnx_runtime_bytes(model, size, batch) / 2**30:.1f} GiB"
            continue
        call = run if not isinstance(run, torch.nn.Module) else (lambda x, m=run: m(pixel_values=x).harmonized)
        try:
            with torch.inference_mode(), PeakMemory(torch.device("cpu")) as memory:
                output = call(pixel_values).float()
        except (RuntimeError, MemoryError) as error:  # onnxruntime's allocation failures are RuntimeErrors too
            row["skipped"] = f"failed: {str(error).splitlines()[0][:60]}"
            continue
        row["peak_mb"] = memory.peak / 2**20
        row["output"] = output
        live[name] = call
    reference = rows["torch fp32"].get("output")
    for row in rows.values():
        if reference is not None and "output" in row:
            row["max_diff"] = float((row.pop("output") - reference).abs().max())
    for _ in range(rounds):
        for name, call in live.items():
            start = time.perf_counter()
            with torch.inference_mode():
                call(pixel_values)
            rows[name]["times"].append(time.perf_counter() - start)
    return list(rows.values())


def print_table(config_name: str, size: int, batch: int, rows: list[dict]) -> None:
    best_fp32 = min(rows[0]["times"]) if rows[0]["times"] else None
    print(f"\n{config_name} {size}x{size}, batch {batch}, {torch.get_num_threads()} thread(s)")
    print("| path | img/s (best) | img/s (median) | speed-up vs torch fp32 | peak MB | max abs diff vs fp32 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        if "skipped" in row:
            print(f"| {row['path']} | skipped: {row['skipped']} | | | | |")
            continue
        best, median = min(row["times"]), statistics.median(row["times"])
        ratio = f"{best_fp32 / best:.2f}x" if best_fp32 else ""
        print(
            f"| {row['path']} | {batch / best:.2f} | {batch / median:.2f} | {ratio} | {row['peak_mb']:.0f} | "
            f"{row['max_diff']:.2e} |"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="paper,tiny", help="comma-separated: paper, tiny")
    parser.add_argument("--size", type=int, default=256, help="working size in pixels (square)")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up call per path)")
    parser.add_argument(
        "--paths", default=",".join(PATHS), help=f"comma-separated, torch fp32 always included: {', '.join(PATHS)}"
    )
    args = parser.parse_args(argv)
    configs = args.configs.split(",")
    names = ["torch fp32", *(name.strip() for name in args.paths.split(",") if name.strip() != "torch fp32")]
    for given, known in ((configs, CONFIGS), (names, PATHS)):
        if unknown := sorted(set(given) - set(known)):
            parser.error(f"unknown {unknown}; choose from {list(known)}")
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        for config_name in configs:
            model = load_model(config_name)
            paths = build_paths(model, args.size, Path(folder) / config_name, names)
            for batch in batches:
                print_table(config_name, args.size, batch, run_case(paths, model, args.size, batch, args.rounds))


if __name__ == "__main__":
    main()
