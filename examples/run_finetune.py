#!/usr/bin/env python
"""Fine-tuning of a harmonization model on iHarmony4-layout data (Accelerate), with a final test-split evaluation.

Trains on the ``<Subset>_train.txt`` pairs (composite, mask, real) with the foreground-normalized MSE, starting from
a LEMaRT pre-trained model (``--model_name_or_path``) or from scratch (``--model_config``); ``--train_fraction``
keeps a seeded fraction of the labels (the paper's label-efficiency experiments). At the end the model is scored
on the ``<Subset>_test.txt`` pairs with the evaluation protocol of `examples/run_eval.py` (the same code), and the
table goes into the model card.

    # fine-tune a pre-trained model on 10% of the HOutdoor labels
    accelerate launch examples/run_finetune.py --data_dir ../shared/data --subsets HOutdoor \\
        --model_name_or_path outputs/pretrain --train_fraction 0.1 --output_dir outputs/finetune-10pct

    # the same from scratch, for comparison
    accelerate launch examples/run_finetune.py --data_dir ../shared/data --subsets HOutdoor \\
        --model_config swinih-tiny --train_fraction 0.1 --output_dir outputs/scratch-10pct

    # iHarmony4, all four subsets, a GPU
    accelerate launch --mixed_precision bf16 examples/run_finetune.py --data_dir /data/iHarmony4 \\
        --model_name_or_path outputs/pretrain --train_batch_size 32 --dataloader_num_workers 8

    # 8 GPUs, FSDP, DeepSpeed ZeRO, several nodes: examples/accelerate_configs/ (README "Train at scale")
    accelerate launch --config_file examples/accelerate_configs/ddp.yaml examples/run_finetune.py ...

Outputs in --output_dir: the model as a complete hub repository (`lemart_hf.hub.save_hub_folder`: config.json,
model.safetensors, preprocessor_config.json, the model and pipeline code, README.md: the model card with the test
table), eval_results.json / .md (per-image values and the table), train_results.json, sample grids (samples/,
columns composite | mask | prediction | real), logs/ and checkpoint-{step} folders. ``--push_to_hub`` uploads all
but the last three (``--hub_strategy``: also during training).
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

from lemart_hf.data import IHARMONY4_SUBSETS, DataFileError, find_subsets, hold_out_photos, load_iharmony4
from lemart_hf.data.photos import EpochShuffleSampler
from lemart_hf.evaluation import NonFinitePredictionError, evaluate_harmonization, model_predictor
from lemart_hf.hub import base_model_name, model_card, results_metrics
from lemart_hf.lemart import LEMaRTComposer
from lemart_hf.lemart.mixing import mix_self_supervised, mixed_counts
from lemart_hf.metrics import PROTOCOLS, get_protocol
from lemart_hf.training import (
    CheckpointWriteError,
    HarmonizationTrainingPairs,
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
    collate_pairs,
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


def label_fraction(text: str) -> float:
    """``"0.1"`` or ``"10%"`` -> 0.1; anything outside (0, 1] is rejected."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction like 0.1 or a percentage like 10%, got {text!r}"
        ) from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (1%..100% of the training labels), got {text!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    data = parser.add_argument_group("data (iHarmony4 layout)")
    data.add_argument("--data_dir", required=True, help="Root holding <Subset>/{composite_images,masks,real_images}.")
    data.add_argument(
        "--subsets", nargs="+", default=None, help="Subsets to train and evaluate on (default: all found)."
    )
    data.add_argument(
        "--train_fraction",
        type=label_fraction,
        default=1.0,
        help="Fraction of each subset's training pairs to use, e.g. 0.1 or 10%% (a seeded sample; label efficiency).",
    )
    data.add_argument(
        "--train_fraction_seed",
        type=int,
        default=None,
        help="Seed of that sample (default: --seed). Fix it to vary --seed (initialisation, crops, order) over the "
        "same labels, or vary it alone to measure how much the choice of labels matters.",
    )
    data.add_argument(
        "--max_train_samples", type=int, default=None, help="At most this many training pairs per subset."
    )
    data.add_argument(
        "--max_eval_samples",
        type=int,
        default=None,
        help="At most this many test pairs per subset in the final evaluation.",
    )
    data.add_argument(
        "--validation_fraction",
        type=float,
        default=0.0,
        help="Hold out this share of the training photos (all composites of a photo together, the same photos for "
        "every seed) as the validation split of --validation_steps, to choose steps and learning rate without "
        "looking at the test split. 0 (default): validation scores the first --validation_max_samples test pairs "
        "(monitoring only).",
    )
    data.add_argument(
        "--validation_max_samples",
        type=int,
        default=64,
        help="Test pairs per subset scored at each --validation_steps (the final evaluation uses all of them).",
    )
    data.add_argument(
        "--crop_scale",
        type=float,
        nargs=2,
        default=(0.5, 1.0),
        metavar=("MIN", "MAX"),
        help="Random resized crop area range, applied identically to composite, mask and real.",
    )
    data.add_argument("--no_hflip", action="store_true", help="Do not mirror half of the training crops.")
    data.add_argument(
        "--dataset_repeats",
        type=int,
        default=None,
        help="Visit each pair this many times per epoch (default: enough for one optimizer step per epoch).",
    )
    mix = parser.add_argument_group(
        "self-supervised samples in the batches (keep a model from learning 'make the foreground look like its "
        "background', which colour-transfer labels teach and real composites punish)"
    )
    mix.add_argument(
        "--lemart_fraction",
        type=float,
        default=0.0,
        help="Share of each batch replaced by LEMaRT composites of the pairs' real images, perturbed inside their "
        "object masks (target: the real image).",
    )
    mix.add_argument(
        "--identity_fraction",
        type=float,
        default=0.0,
        help="Share of each batch given the real image itself as input (target: unchanged).",
    )
    data.add_argument("--eval_batch_size", type=int, default=16, help="Batch size per process for evaluation.")
    data.add_argument(
        "--eval_protocol", choices=sorted(PROTOCOLS), default="default", help="Evaluation protocol (DESIGN.md §4)."
    )
    data.add_argument("--skip_final_evaluation", action="store_true", help="Do not score the test split at the end.")

    add_model_arguments(parser, default_loss="fn_mse")
    add_training_arguments(parser, learning_rate=5e-4, num_train_epochs=120, train_batch_size=16)
    add_checkpointing_arguments(parser, default_output_dir="outputs/finetune")
    add_logging_arguments(parser)
    add_hub_arguments(parser)
    args = parser.parse_args(argv)

    if not os.path.isdir(args.data_dir):
        parser.error(f"--data_dir {args.data_dir!r} is not a directory")
    available = find_subsets(args.data_dir)
    if not available:
        parser.error(f"--data_dir {args.data_dir!r} holds no iHarmony4-layout subset (<Subset>/composite_images/)")
    unknown = sorted(set(args.subsets or []) - set(available))
    if unknown:
        parser.error(f"--subsets {unknown} not found under {args.data_dir!r}; available: {available}")
    if not 0.0 < args.crop_scale[0] <= args.crop_scale[1] <= 1.0:
        parser.error(f"--crop_scale must satisfy 0 < MIN <= MAX <= 1, got {args.crop_scale}")
    for name in ("max_train_samples", "max_eval_samples", "dataset_repeats"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not 0.0 <= args.validation_fraction < 1.0:
        parser.error(f"--validation_fraction must be in [0, 1), got {args.validation_fraction}")
    try:
        mixed_counts(args.train_batch_size, args.lemart_fraction, args.identity_fraction)
    except ValueError as error:
        parser.error(f"--lemart_fraction / --identity_fraction: {error}")
    if args.validation_max_samples < 1 or args.eval_batch_size < 1:
        parser.error("--validation_max_samples and --eval_batch_size must be >= 1")
    check_training_arguments(parser, args)
    if args.train_fraction_seed is None:
        args.train_fraction_seed = args.seed
    return args


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

    # Data: a seeded fraction of the training pairs; crops decoded on the workers.
    subsets = args.subsets or find_subsets(args.data_dir)
    try:
        train_rows = load_iharmony4(
            args.data_dir,
            subsets,
            "train",
            fraction=args.train_fraction,
            seed=args.train_fraction_seed,
            max_samples=args.max_train_samples,
        )
        test_rows = (
            None
            if args.skip_final_evaluation
            else load_iharmony4(args.data_dir, subsets, "test", max_samples=args.max_eval_samples)
        )
        validation_rows, validation_title = None, "validation"
        if args.validation_fraction > 0:
            train_rows, validation_rows = hold_out_photos(train_rows, args.validation_fraction)
        elif args.validation_steps:
            validation_rows = load_iharmony4(args.data_dir, subsets, "test", max_samples=args.validation_max_samples)
            validation_title = "test-subset"
        if not args.validation_steps:
            validation_rows = None
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"run_finetune.py: error: {error}") from error
    protocol = get_protocol(args.eval_protocol)
    train_dataset = HarmonizationTrainingPairs(
        train_rows,
        args.resolution,
        seed=args.seed,
        crop_scale=tuple(args.crop_scale),
        hflip=not args.no_hflip,
        binary_mask=protocol.binary_mask,
    )
    num_processes = accelerator.num_processes
    batch_per_step = args.train_batch_size * num_processes * args.gradient_accumulation_steps
    repeats = args.dataset_repeats or max(1, math.ceil(batch_per_step / len(train_dataset)))
    train_dataloader = torch.utils.data.DataLoader(
        train_dataset,
        batch_size=args.train_batch_size,
        sampler=EpochShuffleSampler(len(train_dataset), seed=args.seed, repeats=repeats),
        collate_fn=collate_pairs,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),  # keeps worker seeding off the global RNG
        **dataloader_kwargs(args, pin_memory=accelerator.device.type == "cuda"),
    )
    train_dataloader = accelerator.prepare_data_loader(train_dataloader)
    batches_per_epoch = len(train_dataloader)
    if batches_per_epoch == 0:
        raise SystemExit(
            f"run_finetune.py: error: {len(train_dataset)} training pairs make no full batch of "
            f"{args.train_batch_size} per process; lower --train_batch_size or set --dataset_repeats"
        )
    updates_per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps or args.num_train_epochs * updates_per_epoch

    mixes = args.lemart_fraction > 0 or args.identity_fraction > 0
    composer = LEMaRTComposer() if args.lemart_fraction > 0 else None

    # Model and optimisation.
    model, image_processor = load_model(args)
    learning_rate = effective_learning_rate(args, num_processes)
    optimizer = build_optimizer(model, args, learning_rate)
    lr_scheduler = build_scheduler(optimizer, args, max_train_steps, num_processes)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)

    run_settings = {
        "train_batch_size": args.train_batch_size,
        "gradient_accumulation_steps": accelerator.gradient_accumulation_steps,  # = the argument (make_accelerator)
        "num_processes": num_processes,
        "engine": engine_name(accelerator),
        "seed": args.seed,
        "resolution": args.resolution,
        "max_train_steps": max_train_steps,
        "train_fraction": args.train_fraction,
        "train_fraction_seed": args.train_fraction_seed,
        "train_pairs": len(train_dataset),
        "subsets": list(subsets),
        "validation_fraction": args.validation_fraction,
        "lemart_fraction": args.lemart_fraction,
        "identity_fraction": args.identity_fraction,
    }
    state = TrainingState(run=run_settings)
    resume_from = resume_point(accelerator, checkpoints, args.resume_from_checkpoint)
    if args.resume_from_checkpoint == "latest" and resume_from is None:
        logger.info(f"no checkpoint in {args.output_dir}: starting a new run")
    if resume_from is not None:
        logger.info(f"resuming from {resume_from}")
        accelerator.load_state(str(resume_from))
        state = load_training_state(resume_from)
        warn_on_run_mismatch(state.run, run_settings)
        state.run = run_settings
        if state.batches_in_epoch >= batches_per_epoch:
            state.epoch, state.batches_in_epoch = state.epoch + 1, 0

    if accelerator.is_main_process:
        tracker_config = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in vars(args).items()}
        accelerator.init_trackers(args.tracker_project_name or "lemart_finetune", config=tracker_config)
    start = "from " + args.model_name_or_path if args.model_name_or_path else f"from scratch ({args.model_config})"
    logger.info(
        f"fine-tuning {start} on {len(train_dataset)} pairs ({args.train_fraction:.0%} of {', '.join(subsets)} train); "
        f"{max_train_steps} optimizer steps of {batch_per_step} at {args.resolution}px, peak lr {learning_rate:g}, "
        f"{args.loss_type} loss"
    )

    def evaluate(rows, title: str, grid_step: int | None):
        """Score the model on ``rows`` (every process runs the prepared model, which gathers the parameters FSDP and
        ZeRO-3 shard, on its share of the rows); on the main process save a grid of the first batch."""
        model.eval()
        first_batch: dict = {}

        def keep_first(batch, harmonized):
            if not first_batch and accelerator.is_main_process:
                first_batch.update(batch, harmonized=harmonized.detach().cpu())

        try:
            results = evaluate_harmonization(
                model_predictor(accelerator.unwrap_model(model), args.resolution, prepared=model),
                rows,
                batch_size=args.eval_batch_size,
                num_workers=args.dataloader_num_workers,
                protocol=protocol,
                accelerator=accelerator,
                progress=False,
                on_batch=keep_first,
                title=title,
            )
        except (DataFileError, NonFinitePredictionError) as error:
            raise SystemExit(f"run_finetune.py: error: {error}") from None
        model.train()
        grid = None
        if first_batch:
            grid = make_sample_grid(
                first_batch["composite"],
                first_batch["mask"],
                first_batch["harmonized"],
                first_batch["real"],
                max_rows=args.num_sample_rows,
            )
            if grid_step is not None:
                save_sample_grid(grid, args.output_dir, grid_step)
                log_sample_grid(accelerator, grid, grid_step)
        return results, grid

    last_validation: dict = {}

    def run_validation() -> None:
        """Score the validation rows at this step, log the scores and keep them in ``last_validation`` (call on every
        process)."""
        results, _ = evaluate(validation_rows, validation_title, state.global_step)
        last_validation.clear()
        last_validation.update({**results.all, "step": state.global_step})
        accelerator.log({f"val/{k}": results.all[k] for k in ("mse", "psnr", "fmse", "fpsnr")}, step=state.global_step)
        logger.info(
            f"step {state.global_step}: {validation_title} PSNR {results.all['psnr']:.2f} dB, "
            f"fPSNR {results.all['fpsnr']:.2f} dB"
        )

    progress = tqdm(
        total=max_train_steps,
        initial=state.global_step,
        desc="Fine-tuning",
        unit="step",
        disable=not accelerator.is_local_main_process,
    )
    stop, throughput = StopRequest(args.time_budget_minutes), Throughput()
    clock = TrainingClock(state)
    last_good = dataclasses.replace(state)
    step_loss, step_batches, stop_reason = 0.0, 0, None
    train_start, train_end, images_at_start = time.perf_counter(), None, state.images_seen
    model_name = hub_repo.repo_id if hub_repo is not None else default_hub_model_id(args)

    def save_model(results=None, grid=None) -> dict:
        """The model folder in --output_dir as of now, with the test ``results`` and sample ``grid`` when given (call
        on every process); returns the run's summary."""
        summary = {
            **run_summary(
                accelerator, model, state, max_train_steps, stop_reason, batches_per_epoch,
                (train_end or time.perf_counter()) - train_start, images_at_start,
            ),  # fmt: skip
            "train_pairs": len(train_dataset),
            "train_fraction": args.train_fraction,
            "validation": last_validation,
            "test": results.table if results is not None else None,
        }
        files, card = {"train_results.json": json.dumps(summary, indent=2, default=str) + "\n"}, ""
        if accelerator.is_main_process:
            if results is not None:
                results.save(args.output_dir, "eval_results")
            if grid is not None:
                save_sample_grid(grid, args.output_dir, state.global_step)
                files["sample_grid.png"] = image_bytes(grid)
            card = finetune_card(
                args, model_name, summary, results, subsets, learning_rate, max_train_steps, grid is not None
            )
        save_final_model(accelerator, model, image_processor, args.output_dir, card, files)
        return summary

    model.train()
    stop.listen()
    try:
        while state.global_step < max_train_steps and stop_reason is None:
            train_dataloader.set_epoch(state.epoch)
            batches = train_dataloader
            if state.batches_in_epoch:
                batches = accelerator.skip_first_batches(train_dataloader, state.batches_in_epoch)
            for batch in batches:
                if mixes:
                    batch = mix_self_supervised(
                        batch,
                        composer,
                        lemart_fraction=args.lemart_fraction,
                        identity_fraction=args.identity_fraction,
                        generator=composite_generator(args.seed, state, accelerator),
                    )
                seed_for_step(args.seed, state.micro_step, accelerator.process_index)  # stochastic depth
                with accelerator.accumulate(model):
                    loss = model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss
                    losses, stop_requested = backward_and_step(
                        accelerator, model, optimizer, lr_scheduler, loss, state, stop, args.max_grad_norm
                    )
                state.micro_step += 1
                state.batches_in_epoch += 1
                state.images_seen += batch["pixel_values"].shape[0] * num_processes
                throughput.add(batch["pixel_values"].shape[0] * num_processes)
                step_loss += float(losses.mean())
                step_batches += 1
                if not accelerator.sync_gradients:
                    continue

                state.global_step += 1
                clock.step()
                progress.update(1)
                progress.set_postfix(loss=f"{step_loss / step_batches:.4g}", lr=f"{lr_scheduler.get_last_lr()[0]:.3g}")
                if state.global_step % args.logging_steps == 0 or state.global_step == max_train_steps:
                    accelerator.log(
                        {
                            "train/loss": step_loss / step_batches,
                            "train/lr": lr_scheduler.get_last_lr()[0],
                            "train/epoch": state.epoch,
                            "train/images_per_second": throughput.rate(),
                            "train/hours": state.train_seconds / 3600,
                        },
                        step=state.global_step,
                    )
                step_loss, step_batches = 0.0, 0
                last_good = dataclasses.replace(state)

                if stop_requested:
                    stop_reason = stop.reason()
                if state.global_step % args.checkpointing_steps == 0 or stop_reason:
                    path = checkpoints.save(accelerator, state)
                    logger.info(f"saved {path}")
                    upload_at_save(hub_repo, args, save_model, path, state.global_step)
                if validation_rows is not None and state.global_step % args.validation_steps == 0:
                    with clock.paused():
                        run_validation()
                if stop_reason or state.global_step >= max_train_steps:
                    break
            else:
                state.epoch += 1
                state.batches_in_epoch = 0
    except NonFiniteLossError as error:
        progress.close()
        exit_on_non_finite_loss(error, accelerator, checkpoints, last_good)
    except (DataFileError, CheckpointWriteError) as error:
        progress.close()
        raise SystemExit(f"run_finetune.py: error: {error}") from None
    finally:
        stop.close()
    progress.close()
    train_end = time.perf_counter()
    if validation_rows is not None and last_validation.get("step") != state.global_step:
        run_validation()  # the scores of the weights saved, whatever step the run ended at

    # Final evaluation on the test split, with the shared evaluation loop (the numbers of run_eval.py).
    results, grid = (None, None)
    if test_rows is not None:
        results, grid = evaluate(test_rows, model_name, None)
        accelerator.log({f"test/{k}": results.all[k] for k in ("mse", "psnr", "fmse", "fpsnr")}, step=state.global_step)
        results.extra.update(
            {"data_dir": os.path.abspath(args.data_dir), "split": "test", "model": os.path.abspath(args.output_dir)}
        )
        if accelerator.is_main_process:
            logger.info("test split:\n" + results.to_markdown())
    summary = save_model(results, grid)
    logger.info(f"saved the model to {args.output_dir}")
    if hub_repo is not None:
        logger.info(f"uploading {args.output_dir} to the Hub as {hub_repo.repo_id}")
        hub_repo.upload_model(args.output_dir, f"Fine-tuning, step {state.global_step}")
    accelerator.end_training()
    return summary


