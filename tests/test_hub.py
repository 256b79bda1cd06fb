"""lemart_hf.hub: the one writer of hub folders, their model cards as the Hub reads them, and that the folders (a
freshly written one and the releases in model_cards/) run the pipeline with nothing but transformers installed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results
from safetensors import safe_open
from transformers import pipeline

from lemart_hf import ImageHarmonizationPipeline, SwinIHConfig, SwinIHForHarmonization, SwinIHImageProcessor
from lemart_hf.evaluation import ALL
from lemart_hf.hub import (
    PIPELINE_TAG,
    TASK,
    TRANSFORMERS_FLOOR,
    CardMetric,
    base_model_name,
    check_hub_folder,
    hub_code_files,
    model_card,
    portable_text,
    read_card,
    results_metrics,
    save_hub_folder,
)

MODEL_CARDS = Path(__file__).resolve().parents[1] / "model_cards"
RELEASES = sorted(path for path in MODEL_CARDS.iterdir() if path.is_dir())
FINETUNED = MODEL_CARDS / "swinih-tiny-lemart-houtdoor"
TINY = {"embed_dim": 16, "depths": [1, 1, 2], "num_heads": [2, 2, 4], "window_size": 4}
WORKING_SIZE = 64
#: An absolute path at the start of a token (not a URL's, a fraction's or a relative path's "/").
ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/-])/[A-Za-z]")


def tiny_card(**overrides) -> str:
    kwargs = dict(
        model_name="team/tiny",
        summary="A tiny random model.",
        metrics=[CardMetric("PSNR", "psnr", 30.0, "HTiny", "iharmony4-layout", "test", "HTiny")],
        recipe={"resolution": 64},
        command="python train.py --output_dir /tmp/tiny",
        license="other",
        license_reason="Random weights.",
        notes="## Limitations\n\nNone tested.",
    )
    return model_card(**{**kwargs, **overrides})


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny random SwinIH at a 64x64 working size, written by `save_hub_folder` with float16 storage."""
    torch.manual_seed(0)
    model = SwinIHForHarmonization(SwinIHConfig(**TINY)).eval()
    processor = SwinIHImageProcessor(size={"height": WORKING_SIZE, "width": WORKING_SIZE})
    folder = tmp_path_factory.mktemp("hub") / "tiny"
    written = save_hub_folder(
        folder, model, processor, tiny_card(), files={"notes/extra.txt": "x"}, storage_dtype=torch.float16
    )
    assert written[-1] == "README.md"  # the card last: a folder with the new card has every other new file
    return folder


