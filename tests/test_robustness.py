"""Bad input and faults in the library: no silent wrong result, no raw traceback, no hang, no broken file.

Each test is a case of issue 18 (or a neighbour of one); the example scripts' cases are in
tests/examples/test_robustness_scripts.py.
"""

import math
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from lemart_hf import ARCHITECTURES, SwinIHConfig, SwinIHForHarmonization, SwinIHImageProcessor
from lemart_hf.data import DataFileError, example_to_tensors, load_iharmony4, pil_to_tensor
from lemart_hf.evaluation import NonFinitePredictionError, evaluate_harmonization
from lemart_hf.lemart import LEMaRTComposer, lemart_transform
from lemart_hf.metrics import aggregate, harmonization_metrics
from lemart_hf.training import CheckpointManager, CheckpointWriteError, TrainingState

TINY = {"embed_dim": 16, "depths": [1, 1, 2], "num_heads": [2, 2, 4], "window_size": 4}


def _pair(height=40, width=48, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    binary = np.zeros((height, width), bool)
    binary[10:30, 12:36] = True
    return image, binary


def _files(folder, name):
    """The composite and mask paths the CLI tests write."""
    return folder / f"{name}.png", folder / f"{name}_mask.png"




# ----- masks: 0/1 8-bit masks and palette masks ------------------------------------------------------------------


def test_zero_one_and_palette_masks_mean_what_a_255_mask_means(pipe, tmp_path):
    image, binary = _pair()
    expected = pipe(image, binary.astype(np.uint8) * 255, output_type="pt")
    assert not torch.equal(expected, torch.from_numpy(image).permute(2, 0, 1).float() / 255)
    Image.fromarray(binary.astype(np.uint8)).save(tmp_path / "zero_one.png")  # an 8-bit PNG holding 0 and 1
    palette = Image.fromarray(binary.astype(np.uint8) * 3, mode="L").convert("P")  # index 3 = foreground
    palette.putpalette([0, 0, 0] * 3 + [128, 0, 0] + [0, 0, 0] * 252)  # VOC-style: a dark red object
    palette.save(tmp_path / "palette.png")
    for mask in (binary.astype(np.uint8), binary.astype(np.int64), tmp_path / "zero_one.png", tmp_path / "palette.png"):
        mask = str(mask) if isinstance(mask, os.PathLike) else mask
        assert torch.equal(pipe(image, mask, output_type="pt"), expected)
    # The evaluation data reads masks by the same rule.
    assert torch.equal(pil_to_tensor(tmp_path / "palette.png", mask=True), torch.from_numpy(binary).float()[None])
    assert torch.equal(pil_to_tensor(str(tmp_path / "zero_one.png"), mask=True), torch.from_numpy(binary).float()[None])


def test_soft_8bit_masks_keep_their_scale():
    from lemart_hf.models.swinih.image_processing_swinih import to_mask

    soft = np.array([[0, 128, 255]], np.uint8)
    assert torch.allclose(to_mask(soft), torch.tensor([[[0.0, 128 / 255, 1.0]]]))
    with pytest.raises(ValueError, match="unsupported dtype"):
        to_mask(np.array([[0, 2, 7]], np.int64))  # integer data beyond 0/1 has no defined range


# ----- non-finite predictions ------------------------------------------------------------------------------------


def test_nan_weights_are_an_error_not_a_black_foreground(model_dir, tmp_path, capsys, run_cli):
    image, binary = _pair()
    broken = tmp_path / "nan_model"
    model = SwinIHForHarmonization.from_pretrained(model_dir)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    model.save_pretrained(broken)
    SwinIHImageProcessor(size=64).save_pretrained(broken)
    Image.fromarray(image).save(tmp_path / "c.png")
    Image.fromarray(binary.astype(np.uint8) * 255).save(tmp_path / "c_mask.png")
    capsys.readouterr()  # the progress bars of loading and saving above
    code, _, stderr = run_cli(["--model", broken, *_files(tmp_path, "c"), "-o", tmp_path / "o.png"])
    err = stderr.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not finite" in err[0], err
    assert not (tmp_path / "o.png").exists()
    processor = SwinIHImageProcessor(size=64)
    inputs = processor(image, binary)
    with pytest.raises(ValueError, match="not finite"):
        processor.post_process_harmonization(model(**inputs), inputs["original_sizes"])


def test_aggregate_does_not_drop_a_nan_prediction():
    real = torch.rand(3, 3, 8, 8)
    mask = torch.ones(3, 1, 8, 8)
    prediction = real.clone()
    prediction[1] = float("nan")
    mask[2] = 0  # an empty foreground: left out of fMSE only
    summary = aggregate(harmonization_metrics(prediction, real, mask))
    assert summary["non_finite"] == 1 and summary["empty_foreground"] == 1
    assert all(math.isnan(summary[k]) for k in ("mse", "psnr", "fmse", "fpsnr"))
    prediction[1] = real[1]
    summary = aggregate(harmonization_metrics(prediction, real, mask))
    assert summary["non_finite"] == 0 and summary["empty_foreground"] == 1 and summary["mse"] == 0


def _iharmony4(root, size=(24, 24), mask_size=None):
    for folder in ("composite_images", "masks", "real_images"):
        (root / "HTiny" / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / "HTiny/real_images/a.jpg")
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / "HTiny/composite_images/a_1_1.jpg")
    Image.fromarray(np.full(mask_size or size, 255, np.uint8)).save(root / "HTiny/masks/a_1.png")
    (root / "HTiny" / "HTiny_test.txt").write_text("a_1_1.jpg\n")
    return load_iharmony4(root, split="test")


