"""`lemart-harmonize`: single-image and folder mode, and one clear line with exit code 2 on bad input."""

import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image


def write_pair(folder, name, height, width, mask_size=None, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask_h, mask_w = mask_size or (height, width)
    mask = np.zeros((mask_h, mask_w), np.uint8)
    mask[mask_h // 4 : 3 * mask_h // 4 + 1, mask_w // 4 : 3 * mask_w // 4 + 1] = 255
    Image.fromarray(image).save(folder / f"{name}.png")
    Image.fromarray(mask).save(folder / f"{name}_mask.png")
    return folder / f"{name}.png", folder / f"{name}_mask.png"


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lemart-harmonize: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_single_image(model_dir, tmp_path, run_cli):
    composite, mask = write_pair(tmp_path, "photo", 75, 101)
    output = tmp_path / "out" / "harmonized.png"
    code, out, _ = run_cli(["--model", model_dir, composite, mask, "-o", output, "--device", "cpu"])
    assert code == 0 and str(output) in out
    result, source = np.asarray(Image.open(output)), np.asarray(Image.open(composite))
    assert result.shape == source.shape
    background = np.asarray(Image.open(mask)) == 0
    assert np.array_equal(result[background], source[background])


def test_decoded_photos_are_handed_over_as_uint8(tmp_path):
    """The CLI decodes each file once into what the pipeline keeps at full size (uint8 for 8-bit files) and drops
    the PIL images, so a large photo is not held twice; the pipeline reads these as it reads the files."""
    from collections import deque

    from lemart_hf.cli import _decoded_inputs

    composite, mask = write_pair(tmp_path, "photo", 40, 30)
    started = deque()
    inputs = next(_decoded_inputs([(composite, mask, tmp_path / "out.png")], started, None))
    assert len(started) == 1
    assert inputs["image"].dtype == torch.uint8 and inputs["image"].shape == (3, 40, 30)
    assert inputs["mask"].dtype == torch.uint8 and inputs["mask"].shape == (1, 40, 30)
    assert np.array_equal(inputs["image"].permute(1, 2, 0).numpy(), np.asarray(Image.open(composite)))
    assert np.array_equal(inputs["mask"][0].numpy(), np.asarray(Image.open(mask)))


def test_single_image_options(model_dir, tmp_path, run_cli):
    composite, mask = write_pair(tmp_path, "photo", 40, 30, mask_size=(20, 15))
    output = tmp_path / "harmonized.jpg"
    args = [
        "--model",
        model_dir,
        composite,
        mask,
        "-o",
        output,
        "--size",
        "32x48",
        "--method",
        "resize",
        "--resize_mask",
    ]
    code, _, err = run_cli(args)
    assert code == 0, err
    assert Image.open(output).size == (30, 40)


def test_folder_mode(model_dir, tmp_path, run_cli):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    write_pair(inputs, "a", 64, 64, seed=1)
    write_pair(inputs, "b", 33, 91, seed=2)
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)).save(inputs / "c.jpg")
    Image.fromarray(np.full((50, 60), 255, np.uint8)).save(inputs / "c_mask.png")
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    code, _, err = run_cli(
        ["--model", model_dir, "--input_dir", inputs, "--output_dir", outputs, "--batch_size", "2"])
    assert code == 0, err
    assert sorted(p.name for p in outputs.iterdir()) == ["a.png", "b.png", "c.png"]
    assert Image.open(outputs / "b.png").size == (91, 33) and Image.open(outputs / "c.png").size == (60, 50)
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before
    assert "lemart-harmonize" in err  # the progress bar


def test_bad_mask_path(model_dir, tmp_path, run_cli):
    composite, _ = write_pair(tmp_path, "photo", 30, 30)
    missing = tmp_path / "nope_mask.png"
    code, _, err = run_cli(["--model", model_dir, composite, missing, "-o", tmp_path / "o.png"])
    assert_one_line_error(code, err, "file not found", "nope_mask.png")
    assert not (tmp_path / "o.png").exists()


def test_size_mismatch(model_dir, tmp_path, run_cli):
    composite, mask = write_pair(tmp_path, "photo", 30, 40, mask_size=(20, 20))
    code, _, err = run_cli(["--model", model_dir, composite, mask, "-o", tmp_path / "o.png"])
    assert_one_line_error(code, err, "40x30", "20x20", "--resize_mask")


