#!/usr/bin/env python
"""SwinIH speed benchmark: throughput, peak memory, exact FLOPs and FLOP/s against this machine's matmul rate.

Every number is measured side by side in one run: each round times every variant once (round-robin) plus a dense
matmul in each variant's arithmetic (2048^3 on CPU, 8192^3 on GPU; fp32, or bf16 for bf16 variants), so load from
other processes hits all of them alike. Reported: the best round (other processes only ever slow a run down) and the
median round.

    python benchmarks/bench_model.py                                   # CPU, paper + tiny, 256 / 512 (+1024 fwd)
    python benchmarks/bench_model.py --device cuda --dtype bf16 --compile
    python benchmarks/bench_model.py --dtype bf16 --configs paper,tiny --sizes 64,128,256 --no-eager  # CPU bf16 vs fp32
    python benchmarks/bench_model.py --configs tiny --sizes 128,256 --modes train --baseline 2a17b49

Variants: `sdpa` (the model as shipped), `eager` (the reference attention, `attn_implementation="eager"`; skipped
where its attention matrices would not fit in memory), `baseline` (`--baseline REV`: modeling_swinih.py from that
git revision, same weights), `compiled` (`--compile`: torch.compile of `sdpa`). With `--dtype bf16` (autocast) also
`fp32` (the same model in fp32: its 'sdpa x' is the bf16 / fp32 speed-up) and, for inference, `cast` (bf16 weights
and inputs, no autocast: the pipeline's `dtype=torch.bfloat16`).
FLOPs are counted exactly with `torch.utils.flop_counter.FlopCounterMode` on the meta device (matmuls, convolutions
and attention; SDPA decomposes into its two batched matmuls there), forward and forward+backward.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

# On a CPU shared with other jobs, OpenMP threads that spin while waiting for a descheduled sibling make every parallel
# op crawl (seen here: a 2-thread training step 10x slower than 1 thread under load). Passive waiting keeps timings
# meaningful; set OMP_WAIT_POLICY yourself to measure otherwise. Must happen before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from code_versions import REPO, import_as_package, package_name, sources_at_revision  # noqa: E402

SWINIH_DIR = REPO / "src" / "lemart_hf" / "models" / "swinih"
MODEL_FILES = ("configuration_harmonization.py", "configuration_swinih.py", "modeling_swinih.py", "modeling_harmonization.py")
# paper: SwinIH as published; tiny: the 2.1 M-parameter CPU preset; local: SwinIH-Local (the paper config without its
# global layer), where the eager reference still fits in memory at 512x512 for a like-for-like SDPA / eager ratio;
# small: the 5.3 M-parameter mid-size preset, the other candidate of examples/compare_model_sizes.sh.
CONFIGS = {"paper": "swinih-base", "tiny": "swinih-tiny", "small": "swinih-small", "local": "swinih-local"}
# Nominal dense bf16 tensor-core peaks (datasheets), for MFU next to the measured matmul rate.
NOMINAL_BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


# ----- loading the model code ----------------------------------------------------------------------------------------
def load_swinih():
    """The SwinIH module: from the installed/`src` lemart_hf, else straight from its self-contained folder."""
    with contextlib.suppress(Exception):
        return importlib.import_module("lemart_hf.models.swinih.modeling_swinih")
    sys.path.insert(0, str(REPO / "src"))
    with contextlib.suppress(Exception):
        return importlib.import_module("lemart_hf.models.swinih.modeling_swinih")
    sources = {name: (SWINIH_DIR / name).read_text() for name in MODEL_FILES}
    return import_as_package("swinih_standalone", sources, "modeling_swinih")


def load_baseline(rev: str):
    """modeling_swinih.py (and its two siblings) as of git revision `rev`, imported as a separate package."""
    shared = "src/lemart_hf/models/"  # the model folder links these two
    folder = {"modeling_harmonization.py": shared, "configuration_harmonization.py": shared}
    paths = {name: folder.get(name, "src/lemart_hf/models/swinih/") + name for name in MODEL_FILES}
    return import_as_package(package_name("swinih_baseline", rev), sources_at_revision(rev, paths), "modeling_swinih")


def build_model(module, preset: str, attn: str, device, dtype=None):
    config_module = sys.modules[module.__name__.rsplit(".", 1)[0] + ".configuration_swinih"]
    config = config_module.SwinIHConfig.from_preset(preset)
    config._attn_implementation = attn
    return module.SwinIHForHarmonization(config).to(device)  # fp32 weights; bf16 runs under autocast


# ----- measuring -----------------------------------------------------------------------------------------------------
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory of a region: CUDA allocator peak, or sampled process RSS growth on CPU (approximate)."""

    def __init__(self, device):
        self.device = device
        self.peak = 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.start = self.peak_rss = _rss()
            self.running = True
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak_rss = max(self.peak_rss, _rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated() - self.start
        else:
            self.running = False
            self.thread.join()
            self.peak = max(self.peak_rss, _rss()) - self.start


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def available_memory(device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info()[0]
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


def matmul_rate(device, dtype) -> float:
    """FLOP/s of one dense square matmul in `dtype` (2048^3 on CPU, 8192^3 on GPU)."""
    n = 8192 if device.type == "cuda" else 2048
    reps = 10 if device.type == "cuda" else 1
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def count_flops(module, preset: str, size: int, batch: int, train: bool, attn: str = "sdpa") -> int:
    """Exact FLOPs of one forward (or forward+backward) of this code path, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(module, preset, attn, torch.device("cpu")).to("meta")
    model.train(train)
    pixel_values = torch.rand(batch, 4, size, size, device="meta")
    labels = torch.rand(batch, 3, size, size, device="meta")
    with FlopCounterMode(display=False) as counter:
        if train:
            model(pixel_values, labels=labels).loss.backward()
        else:
            model(pixel_values)
    return counter.get_total_flops()


def eager_attention_bytes(preset: str, size: int, batch: int, module, train: bool) -> int:
    """Memory the eager global layer needs: scores + probabilities (2 tensors of B x heads x T x T, counted at 4 bytes
    since autocast runs softmax in float32), 4 such tensors in training."""
    config = sys.modules[module.__name__.rsplit(".", 1)[0] + ".configuration_swinih"].SwinIHConfig.from_preset(preset)
    if not config.num_global_layers:
        return 0
    tokens = (size // (config.patch_size * config.stage_resolution_factors[-1])) ** 2
    return (4 if train else 2) * batch * config.num_heads[-1] * tokens * tokens * 4


def make_step(model, device, dtype, train: bool, size: int, batch: int):
    """One timed step. `dtype` bf16: under autocast (fp32 weights); "cast": bf16 weights and inputs, no autocast (the
    pipeline's `dtype=torch.bfloat16`); fp32: plain."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    pixel_values = torch.rand(batch, 4, size, size, generator=generator).to(device)
    pixel_values[:, 3] = (pixel_values[:, 3] > 0.5).float()
    labels = torch.rand(batch, 3, size, size, generator=generator).to(device)
    if dtype == "cast":
        pixel_values, labels = pixel_values.bfloat16(), labels.bfloat16()
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if dtype == torch.bfloat16 else contextlib.nullcontext()
    )
    if train:
        model.train()

        def step():
            for p in model.parameters():
                p.grad = None
            with autocast:
                loss = model(pixel_values, labels=labels).loss
            loss.backward()

    else:
        model.eval()

        def step():
            with torch.inference_mode(), autocast:
                model(pixel_values)

    return step


def timed(step, device) -> float:
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - start


# ----- one case ------------------------------------------------------------------------------------------------------
def run_case(args, module, baseline, config_name, size, batch, mode, device, dtype):
    preset = CONFIGS[config_name]
    train = mode == "train"
    rounds = args.rounds if size < 1024 else 1

    torch.manual_seed(0)
    variants = {"sdpa": build_model(module, preset, "sdpa", device, dtype)}
    state = variants["sdpa"].state_dict()
    notes = []
    if args.eager and size <= args.eager_max_size:
        need = eager_attention_bytes(preset, size, batch, module, train)
        if need > 0.7 * available_memory(device):
            notes.append(f"eager skipped: its global attention alone needs {need / 2**30:.0f} GiB")
        else:
            variants["eager"] = build_model(module, preset, "eager", device, dtype)
    if baseline is not None and size <= args.baseline_max_size:
        variants["baseline"] = build_model(baseline, preset, "sdpa", device, dtype)
    if args.compile:
        variants["compiled"] = torch.compile(build_model(module, preset, "sdpa", device, dtype))
    # bf16 runs are compared with fp32 in the same rounds, and inference also with bf16 weights (no autocast).
    step_dtype = dict.fromkeys(variants, dtype)
    if dtype == torch.bfloat16:
        variants["fp32"] = build_model(module, preset, "sdpa", device, dtype)
        step_dtype["fp32"] = torch.float32
        if not train:
            variants["cast"] = build_model(module, preset, "sdpa", device, dtype)
            step_dtype["cast"] = "cast"
    for name, model in variants.items():
        (model._orig_mod if hasattr(model, "_orig_mod") else model).load_state_dict(state)
        if step_dtype[name] == "cast":
            model.to(torch.bfloat16)

    # FLOPs each variant really executes (the shipped path skips the scores Swin's shift mask would zero out).
    # Other variants run the shipped code (compiled, in fp32, with bf16 weights): its count.
    flops_of = dict.fromkeys(variants, count_flops(module, preset, size, batch, train))
    if "eager" in variants:
        flops_of["eager"] = count_flops(module, preset, size, batch, train, attn="eager")
    if "baseline" in variants:
        try:
            flops_of["baseline"] = count_flops(baseline, preset, size, batch, train)
        except NotImplementedError:  # older code read its inputs' values, which the meta device does not have
            notes.append("baseline FLOPs taken as the shipped model's (its code cannot run on the meta device)")
    steps = {name: make_step(model, device, step_dtype[name], train, size, batch) for name, model in variants.items()}
    peaks = {}
    for name, step in list(steps.items()):  # warm-up (compilation, caches), and the memory peak of one step
        try:
            for _ in range(args.warmup + (2 if name == "compiled" else 0)):
                step()
            sync(device)
            with PeakMemory(device) as memory:
                step()
                sync(device)
            peaks[name] = memory.peak
        except torch.OutOfMemoryError:
            if name == "sdpa":
                raise
            notes.append(f"{name} skipped: out of memory")
            del steps[name], variants[name]
            if device.type == "cuda":
                torch.cuda.empty_cache()

    times = {name: [] for name in steps}
    # The matmul reference of each row is in its own arithmetic: fp32 for the fp32 row, bf16 for the others.
    matmul_dtype = {name: torch.float32 if step_dtype[name] == torch.float32 else torch.bfloat16 for name in steps}
    rates = {d: [matmul_rate(device, d)] for d in set(matmul_dtype.values())}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(timed(step, device))
        for d in rates:
            rates[d].append(matmul_rate(device, d))
    # Load from other processes only ever slows a run down: the best of the rounds is the estimate of the code's own
    # speed (as `timeit` does), for the matmul reference as for the model. Medians are kept for the record.
    rows = []
    for name, samples in times.items():
        seconds, flops = min(samples), flops_of[name]
        rate = max(rates[matmul_dtype[name]])
        rows.append(
            {
                "config": config_name,
                "size": size,
                "batch": batch,
                "mode": "fwd+bwd" if train else "fwd",
                "variant": name,
                "ms": seconds * 1e3,
                "ms_median": statistics.median(samples) * 1e3,
                "img_s": batch / seconds,
                "gflop_img": flops / batch / 1e9,
                "gflop_s": flops / seconds / 1e9,
                "pct_matmul": 100 * flops / seconds / rate,
                "matmul_gflop_s": rate / 1e9,
                "matmul_gflop_s_median": statistics.median(rates[matmul_dtype[name]]) / 1e9,
                "peak_mb": peaks[name] / 2**20,
                "rounds": len(samples),
            }
        )
    best = min(times["sdpa"])
    for row in rows:  # the ratios the issue asks for: how many times faster the shipped sdpa path is
        if row["variant"] != "sdpa":
            row["sdpa_speedup"] = row["ms"] / 1e3 / best
    return rows, notes


def print_table(rows, device, nominal_peak):
    header = (
        f"{'config':6} {'size':>5} {'bs':>3} {'mode':7} {'variant':9} {'ms/iter':>10} {'img/s':>8} {'GFLOP/img':>10} "
        f"{'GFLOP/s':>9} {'%matmul':>8} {'matmul':>9} {'peakMB':>8} {'sdpa x':>7} {'median ms':>10}"
    )
    if nominal_peak:
        header += f" {'MFU':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        line = (
            f"{r['config']:6} {r['size']:5d} {r['batch']:3d} {r['mode']:7} {r['variant']:9} {r['ms']:10.1f} "
            f"{r['img_s']:8.2f} {r['gflop_img']:10.1f} {r['gflop_s']:9.1f} {r['pct_matmul']:7.1f}% "
            f"{r['matmul_gflop_s']:9.1f} {r['peak_mb']:8.0f} "
            + (f"{r['sdpa_speedup']:6.2f}x" if "sdpa_speedup" in r else f"{'':7}")
            + f" {r['ms_median']:10.1f}"
        )
        if nominal_peak:
            line += f" {100 * r['gflop_s'] * 1e9 / nominal_peak:5.1f}%"
        print(line, flush=True)
    print(
        "Best of the rounds (load only slows runs down); img/s: images per second; %matmul: achieved FLOP/s / the best"
        " dense matmul rate measured between the rounds; 'sdpa x': how many times faster the shipped sdpa variant is"
        f" than this row's variant; median ms: the median round ({device.type})."
    )


def load_composer():
    """(LEMaRTComposer class, where it came from): lemart_hf.lemart, else its folder loaded on its own, else None."""
    with contextlib.suppress(Exception):
        from lemart_hf.lemart import LEMaRTComposer

        return LEMaRTComposer, "lemart_hf.lemart.LEMaRTComposer"
    folder = REPO / "src" / "lemart_hf" / "lemart"
    names = ("composer.py", "masks.py", "perturbations.py", "seeding.py")
    if all((folder / name).is_file() for name in names):
        with contextlib.suppress(Exception):
            module = import_as_package("lemart_standalone", {n: (folder / n).read_text() for n in names}, "composer")
            return module.LEMaRTComposer, f"LEMaRTComposer loaded from {folder}"
    return None, "none"


class SimpleComposer:
    """FALLBACK ONLY (used when lemart_hf.lemart.LEMaRTComposer cannot be imported): random 8x8-patch masks at ratio
    0.5 and a per-image brightness / contrast / saturation change of the foreground. Same call and outputs."""

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        batch, _, height, width = images.shape
        scores = torch.rand(batch, 64, device=images.device, generator=generator)
        patches = (scores.argsort(dim=1) < 32).to(images.dtype).view(batch, 1, 8, 8)
        mask = F.interpolate(patches, size=(height, width), mode="nearest")
        factors = 0.6 + 0.8 * torch.rand(batch, 3, 1, 1, device=images.device, generator=generator)
        grey = images.mean(dim=1, keepdim=True)
        perturbed = images * factors[:, :1]
        perturbed = (perturbed - perturbed.mean(dim=(2, 3), keepdim=True)) * factors[:, 1:2] + perturbed.mean(
            dim=(2, 3), keepdim=True
        )
        perturbed = (grey + (perturbed - grey) * factors[:, 2:3]).clamp(0, 1)
        composite = torch.where(mask.bool(), perturbed, images)
        return {"pixel_values": torch.cat([composite, mask], dim=1), "labels": images, "mask": mask}


def synthetic_photos(count: int, size: int, device, generator) -> torch.Tensor:
    """Smooth random images in [0, 1] (bilinearly upsampled coarse noise + fine texture): photo-like statistics,
    made on the device (no dataset is needed on a bare GPU box)."""
    coarse = torch.rand(count, 3, size // 32, size // 32, device=device, generator=generator)
    images = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    images = images + 0.05 * torch.randn(count, 3, size, size, device=device, generator=generator)
    return images.clamp(0, 1)


def lemart_training_loop(args, module, device, dtype) -> None:
    """A short real LEMaRT pre-training loop on `device`: composites made on the device every step, AdamW (paper
    hyper-parameters), bf16 autocast on GPU, optional torch.compile. Prints img/s, MFU and the compositing share."""
    composer_class, source = load_composer()
    composer = composer_class(mask_strategy="random", mask_ratio=0.5) if composer_class else SimpleComposer()
    print(f"# LEMaRT loop: composer = {source if composer_class else 'SimpleComposer FALLBACK (not LEMaRTComposer)'}")
    preset = CONFIGS[args.loop_config]
    size, batch, steps = args.loop_size, args.loop_batch, args.loop_steps
    model = build_model(module, preset, "sdpa", device)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.05, fused=device.type == "cuda"
    )
    forward = torch.compile(model) if args.compile else model
    flops = count_flops(module, preset, size, batch, train=True)
    generator = torch.Generator(device=device).manual_seed(0)
    pool = synthetic_photos(4 * batch, size, device, generator)
    bf16 = dtype == torch.bfloat16
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def composite():
        images = pool[torch.randint(0, pool.shape[0], (batch,), device=device, generator=generator)]
        return composer(images, generator=generator)

    def train_step(sample):
        with autocast:
            loss = forward(sample["pixel_values"], labels=sample["labels"]).loss
        loss_value = float(loss.detach())  # run_pretrain.py reads every loss before backward (non-finite guard)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss_value

    def seconds_per_step(make_sample) -> float:
        """Steps back to back, as a training script runs them: the composer's launches may overlap GPU work."""
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            train_step(make_sample())
        sync(device)
        return (time.perf_counter() - start) / steps

    warmup = 3 if args.compile else 2
    for _ in range(warmup):
        train_step(composite())
    sync(device)
    compose_times, step_times, losses = [], [], []
    for _ in range(steps):
        start = time.perf_counter()
        sample = composite()
        sync(device)
        middle = time.perf_counter()
        losses.append(train_step(sample))
        sync(device)
        compose_times.append(middle - start)
        step_times.append(time.perf_counter() - middle)
    compose, step = statistics.median(compose_times), statistics.median(step_times)
    fixed_sample = composite()
    with_compositing = seconds_per_step(composite)
    without_compositing = seconds_per_step(lambda: fixed_sample)
    rate = max(matmul_rate(device, dtype) for _ in range(3))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = next((p for key, p in NOMINAL_BF16_PEAK.items() if key in name), None) if dtype == torch.bfloat16 else None
    print(
        f"# LEMaRT loop {args.loop_config} {size}x{size} batch {batch} {dtype} compile={args.compile}: "
        f"{steps} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}"
    )
    print(
        f"LEMaRT loop: train step {step * 1e3:.1f} ms ({batch / step:.1f} img/s; with compositing "
        f"{batch / (step + compose):.1f} img/s), {flops / step / 1e12:.1f} TFLOP/s = "
        f"{100 * flops / step / rate:.1f}% of measured matmul ({rate / 1e12:.1f} TFLOP/s)"
        + (f", MFU {100 * flops / step / peak:.1f}% of nominal {peak / 1e12:.0f}" if peak else "")
    )
    print(
        f"LEMaRT loop: compositing {compose * 1e3:.2f} ms per batch = {100 * compose / step:.2f}% of a training step"
        f" ({100 * compose / (compose + step):.2f}% of compositing + step), timed alone"
    )
    print(
        f"LEMaRT loop, steps back to back: {with_compositing * 1e3:.1f} ms per step compositing each batch vs "
        f"{without_compositing * 1e3:.1f} ms on one fixed batch: compositing costs "
        f"{100 * (with_compositing / without_compositing - 1):.2f}% of a training step (target < 5%)"
    )


def attention_rates(module, configs: list[str], sizes: list[int], batches: dict, device, rounds: int) -> None:
    """SDPA alone at each config's attention shapes (its first stage's windows with their bias, and the global layer),
    fp32 and bf16: GFLOP/s and the share of the same dtype's matmul rate. Small head dimensions (paper 32, tiny 16)
    make these matmuls thin, which is what holds a bf16 step below the matmul rate. Batch: the table's default."""
    config_module = sys.modules[module.__name__.rsplit(".", 1)[0] + ".configuration_swinih"]
    print(f"{'config':6} {'size':>5} {'layer':7} {'shape (B, heads, L, d)':>24} {'dtype':6} {'ms':>8} {'GFLOP/s':>8} {'%matmul':>8}")
    for config_name in configs:
        config = config_module.SwinIHConfig.from_preset(CONFIGS[config_name])
        for size in sizes:
            grid = size // config.patch_size
            window = min(config.window_size, grid)
            images = batches.get((config_name, size), 1)
            windows = images * (grid // window) ** 2
            shapes = {"windows": (windows, config.num_heads[0], window * window, config.hidden_sizes[0])}
            if config.num_global_layers:
                shapes["global"] = (images, config.num_heads[-1], grid * grid, config.hidden_sizes[-1])
            for layer, (batch, heads, length, width) in shapes.items():
                head_dim = width // heads
                for dtype in (torch.float32, torch.bfloat16):
                    q, k, v = (torch.randn(batch, heads, length, head_dim, device=device, dtype=dtype) for _ in "qkv")
                    bias = torch.randn(1, heads, length, length, device=device, dtype=dtype) if layer == "windows" else None
                    attend = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # noqa: E731
                    attend()
                    seconds = min(timed(attend, device) for _ in range(rounds))
                    rate = max(matmul_rate(device, dtype) for _ in range(2))
                    flops = 4 * batch * heads * length * length * head_dim
                    print(
                        f"{config_name:6} {size:5d} {layer:7} {str((batch, heads, length, head_dim)):>24} "
                        f"{str(dtype).removeprefix('torch.'):6} {seconds * 1e3:8.1f} {flops / seconds / 1e9:8.1f} "
                        f"{100 * flops / seconds / rate:7.1f}%",
                        flush=True,
                    )


def explain_graph_breaks(module, device, dtype) -> None:
    """torch._dynamo.explain on a small SwinIH (shifted windows on both axes + global layer), inference and training."""
    import torch._dynamo

    config_module = sys.modules[module.__name__.rsplit(".", 1)[0] + ".configuration_swinih"]
    config = config_module.SwinIHConfig(embed_dim=32, depths=[2, 2, 2], num_heads=[2, 2, 4], window_size=4)
    model = module.SwinIHForHarmonization(config).to(device)
    pixel_values = torch.rand(2, 4, 40, 56, device=device)
    labels = torch.rand(2, 3, 40, 56, device=device)
    for train in (False, True):
        torch._dynamo.reset()
        model.train(train)
        explanation = torch._dynamo.explain(model)(pixel_values, labels=labels if train else None)
        print(
            f"torch._dynamo.explain ({'train' if train else 'eval'}): graphs={explanation.graph_count} "
            f"graph_breaks={explanation.graph_break_count}"
        )
        for reason in explanation.break_reasons:
            print("   break:", reason.reason)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, choices=["fp32", "bf16"], help="default: fp32 on CPU, bf16 on GPU")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(model)")
    parser.add_argument("--configs", default="paper,tiny")
    parser.add_argument("--sizes", default="256,512,1024", help="1024 runs inference only")
    parser.add_argument("--modes", default="fwd,train")
    parser.add_argument("--batch", default=None, help="e.g. 'paper:256=1,tiny:128=16'; default: see below")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-eager", dest="eager", action="store_false", help="skip the eager reference")
    parser.add_argument("--eager-max-size", type=int, default=512)
    parser.add_argument("--baseline", default=None, help="git revision of the model code to compare against")
    parser.add_argument("--baseline-max-size", type=int, default=512)
    parser.add_argument("--train-max-size", type=int, default=512)
    parser.add_argument("--explain", action="store_true", help="count torch.compile graph breaks first")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument("--loop-steps", type=int, default=0, help="run a LEMaRT training loop of this many steps")
    parser.add_argument("--loop-config", default="paper", choices=sorted(CONFIGS))
    parser.add_argument("--loop-size", type=int, default=256)
    parser.add_argument("--loop-batch", type=int, default=32)
    parser.add_argument("--attention", action="store_true", help="first time SDPA alone at the configs' shapes")
    parser.add_argument("--skip-table", action="store_true", help="only --explain / --loop-steps / --attention")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    module = load_swinih()
    baseline = load_baseline(args.baseline) if args.baseline else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    nominal_peak = next((peak for key, peak in NOMINAL_BF16_PEAK.items() if key in name), None)
    nominal_peak = nominal_peak if dtype == torch.bfloat16 and device.type == "cuda" else None
    print(
        f"# torch {torch.__version__}, device {name}, dtype {dtype}, threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
        f"model code {Path(module.__file__).resolve()}"
        + (f", baseline {args.baseline}" if baseline else "")
        + (f", nominal bf16 peak {nominal_peak / 1e12:.0f} TFLOP/s" if nominal_peak else ""),
        flush=True,
    )
    if args.explain:
        explain_graph_breaks(module, device, torch.float32)
    if args.loop_steps:
        lemart_training_loop(args, module, device, dtype)

    default_batch = {
        ("paper", 64): 8 if device.type == "cpu" else 128,
        ("paper", 128): 2 if device.type == "cpu" else 64,
        ("tiny", 64): 16 if device.type == "cpu" else 256,
        ("paper", 256): 1 if device.type == "cpu" else 32,
        ("paper", 512): 1 if device.type == "cpu" else 8,
        ("paper", 1024): 1,
        ("tiny", 128): 16 if device.type == "cpu" else 128,
        ("tiny", 256): 8 if device.type == "cpu" else 64,
        ("tiny", 512): 2 if device.type == "cpu" else 16,
        ("tiny", 1024): 1,
        ("small", 64): 16 if device.type == "cpu" else 256,
        ("small", 128): 16 if device.type == "cpu" else 128,
        ("local", 256): 1 if device.type == "cpu" else 32,
        ("local", 512): 1 if device.type == "cpu" else 8,
    }
    if args.batch:
        for item in args.batch.split(","):
            key, value = item.split("=")
            config_name, size = key.split(":")
            default_batch[(config_name, int(size))] = int(value)
    configs, sizes = args.configs.split(","), [int(s) for s in args.sizes.split(",")]
    if args.attention:
        attention_rates(module, configs, sizes, default_batch, device, args.rounds)
    if args.skip_table:
        return []
    rows, notes = [], []
    for config_name in configs:
        for size in sizes:
            for mode in args.modes.split(","):
                if mode == "train" and size > args.train_max_size:
                    continue
                batch = default_batch.get((config_name, size), 1)
                started = time.perf_counter()
                try:
                    case_rows, case_notes = run_case(
                        args, module, baseline, config_name, size, batch, mode, device, dtype
                    )
                except torch.OutOfMemoryError as error:  # noqa: PERF203
                    case_rows, case_notes = [], [f"out of memory: {str(error).splitlines()[0]}"]
                rows += case_rows
                notes += [f"{config_name} {size} {mode}: {note}" for note in case_notes]
                print(
                    f"# {config_name} {size} bs{batch} {mode}: "
                    + ", ".join(
                        f"{r['variant']} {r['img_s']:.3g} img/s ({r['pct_matmul']:.0f}% matmul)" for r in case_rows
                    )
                    + f" [{time.perf_counter() - started:.0f}s]"
                    + "".join(f"; {note}" for note in case_notes),
                    flush=True,
                )
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    print()
    print_table(rows, device, nominal_peak)
    for note in notes:
        print("note:", note)
    if args.json:
        summary = {"device": name, "dtype": str(dtype), "rows": rows, "notes": notes}
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return rows


if __name__ == "__main__":
    main()