def image_bytes(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def finetune_card(args, model_name, summary, results, subsets, learning_rate, max_train_steps, has_sample) -> str:
    standard = all(s in IHARMONY4_SUBSETS for s in subsets)
    metrics = []
    if results is not None:
        prefix = "iHarmony4 " if standard else ""
        metrics = results_metrics(
            results.table,
            "iharmony4" if standard else "iharmony4-layout",
            lambda subset: prefix + (subset or f"{', '.join(subsets)} (all test images)"),
        )
    start = (
        f"the pre-trained model `{args.model_name_or_path}`"
        if args.model_name_or_path
        else f"scratch ({args.model_config})"
    )
    stopped = f" (stopped early: {summary['stopped_early']})" if summary["stopped_early"] else ""
    text = (
        f"Image harmonization model ({summary['architecture']}) fine-tuned from {start} on {summary['train_pairs']} labeled pairs "
        f"({args.train_fraction:.0%} of the training lists of {', '.join(subsets)}), {summary['global_step']} of "
        f"{max_train_steps} steps{stopped}, with the {args.loss_type} loss. Made with lemart_hf's "
        "`examples/run_finetune.py` (LEMaRT, CVPR 2023)."
    )
    results_md = ""
    if results is not None:
        results_md = (
            "Test split, scored with `lemart_hf.evaluation.evaluate_harmonization` (as `examples/run_eval.py`):\n\n"
        )
        results_md += results.to_markdown()
    recipe = {
        "initialisation": args.model_name_or_path or f"random ({args.model_config})",
        "data": f"{args.data_dir}: {', '.join(subsets)}, train fraction {args.train_fraction:g} "
        f"(seed {args.train_fraction_seed})",
        "validation": f"{args.validation_fraction:.0%} of the training photos held out"
        if args.validation_fraction
        else "test-subset monitoring",
        "self-supervised samples": f"{args.lemart_fraction:.0%} LEMaRT composites in the object masks, "
        f"{args.identity_fraction:.0%} identity",
        "loss": args.loss_type,
        "resolution": args.resolution,
        "augmentation": f"random resized crop scale {tuple(args.crop_scale)}, hflip {not args.no_hflip}",
        "optimizer": f"AdamW betas ({args.adam_beta1}, {args.adam_beta2}), eps {args.adam_epsilon}, wd {args.adam_weight_decay}",
        "learning rate": f"{learning_rate:g} peak, {args.lr_scheduler}, {warmup_steps(args, max_train_steps)} warm-up steps",
        "batch": f"{args.train_batch_size} per process x {summary['num_processes']} processes x "
        f"{args.gradient_accumulation_steps} accumulation",
        "steps": f"{summary['global_step']} / {max_train_steps} ({summary['epochs']:.1f} epochs)",
        "max grad norm": args.max_grad_norm,
        "mixed precision": summary["mixed_precision"],
        "training time": f"{summary['train_hours']:.2f} h on {summary['num_processes']} process(es), validation "
        "excluded, over every invocation of this run",
        "seed": args.seed,
        "evaluation protocol": args.eval_protocol,
    }
    return model_card(
        model_name=model_name,
        summary=text,
        metrics=metrics,
        recipe=recipe,
        command=command_line("examples/run_finetune.py", summary["mixed_precision"]),
        results_markdown=results_md,
        base_model=base_model_name(args.model_name_or_path),
        extra_tags=[summary["architecture"], "iharmony4", "fine-tuned" if args.model_name_or_path else "from-scratch"],
        **card_license(args, f"{', '.join(subsets)} of {args.data_dir}"),
        sample_image="sample_grid.png" if has_sample else None,
    )


if __name__ == "__main__":
    main()
