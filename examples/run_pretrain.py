#!/usr/bin/env python
"""LEMaRT pre-training of SwinIH (or any lemart_hf architecture, ``--model_type``) on unlabeled photos (Accelerate).

Every step takes a batch of photo crops, makes LEMaRT composites from them online (a random foreground mask, the
photo's visual attributes perturbed inside it; new composites every epoch) and trains the model to give the
photo back (MSE). The result is a `save_pretrained` folder to fine-tune with `run_finetune.py`.

    # the embedded default photos (scikit-image's, offline), a CPU, a few minutes
    accelerate launch examples/run_pretrain.py --model_config swinih-tiny --resolution 64 --max_train_steps 100

    # any image folder; a GPU, bf16, composites made on the GPU
    accelerate launch --mixed_precision bf16 examples/run_pretrain.py --train_dir /data/photos \\
        --model_config swinih-base --train_batch_size 64 --dataloader_num_workers 8 --num_train_epochs 30

    # a Hub dataset with an image column, streamed; or a folder of shards (examples/pack_shards.py packs photos)
    accelerate launch examples/run_pretrain.py --dataset_name user/photos --streaming --max_train_steps 20000

    # continue an interrupted run exactly where it stopped
    accelerate launch examples/run_pretrain.py ... --resume_from_checkpoint latest

    # data parallel: one process per GPU
    accelerate launch --multi_gpu --num_processes 2 examples/run_pretrain.py ...
    # ... or gloo processes on a machine without GPUs (accelerate 1.x runs `--cpu --num_processes 2` as ONE process,
    # and `--multi_gpu` alone as unconnected ones: the script stops with an error then)
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/run_pretrain.py ...

    # sharded: FSDP (activation checkpointing) or DeepSpeed ZeRO-2 / 3; several nodes (README "Train at scale")
    accelerate launch --config_file examples/accelerate_configs/fsdp.yaml examples/run_pretrain.py ...

On a busy CPU, one intra-op thread per process (OMP_NUM_THREADS=1) can be twice as fast as accelerate's default.

Outputs in --output_dir: the model as a complete hub repository (`lemart_hf.hub.save_hub_folder`: config.json,
model.safetensors, preprocessor_config.json, the model and pipeline code, a README.md model card), train_results.json,
sample grids (samples/, columns composite | mask | prediction | original), tracker logs (logs/) and checkpoint-{step}
folders. ``--push_to_hub`` uploads the first group (``--hub_strategy``: also during training).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import time

# OpenMP threads that spin while they wait make every parallel op crawl when other work shares the CPU (here: the
# LEMaRT composer at 28-50 composites/s beside a training run, 490-520/s waiting passively; benchmarks/README.md).
# It must be set before torch loads OpenMP; a value from the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from lemart_hf.data import DataFileError
from lemart_hf.data.photos import EpochShuffleSampler, PhotoDataset, collate_photos, list_images, open_image
from lemart_hf.data.samples import sample_photo_paths
from lemart_hf.data.streaming import StreamingPhotos, StreamLoader, photo_identity, undecoded_images
from lemart_hf.hub import CARD_METRICS, CardMetric, base_model_name, model_card
from lemart_hf.lemart import MASK_STRATEGIES, PERTURBATIONS, LEMaRTComposer, generator_for_step
from lemart_hf.metrics import harmonization_metrics
from lemart_hf.training import (
    CheckpointWriteError,
    NonFiniteLossError,
    StopRequest,
    Throughput,
    TrainingClock,
    TrainingState,
    add_checkpointing_arguments,
    add_hub_arguments,
    add_logging_arguments,
    add_model_arguments,
    add_training_arguments,
    backward_and_step,
    build_optimizer,
    build_scheduler,
    card_license,
    check_training_arguments,
    command_line,
    composite_generator,
    dataloader_kwargs,
    default_hub_model_id,
    effective_learning_rate,
    engine_name,
    exit_on_non_finite_loss,
    load_model,
    load_training_state,
    log_sample_grid,
    make_accelerator,
    make_sample_grid,
    open_checkpoints,
    open_hub_repo,
    resume_point,
    run_summary,
    save_final_model,
    save_sample_grid,
    seed_for_step,
    upload_at_save,
    warmup_steps,
    warn_on_run_mismatch,
)

logger = get_logger(__name__)

#: The composer's generator number for the fixed validation composites (training steps never get near it).
VALIDATION_STREAM = 2**62


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    data = parser.add_argument_group("data (default: the photos embedded in the [dev] install)")
    data.add_argument(
        "--train_dir", nargs="+", default=None, help="One or more folders of photos (each searched recursively)."
    )
    data.add_argument(
        "--dataset_name",
        default=None,
        help="A Hub dataset id or a local dataset folder with images (with --streaming: Parquet or WebDataset shards).",
    )
    data.add_argument("--dataset_config_name", default=None, help="Its configuration, if it has several.")
    data.add_argument("--dataset_split", default="train", help="Its split to train on.")
    data.add_argument("--image_column", default=None, help="Its image column (default: the first Image column).")
    data.add_argument(
        "--streaming",
        action="store_true",
        help="Stream --dataset_name instead of downloading it: its shards are split among the processes and their "
        "DataLoader workers (a worker reads whole shards), and checkpoints hold the stream position.",
    )
    data.add_argument(
        "--shuffle_buffer_size",
        type=int,
        default=1000,
        help="With --streaming: each worker reads this many photos (undecoded, in memory) at a time and yields them "
        "in a random order.",
    )
    data.add_argument("--max_train_samples", type=int, default=None, help="Use at most this many training photos.")
    data.add_argument(
        "--num_validation_images",
        type=int,
        default=16,
        help="Photos held out for validation (at most a fifth of the data; 0: no validation).",
    )
    data.add_argument(
        "--num_validation_composites",
        type=int,
        default=16,
        help="Fixed validation composites made (with a fixed seed) from the held-out photos.",
    )
    data.add_argument(
        "--crop_scale",
        type=float,
        nargs=2,
        default=(0.5, 1.0),
        metavar=("MIN", "MAX"),
        help="Random square crops cover this fraction of each photo's largest square, then are resized.",
    )
    data.add_argument("--no_hflip", action="store_true", help="Do not mirror half of the crops.")
    data.add_argument(
        "--dataset_repeats",
        type=int,
        default=None,
        help="Visit each photo this many times per epoch, a new crop each time (default: enough for 20 optimizer "
        "steps per epoch, which only matters for small folders such as the embedded photos).",
    )

    lemart = parser.add_argument_group("LEMaRT composites")
    lemart.add_argument(
        "--mask_strategy", choices=MASK_STRATEGIES, default="random", help="Foreground masks (paper: random)."
    )
    lemart.add_argument(
        "--mask_ratio", type=float, default=0.5, help="Foreground fraction of each mask, in (0, 1] (paper: 0.5)."
    )
    lemart.add_argument("--mask_grid_size", type=int, default=8, help="Patches per side for random and grid masks.")
    lemart.add_argument(
        "--perturbations",
        nargs="+",
        choices=sorted(PERTURBATIONS),
        default=None,
        help="Visual-attribute perturbations to draw from (default: all).",
    )
    lemart.add_argument(
        "--composite_device",
        choices=["auto", "cpu", "accelerator"],
        default="auto",
        help="Where composites are made, batched: auto = the accelerator when it is a GPU, else the CPU.",
    )

    add_model_arguments(parser, default_loss="mse")
    add_training_arguments(parser, learning_rate=1e-3, num_train_epochs=30, train_batch_size=16)
    add_checkpointing_arguments(parser, default_output_dir="outputs/pretrain")
    add_logging_arguments(parser)
    add_hub_arguments(parser)
    args = parser.parse_args(argv)

    if args.train_dir is not None and args.dataset_name is not None:
        parser.error("give --train_dir or --dataset_name, not both")
    for folder in args.train_dir or []:
        if not os.path.isdir(folder):
            parser.error(f"--train_dir {folder!r} is not a directory")
    if args.streaming and args.dataset_name is None:
        parser.error(
            "--streaming needs --dataset_name (a Hub id or a folder of shards; examples/pack_shards.py packs a "
            "photo folder into shards)"
        )
    if args.shuffle_buffer_size < 1:
        parser.error(f"--shuffle_buffer_size must be >= 1, got {args.shuffle_buffer_size}")
    if args.streaming and args.max_train_steps is None:
        parser.error("--streaming needs --max_train_steps (a stream has no length to count epochs in)")
    if not 0.0 < args.mask_ratio <= 1.0:
        parser.error(f"--mask_ratio must be in (0, 1] (0: every composite is its photo), got {args.mask_ratio}")
    if not 1 <= args.mask_grid_size <= args.resolution:
        parser.error(f"--mask_grid_size must be in [1, --resolution {args.resolution}], got {args.mask_grid_size}")
    if not 0.0 < args.crop_scale[0] <= args.crop_scale[1] <= 1.0:
        parser.error(f"--crop_scale must satisfy 0 < MIN <= MAX <= 1, got {args.crop_scale}")
    if args.num_validation_images < 0 or args.num_validation_composites < 0:
        parser.error("--num_validation_images and --num_validation_composites must be >= 0")
    if args.dataset_repeats is not None and args.dataset_repeats < 1:
        parser.error(f"--dataset_repeats must be >= 1, got {args.dataset_repeats}")
    if args.max_train_samples is not None and args.max_train_samples < 1:
        parser.error(f"--max_train_samples must be >= 1, got {args.max_train_samples}")
    try:
        make_composer(args)
    except ValueError as error:
        parser.error(f"LEMaRT composites: {error}")
    check_training_arguments(parser, args)
    return args


def make_composer(args: argparse.Namespace) -> LEMaRTComposer:
    return LEMaRTComposer(
        mask_strategy=args.mask_strategy,
        mask_ratio=args.mask_ratio,
        grid_size=args.mask_grid_size,
        **({"perturbations": args.perturbations} if args.perturbations else {}),
    )


# ------------------------------------------------------------------------------------------------------
# Data


def held_out_count(num_photos: int, wanted: int) -> int:
    """Validation photos: ``wanted``, but at most a fifth of the photos and at least one when there are two."""
    if wanted == 0 or num_photos < 2:
        return 0
    return min(wanted, max(1, num_photos // 5))


def image_column_of(features, wanted: str | None) -> str:
    import datasets

    if wanted is not None:
        if features is not None and wanted not in features:
            raise ValueError(f"--image_column {wanted!r} not in the dataset's columns {list(features)}")
        return wanted
    if features is not None:
        for name, feature in features.items():
            if isinstance(feature, datasets.Image):
                return name
    return "image"


def build_datasets(args: argparse.Namespace, process_index: int = 0, num_processes: int = 1):
    """(training dataset, validation photos or None, a description of the source).

    A stream is split among ``num_processes`` (this is ``process_index``) and their ``--dataloader_num_workers``.
    """
    kwargs = {"train": True, "crop_scale": tuple(args.crop_scale), "hflip": not args.no_hflip, "seed": args.seed}
    if args.dataset_name is None:
        if args.train_dir is not None:
            photos = sorted({path for folder in args.train_dir for path in list_images(folder)})
            order = torch.randperm(len(photos), generator=torch.Generator().manual_seed(args.seed)).tolist()
            held = held_out_count(len(photos), args.num_validation_images)
            validation = sorted(photos[i] for i in order[:held])
            train = sorted(photos[i] for i in order[held:])
            source = "image folder(s) " + ", ".join(os.path.abspath(folder) for folder in args.train_dir)
        else:
            train, validation = sample_photo_paths("train"), sample_photo_paths("validation")
            validation = validation if args.num_validation_images else []
            source = "the photos embedded in scikit-image (lemart_hf.data.samples)"
        if args.max_train_samples is not None:
            train = train[: args.max_train_samples]
        train_dataset = PhotoDataset(train, args.resolution, **kwargs)
        validation_photos = PhotoDataset(validation, args.resolution, train=False) if validation else None
        return train_dataset, validation_photos, source

    import datasets

    source = f"dataset {args.dataset_name}" + (f" ({args.dataset_config_name})" if args.dataset_config_name else "")
    dataset = datasets.load_dataset(
        args.dataset_name, args.dataset_config_name, split=args.dataset_split, streaming=args.streaming
    )
    column = image_column_of(dataset.features, args.image_column)
    if args.streaming:
        # Validation: the first photos of the stream, which training skips (recognised by their bytes).
        dataset = undecoded_images(dataset, column)
        held_out = [row[column] for row in dataset.take(args.num_validation_images)]
        if args.max_train_samples is not None:
            dataset = dataset.take(args.max_train_samples)
        train_dataset = StreamingPhotos(
            dataset,
            args.resolution,
            seed=args.seed,
            crop_scale=tuple(args.crop_scale),
            hflip=not args.no_hflip,
            image_column=column,
            shuffle_buffer_size=args.shuffle_buffer_size,
            exclude={photo_identity(image) for image in held_out},
            process_index=process_index,
            num_processes=num_processes,
            num_workers=args.dataloader_num_workers,
        )
        validation_photos = PhotoDataset([open_image(image) for image in held_out], args.resolution, train=False)
        return train_dataset, (validation_photos if held_out else None), source
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(args.seed)).tolist()
    held = held_out_count(len(dataset), args.num_validation_images)
    train_indices = sorted(order[held:])
    if args.max_train_samples is not None:
        train_indices = train_indices[: args.max_train_samples]
    train_dataset = PhotoDataset(dataset.select(train_indices), args.resolution, image_column=column, **kwargs)
    validation_photos = None
    if held:
        validation_photos = PhotoDataset(
            dataset.select(sorted(order[:held])), args.resolution, train=False, image_column=column
        )
    return train_dataset, validation_photos, source


def make_validation_set(validation_photos, composer: LEMaRTComposer, args: argparse.Namespace) -> dict | None:
    """Fixed LEMaRT composites of the held-out photos (centre crops, cycled), made once with a fixed generator."""
    if validation_photos is None or args.num_validation_composites == 0:
        return None
    crops = [
        validation_photos[i % len(validation_photos)]["pixel_values"] for i in range(args.num_validation_composites)
    ]
    images = torch.stack(crops).float().div_(255)
    return composer(images, generator=generator_for_step(args.seed, VALIDATION_STREAM))


@torch.no_grad()
def validate(model, validation: dict, accelerator, batch_size: int) -> tuple[dict, torch.Tensor]:
    """MSE / PSNR / fMSE / fPSNR (0..255 scale, mean over composites) of the model on the validation composites.

    ``model`` is the prepared model (DDP, FSDP, a DeepSpeed engine), whose forward pass gathers the parameters that
    FSDP and ZeRO-3 shard across the processes: call on every process; each runs every composite and gets the same
    result. Returns the metrics and the predictions (N, 3, R, R) on the CPU.
    """
    model.eval()
    predictions = []
    for start in range(0, validation["pixel_values"].shape[0], batch_size):
        pixel_values = validation["pixel_values"][start : start + batch_size].to(accelerator.device)
        with accelerator.autocast():
            predictions.append(model(pixel_values=pixel_values).harmonized.float().cpu())
    model.train()
    predictions = torch.cat(predictions)
    return mean_metrics(predictions, validation), predictions


def mean_metrics(predictions: torch.Tensor, validation: dict) -> dict[str, float]:
    scores = harmonization_metrics(predictions, validation["labels"], validation["mask"])
    return {name: float(values.nanmean()) for name, values in scores.items()}


# ------------------------------------------------------------------------------------------------------
# Training


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=logging.INFO
    )
    for noisy in ("accelerate.checkpointing", "accelerate.accelerator"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logger.info(accelerator.state, main_process_only=False)
    if args.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    set_seed(args.seed)

    checkpoints = open_checkpoints(accelerator, args.output_dir, args.checkpoints_total_limit)
    hub_repo = open_hub_repo(args, accelerator)  # before any data is read: a bad token fails in seconds

    # Data: crops decoded on the workers; composites made batched in the loop.
    try:
        train_dataset, validation_photos, data_source = build_datasets(
            args, accelerator.process_index, accelerator.num_processes
        )
    except (FileNotFoundError, ValueError, ModuleNotFoundError) as error:
        raise SystemExit(f"run_pretrain.py: error: {error}") from error
    composer = make_composer(args)
    num_processes = accelerator.num_processes
    batch_per_step = args.train_batch_size * num_processes * args.gradient_accumulation_steps
    streaming = isinstance(train_dataset, StreamingPhotos)
    loader_kwargs = dataloader_kwargs(args, pin_memory=accelerator.device.type == "cuda", persistent=not streaming)
    if streaming:
        # Split among the processes by the stream itself; Accelerate's sharding of iterable datasets would make
        # every process read everything. The loader records its position for the checkpoints.
        train_dataloader = StreamLoader(train_dataset, args.train_batch_size, **loader_kwargs)
    else:
        # Small folders: repeat the photos (each time with a new crop) so that an epoch spans at least 20 optimizer
        # steps; the workers then prefetch across steps instead of restarting at every tiny epoch.
        repeats = args.dataset_repeats or max(1, math.ceil(20 * batch_per_step / len(train_dataset)))
        sampler = EpochShuffleSampler(len(train_dataset), seed=args.seed, repeats=repeats)
        train_dataloader = torch.utils.data.DataLoader(
            train_dataset,
            batch_size=args.train_batch_size,
            sampler=sampler,
            collate_fn=collate_photos,
            drop_last=True,
            generator=torch.Generator().manual_seed(args.seed),  # keeps worker seeding off the global RNG
            **loader_kwargs,
        )
    if streaming:
        batches_per_epoch = None
        max_train_steps = args.max_train_steps
    else:
        train_dataloader = accelerator.prepare_data_loader(train_dataloader, device_placement=False)
        batches_per_epoch = len(train_dataloader)
        if batches_per_epoch == 0:
            raise SystemExit(
                f"run_pretrain.py: error: {len(train_dataset)} training photos make no full batch of "
                f"{args.train_batch_size} per process; lower --train_batch_size or set --dataset_repeats"
            )
        updates_per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
        max_train_steps = args.max_train_steps or args.num_train_epochs * updates_per_epoch

    # Model and optimisation.
    model, image_processor = load_model(args)
    num_parameters = sum(p.numel() for p in model.parameters())  # before FSDP / ZeRO-3 shard them
    learning_rate = effective_learning_rate(args, num_processes)
    optimizer = build_optimizer(model, args, learning_rate)
    lr_scheduler = build_scheduler(optimizer, args, max_train_steps, num_processes)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    if args.composite_device == "accelerator" or (args.composite_device == "auto" and accelerator.device.type != "cpu"):
        composite_device = accelerator.device
    else:
        composite_device = torch.device("cpu")
    validation = make_validation_set(validation_photos, composer, args)  # every process validates

    run_settings = {
        "train_batch_size": args.train_batch_size,
        "gradient_accumulation_steps": accelerator.gradient_accumulation_steps,  # = the argument (make_accelerator)
        "num_processes": num_processes,
        "engine": engine_name(accelerator),
        "seed": args.seed,
        "resolution": args.resolution,
        "max_train_steps": max_train_steps,
        "mask_strategy": args.mask_strategy,
        "mask_ratio": args.mask_ratio,
        "composite_device": composite_device.type,
        "data": data_source,
    }
    state = TrainingState(run=run_settings)
    resume_from = resume_point(accelerator, checkpoints, args.resume_from_checkpoint)
    if args.resume_from_checkpoint == "latest" and resume_from is None:
        logger.info(f"no checkpoint in {args.output_dir}: starting a new run")
    if resume_from is not None:
        logger.info(f"resuming from {resume_from}")
        accelerator.load_state(str(resume_from))
        state = load_training_state(resume_from, accelerator.process_index)
        warn_on_run_mismatch(state.run, run_settings)
        state.run = run_settings
        if streaming:
            if state.data_position is None:
                raise SystemExit(
                    f"run_pretrain.py: error: {resume_from} holds no stream position (it is not a --streaming run's)"
                )
            try:
                train_dataloader.load_state_dict(state.data_position)
            except ValueError as error:
                raise SystemExit(f"run_pretrain.py: error: {resume_from}: {error}") from None
        if batches_per_epoch is not None and state.batches_in_epoch >= batches_per_epoch:
            state.epoch, state.batches_in_epoch = state.epoch + 1, 0
    if streaming:
        state.data_position = train_dataloader.state_dict()  # saved with every checkpoint, updated every step

    if accelerator.is_main_process:
        tracker_config = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in vars(args).items()}
        accelerator.init_trackers(args.tracker_project_name or "lemart_pretrain", config=tracker_config)
    logger.info(f"data: {data_source}: {len(train_dataset) if not streaming else 'streamed'} training photos")
    logger.info(
        f"{max_train_steps} optimizer steps of {batch_per_step} images ({args.train_batch_size} per process x "
        f"{num_processes} processes x {args.gradient_accumulation_steps} accumulation) at {args.resolution}px; "
        f"peak lr {learning_rate:g}, {warmup_steps(args, max_train_steps)} warm-up steps; composites on {composite_device}"
    )

    logger.info(f"model: {num_parameters / 1e6:.2f} M parameters")
    last_validation: dict = {}
    composite_metrics = mean_metrics(validation["pixel_values"][:, :3], validation) if validation is not None else {}

    def run_validation(step: int) -> None:
        """Validate (every process), log, and save the sample grid (main process)."""
        if validation is None:
            return
        metrics, predictions = validate(model, validation, accelerator, args.train_batch_size)
        last_validation.clear()
        last_validation.update(metrics, step=step)
        accelerator.log({f"val/{k}": v for k, v in metrics.items()}, step=step)
        if accelerator.is_main_process:
            grid = make_sample_grid(
                validation["pixel_values"][:, :3],
                validation["mask"],
                predictions,
                validation["labels"],
                max_rows=args.num_sample_rows,
            )
            save_sample_grid(grid, args.output_dir, step)
            log_sample_grid(accelerator, grid, step)
        logger.info(
            f"step {step}: validation PSNR {metrics['psnr']:.2f} dB, fPSNR {metrics['fpsnr']:.2f} dB "
            f"(the input composites: {composite_metrics['psnr']:.2f} / {composite_metrics['fpsnr']:.2f} dB)"
        )

    progress = tqdm(
        total=max_train_steps,
        initial=state.global_step,
        desc="Pre-training",
        unit="step",
        disable=not accelerator.is_local_main_process,
    )
    stop, throughput = StopRequest(args.time_budget_minutes), Throughput()
    clock = TrainingClock(state)
    last_good = dataclasses.replace(state)
    step_loss, step_batches, stop_reason = 0.0, 0, None
    timings, steps_since_log = {"data": 0.0, "composite": 0.0, "step": 0.0}, 0
    train_start, train_end = time.perf_counter(), None
    images_at_start = state.images_seen

    def save_model() -> dict:
        """The model folder in --output_dir as of now (call on every process); returns the run's summary."""
        summary = {
            **run_summary(
                accelerator, model, state, max_train_steps, stop_reason, batches_per_epoch,
                (train_end or time.perf_counter()) - train_start, images_at_start,
            ),  # fmt: skip
            "validation": dict(last_validation),
            "validation_composite_baseline": composite_metrics,
        }
        files, card = {"train_results.json": json.dumps(summary, indent=2) + "\n"}, ""
        if accelerator.is_main_process:
            sample_path = os.path.join(args.output_dir, "samples", f"step-{state.global_step:07d}.png")
            if os.path.isfile(sample_path):
                with open(sample_path, "rb") as f:
                    files["sample_grid.png"] = f.read()
            model_name = hub_repo.repo_id if hub_repo is not None else default_hub_model_id(args)
            card = pretrain_card(
                args, model_name, summary, data_source, learning_rate, max_train_steps, "sample_grid.png" in files
            )
        save_final_model(accelerator, model, image_processor, args.output_dir, card, files)
        return summary

    model.train()
    stop.listen()
    try:
        while state.global_step < max_train_steps and stop_reason is None:
            batches = train_dataloader  # a stream goes on from its recorded position, and never ends
            if not streaming:
                train_dataloader.set_epoch(state.epoch)
                if state.batches_in_epoch:
                    batches = accelerator.skip_first_batches(train_dataloader, state.batches_in_epoch)
            tick = time.perf_counter()
            for batch in batches:
                timings["data"] += time.perf_counter() - tick
                tick = time.perf_counter()
                # LEMaRT composites, new every epoch; their generator depends only on (seed, batch number).
                images = batch["pixel_values"].to(composite_device, non_blocking=True).float().div_(255)
                generator = composite_generator(args.seed, state, accelerator, composite_device)
                composed = composer(images, generator=generator)
                pixel_values = composed["pixel_values"].to(accelerator.device, non_blocking=True)
                labels = composed["labels"].to(accelerator.device, non_blocking=True)
                timings["composite"] += time.perf_counter() - tick
                tick = time.perf_counter()

                seed_for_step(args.seed, state.micro_step, accelerator.process_index)  # stochastic depth
                with accelerator.accumulate(model):
                    loss = model(pixel_values=pixel_values, labels=labels).loss
                    losses, stop_requested = backward_and_step(
                        accelerator, model, optimizer, lr_scheduler, loss, state, stop, args.max_grad_norm
                    )
                state.micro_step += 1
                state.batches_in_epoch += 1
                state.images_seen += images.shape[0] * num_processes
                throughput.add(images.shape[0] * num_processes)
                step_loss += float(losses.mean())
                step_batches += 1
                timings["step"] += time.perf_counter() - tick
                if not accelerator.sync_gradients:
                    tick = time.perf_counter()
                    continue

                state.global_step += 1
                clock.step()
                progress.update(1)
                progress.set_postfix(loss=f"{step_loss / step_batches:.4g}", lr=f"{lr_scheduler.get_last_lr()[0]:.3g}")
                steps_since_log += 1
                if state.global_step % args.logging_steps == 0 or state.global_step == max_train_steps:
                    steps = steps_since_log
                    accelerator.log(
                        {
                            "train/loss": step_loss / step_batches,
                            "train/lr": lr_scheduler.get_last_lr()[0],
                            "train/epoch": state.epoch,
                            "train/images_per_second": throughput.rate(),
                            "train/hours": state.train_seconds / 3600,
                            **{f"perf/{k}_seconds_per_step": v / steps for k, v in timings.items()},
                        },
                        step=state.global_step,
                    )
                    timings, steps_since_log = dict.fromkeys(timings, 0.0), 0
                step_loss, step_batches = 0.0, 0
                if streaming:
                    state.data_position = train_dataloader.state_dict()
                last_good = dataclasses.replace(state)

                if stop_requested:
                    stop_reason = stop.reason()
                if state.global_step % args.checkpointing_steps == 0 or stop_reason:
                    path = checkpoints.save(accelerator, state)
                    logger.info(f"saved {path}")
                    upload_at_save(hub_repo, args, save_model, path, state.global_step)
                if args.validation_steps and state.global_step % args.validation_steps == 0:
                    with clock.paused():
                        run_validation(state.global_step)
                if stop_reason or state.global_step >= max_train_steps:
                    break
                tick = time.perf_counter()
            else:
                state.epoch += 1
                state.batches_in_epoch = 0
    except NonFiniteLossError as error:
        progress.close()
        exit_on_non_finite_loss(error, accelerator, checkpoints, last_good)
    except (DataFileError, CheckpointWriteError) as error:
        progress.close()
        raise SystemExit(f"run_pretrain.py: error: {error}") from None
    finally:
        stop.close()
    progress.close()
    train_end = time.perf_counter()

    # Final validation, model, card.
    if validation is not None and last_validation.get("step") != state.global_step:
        run_validation(state.global_step)
    accelerator.wait_for_everyone()
    summary = save_model()
    logger.info(f"saved the model to {args.output_dir}")
    if hub_repo is not None:
        logger.info(f"uploading {args.output_dir} to the Hub as {hub_repo.repo_id}")
        hub_repo.upload_model(args.output_dir, f"LEMaRT pre-training, step {state.global_step}")
    accelerator.end_training()
    return summary


