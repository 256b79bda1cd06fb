"""ONNX export and ONNX Runtime (`lemart_hf.onnx`, `lemart-harmonize export-onnx`, `--model X.onnx`): the export of
the packaged model matches PyTorch fp32 within 1e-3 on the packaged real composites at full resolution, at any batch
and size; bad input is one line. Tests that run ONNX Runtime skip without the `onnx` extra (through the `packaged_onnx`
fixture, tests/conftest.py); the errors for a missing onnxruntime / onnxscript are checked without it."""

import sys

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from lemart_hf import ImageHarmonizationPipeline
from lemart_hf.default_model import default_model_path
from lemart_hf.gallery import SAMPLE_COMPOSITES_DIR

SAMPLES = sorted(SAMPLE_COMPOSITES_DIR.glob("*.jpg"))


def assert_one_line_error(code, err, *fragments):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("lemart-harmonize: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def sample_pairs(count=None):
    return [{"image": path, "mask": path.with_name(f"{path.stem}_mask.png")} for path in SAMPLES[:count]]


@pytest.fixture(scope="module")
def torch_pipe():
    return pipeline(
        "image-harmonization", model=default_model_path(), pipeline_class=ImageHarmonizationPipeline, device="cpu"
    )


def test_onnx_runtime_matches_pytorch_on_the_sample_composites(packaged_onnx, torch_pipe):
    """Full-resolution outputs of the pipeline (network at 128x128, affine transfer), batched, and at another
    working size (96x160: dynamic height and width)."""
    from lemart_hf.onnx import onnx_pipeline

    onnx_pipe = onnx_pipeline(packaged_onnx)
    expected = torch_pipe(sample_pairs(), output_type="pt")
    got = onnx_pipe(sample_pairs(), output_type="pt", batch_size=3)
    assert [image.shape for image in got] == [image.shape for image in expected]
    assert max(float((a - b).abs().max()) for a, b in zip(got, expected)) <= 1e-3
    expected = torch_pipe(sample_pairs(2), output_type="pt", working_size=(96, 160))
    got = onnx_pipe(sample_pairs(2), output_type="pt", working_size=(96, 160))
    assert max(float((a - b).abs().max()) for a, b in zip(got, expected)) <= 1e-3


def test_onnx_model_takes_any_batch_and_size(packaged_onnx, torch_pipe):
    """Sizes the graph does not take (not multiples of 32) are padded and cropped as the PyTorch model does."""
    from lemart_hf.onnx import OnnxHarmonizationModel

    model = OnnxHarmonizationModel(packaged_onnx)
    assert model.working_size == (128, 128) and model.config.blend_background
    for batch, height, width in [(1, 40, 72), (3, 64, 96)]:
        pixel_values = torch.rand(batch, 4, height, width)
        with torch.no_grad():
            expected = torch_pipe.model(pixel_values=pixel_values).harmonized
        got = model(pixel_values=pixel_values).harmonized
        assert got.shape == expected.shape and float((got - expected).abs().max()) <= 1e-4
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model(pixel_values=torch.full((1, 4, 64, 64), 255.0))


def test_export_int8_keeps_the_quality(packaged_onnx, torch_pipe, tmp_path, run_cli, monkeypatch):
    """`export-onnx --int8` quantizes the export (the exporter is stubbed with a copy of the session's export, to keep
    this fast): MatMul weights in int8, metadata kept, outputs within 0.05 of PyTorch fp32 (measured: 0.029)."""
    import shutil

    import onnx

    import lemart_hf.onnx
    from lemart_hf.onnx import onnx_pipeline

    monkeypatch.setattr(lemart_hf.onnx, "export_onnx", lambda model, path, size: shutil.copy(packaged_onnx, path))
    output = tmp_path / "int8.onnx"
    code, out, err = run_cli(["export-onnx", output, "--int8"])
    assert code == 0 and out.strip() == str(output) and not err.strip(), err
    assert "MatMulInteger" in {node.op_type for node in onnx.load(output).graph.node}
    got = onnx_pipeline(output)(sample_pairs(), output_type="pt")
    expected = torch_pipe(sample_pairs(), output_type="pt")
    assert max(float((a - b).abs().max()) for a, b in zip(got, expected)) <= 0.05


def test_cli_runs_an_onnx_model(packaged_onnx, tmp_path, run_cli):
    composite, mask = SAMPLES[0], SAMPLES[0].with_name(f"{SAMPLES[0].stem}_mask.png")
    outputs = {name: tmp_path / f"{name}.png" for name in ("onnx", "torch")}
    for name, model in (("onnx", packaged_onnx), ("torch", default_model_path())):
        code, _, err = run_cli(["--model", model, composite, mask, "-o", outputs[name], "--device", "cpu"])
        assert code == 0, err
    onnx, reference = (np.asarray(Image.open(outputs[name]), dtype=int) for name in ("onnx", "torch"))
    assert onnx.shape == reference.shape and np.abs(onnx - reference).max() <= 1


def test_bad_onnx_models_give_one_line(packaged_onnx, tmp_path, run_cli):
    composite, mask = SAMPLES[0], SAMPLES[0].with_name(f"{SAMPLES[0].stem}_mask.png")
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    run = ["--device", "cpu", composite, mask, "-o", tmp_path / "o.png"]
    cases = [
        (["--model", tmp_path / "garbage.onnx", *run], "cannot load the ONNX model"),
        (["--model", packaged_onnx, "--dtype", "bf16", *run], "runs in fp32"),
        (["export-onnx", tmp_path / "o.onnx", "--model", packaged_onnx], "already an ONNX file"),
        (["export-onnx", tmp_path / "o.pt"], "must be a .onnx file"),
    ]
    for args, fragment in cases:
        assert_one_line_error(*run_cli(args)[::2], fragment)


def test_missing_onnx_packages_are_one_line_with_the_pip_command(tmp_path, run_cli, monkeypatch):
    composite, mask = SAMPLES[0], SAMPLES[0].with_name(f"{SAMPLES[0].stem}_mask.png")
    (tmp_path / "model.onnx").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails, as where it is not installed
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    code, _, err = run_cli(["--model", tmp_path / "model.onnx", composite, mask, "-o", tmp_path / "o.png"])
    assert_one_line_error(code, err, "onnxruntime is not installed", 'pip install "lemart_hf[onnx]"')
    code, _, err = run_cli(["export-onnx", tmp_path / "out.onnx"])
    assert_one_line_error(code, err, "onnxscript is not installed", 'pip install "lemart_hf[onnx]"')
    assert not (tmp_path / "out.onnx").exists()


def test_export_refuses_what_it_cannot_match(model_dir, tmp_path):
    """Only SwinIH exports. A working side of at most one window (16 px for the test model: patch 4 x window 4) runs
    unshifted windows in PyTorch, which the graph has not, so it is refused (before onnxscript is needed)."""
    from lemart_hf import SwinIHForHarmonization
    from lemart_hf.onnx import export_onnx

    with pytest.raises(TypeError, match="SwinIH"):
        export_onnx(torch.nn.Linear(4, 3), tmp_path / "never_written.onnx")
    model = SwinIHForHarmonization.from_pretrained(model_dir)
    with pytest.raises(ValueError, match="sides over 16 pixels"):
        export_onnx(model, tmp_path / "never_written.onnx", (16, 64))
    assert not (tmp_path / "never_written.onnx").exists()