def composite_and_mask(height: int = 150, width: int = 200):
    """A textured uint8 composite (H, W, 3) and a mask (H, W) with a soft-edged region: non-square and larger than
    the working size, so the pipeline's full-resolution transfer runs."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.clip(np.stack([xx / width, yy / height, 0.5 + 0 * xx], -1) * 200 + rng.integers(0, 55, (height, width, 3)), 0, 255)
    mask = np.zeros((height, width), np.float32)
    mask[30:120, 50:170] = 1.0
    mask[29, 50:170] = mask[120, 50:170] = 0.5
    return image.astype(np.uint8), (mask * 255).astype(np.uint8)


# ----- the folder ------------------------------------------------------------------------------------------------
def test_folder_holds_config_weights_processor_code_and_card(tiny_folder):
    names = {str(p.relative_to(tiny_folder)) for p in tiny_folder.rglob("*") if p.is_file()}
    assert names == {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "notes/extra.txt"} | set(
        hub_code_files(SwinIHForHarmonization)
    )
    assert {"image_harmonization.py", "highres.py", "image_processing_swinih.py", "modeling_swinih.py"} <= names
    config = json.loads((tiny_folder / "config.json").read_text())
    assert config["custom_pipelines"] == {
        TASK: {"impl": "image_harmonization.ImageHarmonizationPipeline", "pt": ["AutoModelForImageToImage"], "type": "image"}
    }  # what transformers' own Pipeline.save_pretrained writes
    assert config["auto_map"]["AutoModelForImageToImage"] == "modeling_swinih.SwinIHForHarmonization"
    assert config["dtype"] == "float32"  # stored small, loaded as the model was
    with safe_open(tiny_folder / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert SwinIHForHarmonization.from_pretrained(tiny_folder).dtype == torch.float32
    assert check_hub_folder(tiny_folder) == []
    assert not list(tiny_folder.glob(".*"))  # no staging folder left


def test_check_hub_folder_names_what_is_missing_or_stale(tiny_folder, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(tiny_folder, folder)
    (folder / "highres.py").write_text((folder / "highres.py").read_text() + "# edited\n")
    (folder / "image_harmonization.py").unlink()
    config = json.loads((folder / "config.json").read_text())
    del config["custom_pipelines"]
    (folder / "config.json").write_text(json.dumps(config))
    assert check_hub_folder(folder) == [
        f"config.json declares no custom pipeline {TASK!r}",
        "image_harmonization.py is missing",
        f"highres.py differs from {hub_code_files(SwinIHForHarmonization)['highres.py']}",
    ]


@pytest.mark.parametrize("release", RELEASES, ids=lambda path: path.name)
def test_model_card_code_copies_equal_the_source(release):
    """Every model_cards/* folder holds exactly the files the writer would copy, byte for byte (re-release it with
    examples/release_model.py after changing the model, processor or pipeline code)."""
    assert check_hub_folder(release) == []


def test_remote_pipeline_without_lemart_hf_equals_the_installed_one(tiny_folder, tmp_path):
    """`pipeline(..., trust_remote_code=True)` in a process that cannot import lemart_hf, at 150x200 (larger than the
    64x64 working size, not square: the full-resolution transfer runs) gives bit for bit the installed pipeline's
    output, with and without the task named; without trust_remote_code it refuses with transformers' message."""
    image, mask = composite_and_mask()
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "mask.npy", mask)
    folders = [tiny_folder, FINETUNED]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the subprocess
    try:
        for index, folder in enumerate(folders):
            pipe = pipeline(TASK, model=str(folder), pipeline_class=ImageHarmonizationPipeline, device="cpu")
            torch.save(pipe(image, mask, output_type="pt"), tmp_path / f"expected_{index}.pt")
    finally:
        torch.set_num_threads(threads)

    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["lemart_hf"] = None  # lemart_hf cannot be imported in this process
        try:
            import lemart_hf
        except ImportError:
            pass
        else:
            raise AssertionError("lemart_hf imported")
        import numpy as np, torch
        from transformers import pipeline
        torch.set_num_threads(1)
        image, mask = np.load({str(tmp_path / "image.npy")!r}), np.load({str(tmp_path / "mask.npy")!r})
        for index, folder in enumerate({[str(f) for f in folders]!r}):
            expected = torch.load({str(tmp_path)!r} + f"/expected_{{index}}.pt")
            for task in ({TASK!r}, None):  # the task named, and read from config.json
                pipe = pipeline(task, model=folder, trust_remote_code=True, device="cpu")
                assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__
                assert type(pipe.model).__module__.startswith("transformers_modules"), type(pipe.model).__module__
                out = pipe(image, mask, output_type="pt")
                assert out.shape == (3, 150, 200), out.shape
                assert torch.equal(out, expected), (out - expected).abs().max()
            try:
                pipeline(model=folder, device="cpu")
            except ValueError as error:
                assert "trust_remote_code=True" in str(error), error
            else:
                raise AssertionError("loaded custom code without trust_remote_code")
            print("remote-ok", folder)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("remote-ok") == len(folders)


# ----- the model card --------------------------------------------------------------------------------------------
def validate_card(path: Path) -> dict:
    """The card as the Hub reads it: huggingface_hub's metadata_load, ModelCard (which rejects an invalid model-index)
    and model-index parsing; returns the metadata."""
    meta = metadata_load(path)
    card = ModelCard.load(path)
    assert meta["license"] and (meta["license"] != "other" or meta["license_name"])
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == PIPELINE_TAG == card.data.pipeline_tag
    assert TASK in meta["tags"] and "lemart" in meta["tags"]
    if "model-index" in meta:
        name, results = model_index_to_eval_results(meta["model-index"])
        assert name == card.data.model_name
        metrics = [(r.dataset_name, r.dataset_type, r.dataset_split, r.metric_type) for r in results]
        assert len(metrics) == len(set(metrics)), "a metric listed twice"
    assert not ABSOLUTE_PATH.search(path.read_text()), ABSOLUTE_PATH.search(path.read_text())
    assert TRANSFORMERS_FLOOR in card.text and "trust_remote_code=True" in card.text
    assert "## License" in card.text and "@inproceedings{liu2023lemart" in card.text
    return meta


@pytest.mark.parametrize("release", RELEASES, ids=lambda path: path.name)
def test_released_cards_validate(release):
    meta = validate_card(release / "README.md")
    assert meta["license"] == "cc-by-nc-4.0"  # trained on research-only photos; the card says why
    if release == FINETUNED:
        assert meta["base_model"] == "swinih-tiny-lemart-pretrained"  # what its start was released as
        assert len(meta["model-index"][0]["results"]) == 1  # HOutdoor test once, not also as "All"


def test_written_card_validates_and_reads_back(tiny_folder):
    meta = validate_card(tiny_folder / "README.md")
    assert meta["license"] == "other" and "base_model" not in meta and "datasets" not in meta
    parts = read_card(tiny_folder / "README.md")
    assert parts.model_name == "team/tiny" and parts.summary == "A tiny random model."
    assert parts.recipe == {"resolution": "64"} and parts.notes == "## Limitations\n\nNone tested."
    assert parts.command == f"python train.py --output_dir {os.path.relpath('/tmp/tiny')}"  # no absolute path
    assert [(m.type, m.value, m.dataset_config) for m in parts.metrics] == [("psnr", 30.0, "HTiny")]
    again = tiny_card(summary=parts.summary, recipe=parts.recipe, command=parts.command, notes=parts.notes)
    assert again == (tiny_folder / "README.md").read_text()


def test_model_card_front_matter():
    card = tiny_card(
        metrics=[
            CardMetric("PSNR", "psnr", 38.5, "HCOCO", "iharmony4", "test", dataset_config="HCOCO"),
            CardMetric("PSNR", "psnr", 37.0, "HFlickr", "iharmony4", "test", dataset_config="HFlickr"),
            CardMetric("fPSNR", "fpsnr", float("nan"), "HFlickr", "iharmony4", "test", dataset_config="HFlickr"),
        ],
        base_model="team/base",
        datasets=["team/photos"],
        license="cc-by-nc-4.0",
    )
    meta = ModelCard(card).data.to_dict()
    assert meta["base_model"] == "team/base" and meta["datasets"] == ["team/photos"] and "license_name" not in meta
    results = meta["model-index"][0]["results"]
    assert [r["dataset"]["name"] for r in results] == ["HCOCO", "HFlickr"]
    assert [m["type"] for m in results[1]["metrics"]] == ["psnr"]  # NaN values are left out
    with pytest.raises(ValueError, match="metric 'psnr' listed twice for 'HCOCO'"):
        tiny_card(metrics=[CardMetric("PSNR", "psnr", v, "HCOCO", "iharmony4", "test") for v in (1.0, 2.0)])


def test_results_metrics_list_each_metric_once():
    row = {"psnr": 30.0, "mse": 50.0, "fpsnr": 20.0, "fmse": 200.0}
    single = results_metrics({"HOutdoor": row, ALL: row}, "iharmony4", lambda subset: subset or "all")
    assert [(m.dataset_name, m.dataset_config, m.type) for m in single] == [
        ("HOutdoor", "HOutdoor", key) for key in ("psnr", "mse", "fpsnr", "fmse")
    ]
    several = results_metrics({"HCOCO": row, "HFlickr": row, ALL: row}, "iharmony4", lambda s: s or "all")
    assert [m.dataset_name for m in several[::4]] == ["all", "HCOCO", "HFlickr"]
    assert [m.dataset_config for m in several[::4]] == [None, "HCOCO", "HFlickr"]


def test_portable_text_rewrites_absolute_local_paths_only(tmp_path):
    text = f"--output_dir {tmp_path}/run --data=../shared/data 1/128 https://huggingface.co/x user/model"
    rewritten = portable_text(text)
    assert not ABSOLUTE_PATH.search(rewritten)
    assert rewritten.endswith("--data=../shared/data 1/128 https://huggingface.co/x user/model")
    assert os.path.normpath(os.path.join(os.getcwd(), rewritten.split()[1])) == str(tmp_path / "run")


def test_base_model_name(tiny_folder, tmp_path):
    assert base_model_name("team/base") == "team/base" and base_model_name(None) is None
    assert base_model_name(str(tiny_folder)) == "team/tiny"  # the name its card gives
    assert base_model_name(str(tmp_path)) is None  # a folder without a card