def pretrain_card(
    args, model_name: str, summary: dict, data_source: str, learning_rate: float, max_train_steps: int, has_sample: bool
) -> str:
    validation = summary["validation"]
    dataset_name = f"LEMaRT composites of held-out photos ({data_source})"
    metrics = [
        CardMetric(label, key, validation[key], dataset_name, "lemart-composites", "validation")
        for label, key in CARD_METRICS
        if key in validation
    ]
    results = ""
    if validation:
        baseline = summary["validation_composite_baseline"]
        results = (
            f"On {args.num_validation_composites} fixed LEMaRT composites ({args.mask_strategy} masks, ratio "
            f"{args.mask_ratio}) of held-out photos, at {args.resolution}x{args.resolution}, values 0..255:\n\n"
            "| | MSE ↓ | PSNR ↑ | fMSE ↓ | fPSNR ↑ |\n| --- | ---: | ---: | ---: | ---: |\n"
            f"| input composite | {baseline['mse']:.2f} | {baseline['psnr']:.2f} | {baseline['fmse']:.1f} | {baseline['fpsnr']:.2f} |\n"
            f"| this model | {validation['mse']:.2f} | {validation['psnr']:.2f} | {validation['fmse']:.1f} | {validation['fpsnr']:.2f} |\n\n"
            "These are pre-training numbers, not iHarmony4 results: fine-tune with `examples/run_finetune.py`."
        )
    stopped = f" (stopped early: {summary['stopped_early']})" if summary["stopped_early"] else ""
    summary_text = (
        f"Image harmonization model ({summary['architecture']}) pre-trained with LEMaRT (Label-Efficient Masked Region Transform, "
        "CVPR 2023): composites made online from unlabeled photos by perturbing the visual attributes of a random "
        f"region, with the photo itself as the target. Trained {summary['global_step']} of {max_train_steps} steps"
        f"{stopped}, {summary['images_seen']} images, on {data_source}.\n\nMade with lemart_hf's "
        "`examples/run_pretrain.py`. A pre-trained model is meant to be fine-tuned on labeled harmonization pairs "
        "(iHarmony4) with `examples/run_finetune.py`."
    )
    recipe = {
        "objective": f"LEMaRT, {args.loss_type} loss",
        "masks": f"{args.mask_strategy}, ratio {args.mask_ratio}, grid {args.mask_grid_size}",
        "perturbations": ", ".join(args.perturbations or sorted(PERTURBATIONS)),
        "resolution": args.resolution,
        "crops": f"random square, scale {tuple(args.crop_scale)}, hflip {not args.no_hflip}",
        "model": args.model_name_or_path or args.model_config,
        "optimizer": f"AdamW betas ({args.adam_beta1}, {args.adam_beta2}), eps {args.adam_epsilon}, wd {args.adam_weight_decay}",
        "learning rate": f"{learning_rate:g} peak, {args.lr_scheduler}, {warmup_steps(args, max_train_steps)} warm-up steps",
        "batch": f"{args.train_batch_size} per process x {summary['num_processes']} processes x "
        f"{args.gradient_accumulation_steps} accumulation",
        "steps": f"{summary['global_step']} / {max_train_steps}",
        "max grad norm": args.max_grad_norm,
        "mixed precision": summary["mixed_precision"],
        "training time": f"{summary['train_hours']:.2f} h on {summary['num_processes']} process(es), validation "
        "excluded, over every invocation of this run",
        "seed": args.seed,
        "throughput": f"{summary['images_per_second_this_invocation']} images/s",
    }
    return model_card(
        model_name=model_name,
        summary=summary_text,
        metrics=metrics,
        recipe=recipe,
        command=command_line("examples/run_pretrain.py", summary["mixed_precision"]),
        results_markdown=results,
        base_model=base_model_name(args.model_name_or_path),
        datasets=[args.dataset_name] if args.dataset_name and not os.path.isdir(args.dataset_name) else [],
        extra_tags=[summary["architecture"], "self-supervised", "pre-training"],
        **card_license(args, data_source),
        sample_image="sample_grid.png" if has_sample else None,
    )


if __name__ == "__main__":
    main()