def test_bad_inputs_give_one_line_and_exit_2(model_dir, tmp_path, run_cli):
    composite, mask = write_pair(tmp_path, "photo", 30, 30)
    original = composite.read_bytes()
    (tmp_path / "broken.png").write_bytes(b"not an image")
    empty_folder = tmp_path / "empty_model"
    empty_folder.mkdir()
    cases = [
        (["--model", model_dir, composite, mask, "-o", composite], "refusing to overwrite"),
        (["--model", model_dir, composite, mask, "-o", tmp_path / "out.xyz"], "format"),
        (["--model", model_dir, composite, mask], "-o OUT"),
        (["--model", model_dir, tmp_path / "broken.png", mask, "-o", tmp_path / "o.png"], "cannot read image"),
        (["--model", tmp_path / "no_model", composite, mask, "-o", tmp_path / "o.png"], "model folder not found"),
        (["--model", empty_folder, composite, mask, "-o", tmp_path / "o.png"], "holds no config.json"),
        (["--model", model_dir, composite, mask, "-o", tmp_path / "o.png", "--size", "big"], "--size"),
        (["--model", model_dir, composite, mask, "-o", tmp_path / "o.png", "--device", "cuda:7"], "--device"),
        (["--model", model_dir, "--input_dir", tmp_path, "--output_dir", tmp_path], "--output_dir"),
        (["--model", model_dir, "--input_dir", tmp_path / "missing", "--output_dir", tmp_path / "o"], "not found"),
        (["--model", model_dir, composite, mask, "-o", tmp_path / "o.png", "--input_dir", tmp_path], "not both"),
        (["--model", model_dir, composite, mask, "-o", tmp_path / "o.png", "--dtype", "int8"], "--dtype"),
        (
            ["--model", model_dir, composite, mask, "-o", tmp_path / "o.png", "--dtype", "fp16", "--device", "cpu"],
            "fp16",
        ),
    ]
    if torch.cuda.is_available():
        cases = [case for case in cases if "--device" not in case[0]]
    for args, fragment in cases:
        code, _, err = run_cli(args)
        assert_one_line_error(code, err, fragment)
    assert composite.read_bytes() == original
    assert not (tmp_path / "o.png").exists()


def test_dtype_bf16(model_dir, tmp_path, run_cli, monkeypatch):
    """--dtype bf16 runs the model in bfloat16; on a CPU without native bf16 it warns (one line) and still runs."""
    import lemart_hf.cli

    composite, mask = write_pair(tmp_path, "photo", 50, 70)
    output = tmp_path / "harmonized.png"
    code, _, err = run_cli(["--model", model_dir, composite, mask, "-o", output, "--device", "cpu", "--dtype", "bf16"])
    assert code == 0 and Image.open(output).size == (70, 50), err
    monkeypatch.setattr(lemart_hf.cli, "cpu_has_fast_bf16", lambda: False)
    code, _, err = run_cli(["--model", model_dir, composite, mask, "-o", output, "--device", "cpu", "--dtype", "bf16"])
    assert code == 0 and err.strip().splitlines() == [
        "lemart-harmonize: warning: this CPU has no AVX512-BF16 or AMX: --dtype bf16 is likely slower than fp32"
    ]


def test_folder_mode_missing_mask(model_dir, tmp_path, run_cli):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_pair(inputs, "a", 20, 20)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(inputs / "lonely.png")
    code, _, err = run_cli(["--model", model_dir, "--input_dir", inputs, "--output_dir", tmp_path / "out"])
    assert_one_line_error(code, err, "no mask for", "lonely_mask.png")
    assert not (tmp_path / "out").exists()


def test_console_entry_point_without_a_traceback(model_dir, tmp_path):
    composite, _ = write_pair(tmp_path, "photo", 30, 30)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "lemart_hf.cli",
        "--model",
        str(model_dir),
        str(composite),
        "missing.png",
        "-o",
        "x.png",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=environment, cwd=tmp_path, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["lemart-harmonize: error: file not found: missing.png"]
