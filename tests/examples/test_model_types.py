"""Both training scripts and run_eval.py work with every architecture (`--model_type` / its presets): LEMaRT
pre-training, fine-tuning from the pre-trained folder, scoring, and the pipeline on the result."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lemart_hf import ARCHITECTURES, ImageHarmonizationPipeline

OTHER_ARCHITECTURES = sorted(name for name in ARCHITECTURES if name != "swinih")


def tiny_preset(name: str) -> str:
    return next(p for p in ARCHITECTURES[name].presets if "tiny" in p)


@pytest.mark.parametrize("name", OTHER_ARCHITECTURES)
def test_pretrain_finetune_eval_and_pipeline(name, tmp_path, photo_folder, iharmony4_root, run_in_process):
    pretrained, finetuned = tmp_path / "pretrained", tmp_path / "finetuned"
    common = ["--resolution", "32", "--train_batch_size", "2", "--logging_steps", "1", "--report_to", "none",
              "--lr_warmup_steps", "1", "--max_train_steps", "2", "--dataloader_num_workers", "0"]  # fmt: skip
    run_in_process(
        "run_pretrain.py",
        common + ["--model_type", name, "--model_config", tiny_preset(name), "--train_dir", str(photo_folder),
                  "--output_dir", str(pretrained), "--num_validation_composites", "2"],
    )  # fmt: skip
    assert (
        json.loads((pretrained / "config.json").read_text())["model_type"]
        == ARCHITECTURES[name].config_class.model_type
    )
    card = (pretrained / "README.md").read_text()
    assert f"({name})" in card and f"- {name}" in card  # the summary and the tags name the architecture

    results = run_in_process(
        "run_finetune.py",
        common + ["--data_dir", str(iharmony4_root), "--model_name_or_path", str(pretrained),
                  "--output_dir", str(finetuned), "--eval_batch_size", "4", "--validation_steps", "0"],
    )  # fmt: skip
    assert json.loads((finetuned / "train_results.json").read_text())["architecture"] == name
    assert np.isfinite(results["test"]["All"]["fpsnr"])

    from transformers import AutoModelForImageToImage, pipeline

    assert type(AutoModelForImageToImage.from_pretrained(finetuned)) is ARCHITECTURES[name].model_class
    from lemart_hf.hub import check_hub_folder

    assert check_hub_folder(finetuned) == [] and check_hub_folder(pretrained) == []  # the code of every architecture
    evaluated = run_in_process(
        "run_eval.py", ["--data_dir", str(iharmony4_root), "--model", str(finetuned), "--num_workers", "0",
                        "--output_dir", str(tmp_path / "eval")],
    )  # fmt: skip
    assert evaluated["working_size"] == [32, 32]  # the model runs at its processor's size, as in the pipeline
    assert evaluated["table"]["All"]["fpsnr"] == pytest.approx(results["test"]["All"]["fpsnr"], abs=1e-4)

    pipe = pipeline("image-harmonization", model=str(finetuned), pipeline_class=ImageHarmonizationPipeline, device="cpu")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    mask = np.zeros((50, 70), np.uint8)
    mask[10:40, 20:60] = 255
    assert pipe(image, Image.fromarray(mask)).size == (70, 50)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_model_type_alone_picks_its_paper_sized_preset(name, iharmony4_root, tmp_path, load_example):
    args = load_example("run_finetune.py").parse_args(
        ["--data_dir", str(iharmony4_root), "--model_type", name, "--output_dir", str(tmp_path)]
    )
    assert args.model_config == ARCHITECTURES[name].config_class.default_preset


def test_model_config_of_another_architecture_is_a_clear_error(iharmony4_root, capsys, load_example):
    with pytest.raises(SystemExit) as exit_info:
        load_example("run_finetune.py").parse_args(
            ["--data_dir", str(iharmony4_root), "--model_type", "vit", "--model_config", "hrnet-tiny"]
        )
    assert exit_info.value.code == 2
    assert "'hrnet-tiny' is a hrnet config, but --model_type is vit" in capsys.readouterr().err


def test_unknown_model_config_lists_every_architectures_presets(iharmony4_root, capsys, load_example):
    with pytest.raises(SystemExit):
        load_example("run_finetune.py").parse_args(["--data_dir", str(iharmony4_root), "--model_config", "nope"])
    err = capsys.readouterr().err
    assert all(tiny_preset(name) in err for name in ARCHITECTURES)