def test_evaluation_names_a_nan_prediction_instead_of_an_empty_foreground(tmp_path):
    dataset = _iharmony4(tmp_path)
    with pytest.raises(NonFinitePredictionError, match="HTiny/a_1_1.jpg"):
        evaluate_harmonization(lambda x: torch.full_like(x[:, :3], float("nan")), dataset, progress=False)


def test_evaluation_data_mask_of_another_size_is_an_error(tmp_path):
    dataset = _iharmony4(tmp_path, mask_size=(20, 24))
    with pytest.raises(DataFileError, match=r"the mask '.*a_1.png' is 24x20 but the composite '.*a_1_1.jpg' is 24x24"):
        example_to_tensors(dataset[0])


# ----- model and composer inputs ---------------------------------------------------------------------------------


def test_model_refuses_255_scale_nan_and_integer_inputs():
    model = SwinIHForHarmonization(SwinIHConfig(**TINY)).eval()
    good = torch.rand(1, 4, 16, 16)
    with pytest.raises(ValueError, match=r"pixel_values must be finite with values in \[0, 1\].*divided by 255"):
        model(pixel_values=good * 255)
    nan = good.clone()
    nan[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="pixel_values must be finite"):
        model(pixel_values=nan)
    with pytest.raises(ValueError, match="labels must be a float tensor"):
        model(pixel_values=good, labels=(good[:, :3] * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="labels must be finite"):
        model(pixel_values=good, labels=good[:, :3] * 255)
    assert model(pixel_values=good, labels=good[:, :3]).loss is not None


def test_composer_refuses_255_scale_and_nan_and_takes_images_that_require_grad():
    composer = LEMaRTComposer(dense=False)
    images = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="divided by 255"):
        composer(images * 255)
    nan = images.clone()
    nan[1, :, 0, 0] = float("nan")  # one background pixel would turn the sample's foreground NaN
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        composer(nan)
    output = composer(images.clone().requires_grad_(), torch.Generator().manual_seed(0))
    assert not output["pixel_values"].requires_grad and output["pixel_values"].isfinite().all()


@pytest.mark.parametrize(
    "kwargs, message",
    [({"mask_ratio": 0.0}, r"mask_ratio must be in \(0, 1\]"), ({"mask_ratio": 0.005}, "selects no patch")],
)
def test_composer_refuses_masks_that_make_no_composite(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LEMaRTComposer(**kwargs)


@pytest.mark.parametrize("architecture", ["resnet_generator", "harmony_transformer", "hrnet"])
@pytest.mark.parametrize("training", [False, True])
def test_convolutional_models_take_a_1x1_input(architecture, training):
    arch = ARCHITECTURES[architecture]
    preset = arch.config_class.default_preset.replace("base", "tiny")
    model = arch.model_class(arch.config_class.from_preset(preset)).train(training)
    output = model(pixel_values=torch.rand(2, 4, 1, 1))
    assert output.harmonized.shape == (2, 3, 1, 1) and output.harmonized.isfinite().all()


@pytest.mark.parametrize(
    "architecture, field, value",
    [
        ("swinih", "depths", [2, -1, 2]),
        ("swinih", "num_heads", [0, 2, 4]),
        ("vit", "num_attention_heads", 0),
        ("harmony_transformer", "num_downsamples", -1),
        ("hrnet", "hidden_sizes", [8, -16]),
        ("resnet_generator", "num_blocks", -2),
    ],
)
def test_configs_refuse_negative_sizes(architecture, field, value):
    config_class = ARCHITECTURES[architecture].config_class
    with pytest.raises(ValueError, match=f"{field} must be made of ints >= "):
        config_class.from_preset(config_class.default_preset.replace("base", "tiny"), **{field: value})


@pytest.mark.parametrize("size", [1, 7, (8, 4)])
def test_working_size_below_8_is_refused(pipe, size):
    image, binary = _pair()
    with pytest.raises(ValueError, match="at least 8 pixels a side"):
        SwinIHImageProcessor(size=size)
    with pytest.raises(ValueError, match="at least 8 pixels a side"):
        pipe(image, binary, working_size=size)


# ----- files: decompression bombs, writes, folders ---------------------------------------------------------------


def test_decompression_bomb_is_one_line_in_pipeline_and_cli(pipe, model_dir, tmp_path, run_cli, monkeypatch):
    image, binary = _pair(64, 64)
    Image.fromarray(image).save(tmp_path / "big.png")
    Image.fromarray(binary.astype(np.uint8) * 255).save(tmp_path / "big_mask.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 3)  # the file is over twice the limit: a bomb
    with pytest.raises(ValueError, match="refusing to read image .*big.png.*decompression bomb"):
        pipe(str(tmp_path / "big.png"), binary)
    code, _, stderr = run_cli(["--model", model_dir, *_files(tmp_path, "big"), "-o", tmp_path / "o.png"])
    err = stderr.strip().splitlines()
    assert code == 2 and len(err) == 1 and "big.png" in err[0] and "decompression bomb" in err[0], err


def test_cli_interrupted_while_writing_leaves_the_old_file_whole(model_dir, tmp_path, run_cli, monkeypatch):
    image, binary = _pair()
    Image.fromarray(image).save(tmp_path / "c.png")
    Image.fromarray(binary.astype(np.uint8) * 255).save(tmp_path / "c_mask.png")
    (tmp_path / "out.png").write_bytes(b"previous result")
    real_save = Image.Image.save

    def interrupted_save(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)
        fp.truncate(10)  # part of the file is written ...
        raise KeyboardInterrupt  # ... when Ctrl-C / SIGTERM arrives

    monkeypatch.setattr(Image.Image, "save", interrupted_save)
    code, _, _ = run_cli(["--model", model_dir, *_files(tmp_path, "c"), "-o", tmp_path / "out.png"])
    assert code == 130
    assert (tmp_path / "out.png").read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "c_mask.png", "out.png"]  # no temporary left


def test_cli_folder_skips_unreadable_composites_and_fails_at_the_end(model_dir, tmp_path, run_cli):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for name in ("a", "b", "c", "d"):
        image, binary = _pair(seed=ord(name))
        Image.fromarray(image).save(inputs / f"{name}.jpg")
        Image.fromarray(binary.astype(np.uint8) * 255).save(inputs / f"{name}_mask.png")
    data = (inputs / "b.jpg").read_bytes()
    (inputs / "b.jpg").write_bytes(data[: len(data) // 2])  # header readable, data truncated
    (inputs / "d.jpg").write_bytes(b"not an image")  # header unreadable
    code, _, stderr = run_cli(["--model", model_dir, "--input_dir", inputs, "--output_dir", outputs, "-q"])
    err = stderr.strip().splitlines()
    assert code == 2
    assert sorted(p.name for p in outputs.iterdir()) == ["a.png", "c.png"]
    warnings = [line for line in err if "warning: skipped" in line]
    assert len(warnings) == 2 and "(2 so far)" in warnings[1], err
    assert err[-1].startswith("lemart-harmonize: error: skipped 2 unreadable")
    assert "b.jpg" in err[-1] and "d.jpg" in err[-1]


def test_cli_refuses_a_corrupt_or_missing_weights_file_in_one_line(model_dir, tmp_path, run_cli):
    image, binary = _pair()
    Image.fromarray(image).save(tmp_path / "c.png")
    Image.fromarray(binary.astype(np.uint8) * 255).save(tmp_path / "c_mask.png")
    cases = (("truncated", "corrupt or truncated model.safetensors"), ("missing", "holds no model.safetensors"))
    for case, fragment in cases:
        folder = tmp_path / case
        folder.mkdir()
        for file in model_dir.iterdir():
            data = file.read_bytes()
            if file.name == "model.safetensors":
                if case == "missing":
                    continue
                data = data[: len(data) // 2]
            (folder / file.name).write_bytes(data)
        code, _, stderr = run_cli(["--model", folder, *_files(tmp_path, "c"), "-o", tmp_path / "o.png"])
        err = stderr.strip().splitlines()
        assert code == 2 and len(err) == 1 and fragment in err[0] and len(err[0]) < 300, err


def test_a_failed_checkpoint_write_leaves_no_partial_folder(tmp_path):
    class FullDisk:
        is_main_process = True
        num_processes = 1

        def wait_for_everyone(self):
            pass

        def save_state(self, output_dir):
            (tmp_path / os.path.basename(output_dir) / "model.safetensors").write_bytes(b"half")
            raise OSError(28, "No space left on device")

    manager = CheckpointManager(tmp_path)
    with pytest.raises(CheckpointWriteError, match="could not write checkpoint-3 into .*No space left on device"):
        manager.save(FullDisk(), TrainingState(global_step=3))
    assert list(tmp_path.iterdir()) == []


# ----- the datasets transform across epochs ----------------------------------------------------------------------


def test_seeded_transform_makes_new_composites_each_epoch_with_non_persistent_workers():
    import datasets

    rng = np.random.default_rng(0)
    photos = [Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)) for _ in range(4)]
    dataset = datasets.Dataset.from_dict({"image": photos}).cast_column("image", datasets.Image())
    dataset = dataset.with_transform(lemart_transform(resolution=16, composer=LEMaRTComposer(grid_size=4), seed=0))

    def epochs(seed: int) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=4, num_workers=1, collate_fn=lambda rows: rows, generator=generator
        )
        return [torch.stack([row["pixel_values"] for row in batch]) for _ in range(2) for batch in loader]

    first, second = epochs(0)
    assert not torch.equal(first, second)  # epoch 2 is not a replay of epoch 1
    assert all(torch.equal(a, b) for a, b in zip(epochs(0), (first, second)))  # and the run is reproducible


# ----- dataloader workers: a failing loop exits ------------------------------------------------------------------


def test_a_process_that_fails_with_live_workers_exits_at_once(tmp_path):
    """The workers leave SIGTERM to their main process, but still obey the main process's own terminate()."""
    script = textwrap.dedent(
        """
        import torch
        from lemart_hf.stopping import ignore_stop_signals

        loader = torch.utils.data.DataLoader(
            range(1000), batch_size=1, num_workers=2, persistent_workers=True, worker_init_fn=ignore_stop_signals
        )
        for batch in loader:
            raise OSError("No space left on device")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr.strip().endswith("OSError: No space left on device")


def test_workers_still_ignore_a_sigterm_from_elsewhere(tmp_path):
    script = textwrap.dedent(
        """
        import os, signal, time, torch
        from lemart_hf.stopping import ignore_stop_signals

        loader = torch.utils.data.DataLoader(range(10), batch_size=1, num_workers=1, worker_init_fn=ignore_stop_signals)
        iterator = iter(loader)
        next(iterator)
        worker = iterator._workers[0]
        print(worker.pid, flush=True)
        input()  # the test sends the SIGTERM now
        time.sleep(0.5)
        print(worker.is_alive(), sum(1 for _ in iterator), flush=True)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        worker_pid = int(process.stdout.readline())
        os.kill(worker_pid, signal.SIGTERM)  # from this process: not the worker's parent
        output, _ = process.communicate("\n", timeout=60)
    finally:
        process.kill()
    assert output.split() == ["True", "9"]
