"""A release is a complete hub repository (DESIGN.md §5b): the one writer of such a folder, its model card, and the
upload of training runs to the Hub.

`save_hub_folder` writes every folder the project makes for people to load (the final models of
`examples/run_pretrain.py` / `run_finetune.py` and their `--push_to_hub` uploads, `examples/release_model.py`,
`model_cards/*`):

    config.json               the config, with `auto_map` (Auto classes -> the model code below) and
                              `custom_pipelines` ("image-harmonization" -> the pipeline code below)
    model.safetensors         the weights (optionally stored in float16 / bfloat16; config.json keeps the model's dtype)
    preprocessor_config.json  the image processor: the working size the network runs at
    *.py                      the source of the model, its config, the processor and the pipeline, with everything
                              they import relatively (`hub_code_files`): lemart_hf itself is not needed to load it
    README.md                 the model card (`model_card`)

so that, with only torch, transformers >= 5, safetensors, pillow and numpy installed,
``pipeline(model=folder_or_hub_id, trust_remote_code=True)`` builds the "image-harmonization" pipeline (config.json
names the task, so none has to be given) and returns what lemart_hf's own pipeline returns, at any image size.

With lemart_hf installed, ``pipeline("image-harmonization", model=..., pipeline_class=ImageHarmonizationPipeline)``
runs the installed code instead: transformers insists on `trust_remote_code` or an explicit `pipeline_class` for
any model whose config declares a custom pipeline.

The card's `pipeline_tag` is ``image-to-image``: the Hub's task for image-in, image-out models, under which the
Hub lists the model. transformers 5 removed its pipeline of that name, but `pipeline()` never gets there for these
folders: it reads the task from config.json's `custom_pipelines` before it would look at the Hub's tag.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .evaluation import ALL
from .models.architectures import architecture_of_config
from .models.swinih import SwinIHImageProcessor
from .pipelines import ImageHarmonizationPipeline

#: The pipeline task a hub folder declares in config.json's `custom_pipelines`.
TASK = "image-harmonization"
#: The card's `pipeline_tag`: the Hub's task for image-in, image-out models (see the module docstring).
PIPELINE_TAG = "image-to-image"
#: The oldest transformers that loads the remote code (its `initialization` module and `dtype` argument are 5.x).
TRANSFORMERS_FLOOR = "transformers>=5"
#: What training runs leave out of their uploads of --output_dir: checkpoints, logs, intermediate sample grids and
#: unfinished writes.
HUB_IGNORE_PATTERNS = ("checkpoint-*", "logs/**", "samples/**", "*.tmp", "*.tmp/**")
#: Where `--hub_strategy checkpoint` puts the newest checkpoint in the repository (as transformers' Trainer does).
LAST_CHECKPOINT = "last-checkpoint"
#: When a training run uploads (`--hub_strategy`, as in transformers' Trainer): only the final model; also the model
#: as of every checkpoint save; also the checkpoint itself, as last-checkpoint/, to resume elsewhere.
HUB_STRATEGIES = ("end", "every_save", "checkpoint")
_STAGING = ".hub-folder.tmp"
#: Card sections `model_card` writes itself; any other section of a card is a note (data, limitations, ...).
_GENERATED_SECTIONS = ("Results", "Samples", "Usage", "Training recipe", "Command", "License", "Citation")
_RECIPE_ROW = re.compile(r"^\| `(?P<key>[^`]+)` \| `(?P<value>.*)` \|$")
_CODE_BLOCK = re.compile(r"```[a-z]*\n(?P<code>.*?)\n```", re.S)
# An absolute path: "/" at the start of a token (not inside a URL, a fraction or a relative path), then non-space.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/-])/[^\s`'\"|(),;]+")


# ======================================================================================================
# The folder


def hub_code_files(model_class: type) -> dict[str, Path]:
    """The source files a hub folder of ``model_class`` holds, ``{file name: source path in lemart_hf}``.

    The modules of the model, its config, the image processor (`SwinIHImageProcessor`, shared by every
    architecture) and the pipeline, each with the files it imports
    relatively (found by transformers' own rule, `get_relative_import_files`, which is also what makes
    `save_pretrained` copy them). Symbolic links in lemart_hf resolve to the files they point to.
    """
    from transformers.dynamic_module_utils import get_relative_import_files

    files: dict[str, Path] = {}
    for cls in (model_class, model_class.config_class, SwinIHImageProcessor, ImageHarmonizationPipeline):
        module_file = sys.modules[cls.__module__].__file__
        for path in (module_file, *get_relative_import_files(module_file)):
            files[Path(path).name] = Path(path).resolve()
    return dict(sorted(files.items()))


def save_hub_folder(
    folder: str | os.PathLike,
    model,
    image_processor,
    card: str,
    *,
    files: Mapping[str, str | bytes | Path] | None = None,
    storage_dtype: torch.dtype | None = None,
) -> list[str]:
    """Write ``folder`` as a complete hub repository (the module docstring lists its files); returns their names.

    Args:
        folder: the folder to write (created if needed); files of other names in it are left alone.
        model: a lemart_hf harmonization model (`...ForHarmonization`, unwrapped from DDP / compile), any device.
        image_processor: its `SwinIHImageProcessor` (the working size).
        card: README.md, e.g. from `model_card`.
        files: further files, ``{relative name: text, bytes or a Path to copy}`` (train_results.json, a sample grid).
        storage_dtype: store the weights in this dtype (e.g. ``torch.float16`` to halve the download); config.json
            keeps the model's own dtype, so `from_pretrained` returns the model as it was. Default: as they are.

    The files are written into a staging folder inside ``folder`` and then moved in one by one, README.md last, so
    an interrupted write leaves each file either old or new, and a folder with the new card holds every new file.
    Config, weights, processor and code are written by transformers' own `Pipeline.save_pretrained` (of an
    `ImageHarmonizationPipeline` around ``model``), which is what adds `custom_pipelines`; as with that method,
    ``model.config`` keeps the entry afterwards.
    """
    folder = Path(folder)
    staging = folder / _STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    state_dict = None
    if storage_dtype is not None:
        state_dict = {name: tensor.to(storage_dtype) for name, tensor in model.state_dict().items()}
    pipeline = ImageHarmonizationPipeline(model=model, image_processor=image_processor, device=model.device)
    # What save_pretrained declares in custom_pipelines: the registered task without its "default" model, a folder
    # inside this installation that means nothing where the folder is loaded.
    registered = ImageHarmonizationPipeline._registered_impl[TASK]
    pipeline._registered_impl = {TASK: {key: value for key, value in registered.items() if key != "default"}}
    # state_dict reaches model.save_pretrained; the image processor's save_pretrained ignores it (push_to_hub only).
    pipeline.save_pretrained(staging, state_dict=state_dict)
    (staging / "README.md").write_text(card, encoding="utf-8")
    for name, content in (files or {}).items():
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, (bytes, bytearray)):
            target.write_bytes(content)
        elif isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_text(content, encoding="utf-8")
    names = sorted(p.relative_to(staging) for p in staging.rglob("*") if p.is_file())
    names.sort(key=lambda name: str(name) == "README.md")  # last
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, folder / name)
    shutil.rmtree(staging, ignore_errors=True)
    return [str(name) for name in names]


def check_hub_folder(folder: str | os.PathLike) -> list[str]:
    """What keeps ``folder`` from being a complete, current hub repository (empty when nothing): missing files, a
    config without the pipeline entry, code copies that differ from this lemart_hf's source or that it no longer
    has."""
    folder = Path(folder)
    problems = [f"no {name}" for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md")
                if not (folder / name).is_file()]  # fmt: skip
    if problems:
        return problems
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    pipeline_entry = (getattr(config, "custom_pipelines", None) or {}).get(TASK, {})
    if pipeline_entry.get("impl") != "image_harmonization.ImageHarmonizationPipeline":
        problems.append(f"config.json declares no custom pipeline {TASK!r}")
    expected = hub_code_files(architecture_of_config(config).model_class)
    present = {path.name for path in folder.glob("*.py")}
    problems += [f"{name} is missing" for name in sorted(set(expected) - present)]
    problems += [f"{name} is not lemart_hf's code" for name in sorted(present - set(expected))]
    problems += [
        f"{name} differs from {source}"
        for name, source in expected.items()
        if name in present and (folder / name).read_bytes() != source.read_bytes()
    ]
    return problems


# ======================================================================================================
# The model card


@dataclass
class CardMetric:
    """One model-index entry: a metric on a dataset."""

    name: str  # e.g. "PSNR"
    type: str  # e.g. "psnr"
    value: float
    dataset_name: str
    dataset_type: str
    dataset_split: str | None = None
    dataset_config: str | None = None  # e.g. the subset


#: The metrics of an evaluation table that go into a card: (display name, key).
CARD_METRICS = (("PSNR", "psnr"), ("MSE", "mse"), ("fPSNR", "fpsnr"), ("fMSE", "fmse"))


def results_metrics(
    table: Mapping[str, Mapping[str, float]], dataset_type: str, dataset_name: Callable[[str | None], str]
) -> list[CardMetric]:
    """model-index entries of an evaluation table (`HarmonizationResults.table`: subset rows and "All"), test split.

    Each metric once per dataset: "All", plus the subset rows when there are several; with a single subset only
    its row (named by the subset, whose numbers "All" repeats). ``dataset_name(subset)`` names a row's dataset,
    ``dataset_name(None)`` the "All" row.
    """
    subsets = [row for row in table if row != ALL]
    rows = [(subsets[0], table[ALL])] if len(subsets) == 1 else [(None, table[ALL])] + [(s, table[s]) for s in subsets]
    return [
        CardMetric(label, key, values[key], dataset_name(subset), dataset_type, "test", dataset_config=subset)
        for subset, values in rows
        for label, key in CARD_METRICS
    ]


def portable_text(text: str) -> str:
    """``text`` with every absolute local path rewritten relative to the current directory (a card names no
    absolute path of the machine it was made on). A path counts when its first component exists under ``/``."""

    def relative(match: re.Match) -> str:
        path = match.group(0)
        first = path.strip("/").split("/", 1)[0]
        return os.path.relpath(path) if first and os.path.exists("/" + first) else path

    return _ABSOLUTE_PATH.sub(relative, text)


#: What the sample grids of the training scripts show (`model_card`'s default ``sample_caption``).
SAMPLE_CAPTION = "Columns: composite | mask | prediction | original."


def model_card(
    *,
    model_name: str,
    summary: str,
    metrics: Sequence[CardMetric],
    recipe: Mapping[str, object],
    command: str,
    license: str,
    license_reason: str,
    results_markdown: str = "",
    notes: str = "",
    base_model: str | None = None,
    datasets: Sequence[str] = (),
    extra_tags: Iterable[str] = (),
    sample_image: str | None = None,
    sample_caption: str = SAMPLE_CAPTION,
) -> str:
    """README.md of a hub folder: YAML front matter the Hub reads, then the body.

    Front matter: `license` (a Hub licence id; ``"other"`` adds a `license_name`), `library_name: transformers`,
    `pipeline_tag: image-to-image` (see the module docstring), `tags`, `base_model`, `datasets` (Hub dataset ids)
    and a model-index with ``metrics`` (non-finite values left out; a metric given twice for one dataset and split
    is an error). Body: the summary, results, samples, usage without lemart_hf (the transformers version floor
    included), the training recipe and exact command, the ``notes`` (Markdown sections: data, limitations), the
    licence and why (``license_reason``), the citation. Absolute local paths become relative ones.

    Raises:
        ValueError: a metric is listed twice.
    """
    from huggingface_hub import EvalResult, ModelCardData

    seen: set[tuple] = set()
    eval_results = []
    for m in metrics:
        if m.value is None or not math.isfinite(m.value):
            continue
        key = (m.dataset_name, m.dataset_type, m.dataset_split, m.dataset_config, m.type)
        if key in seen:
            raise ValueError(f"metric {m.type!r} listed twice for {m.dataset_name!r} ({m.dataset_split})")
        seen.add(key)
        eval_results.append(
            EvalResult(
                task_type=PIPELINE_TAG,
                task_name="Image Harmonization",
                dataset_type=m.dataset_type,
                dataset_name=m.dataset_name,
                dataset_split=m.dataset_split,
                dataset_config=m.dataset_config,
                metric_type=m.type,
                metric_name=m.name,
                metric_value=round(float(m.value), 4),
            )
        )
    card_data = ModelCardData(
        license=license,
        license_name="training-data-terms" if license == "other" else None,
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        tags=list(dict.fromkeys([TASK, "lemart", "lemart_hf", *extra_tags])),
        base_model=base_model,
        datasets=list(datasets) or None,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    recipe_rows = "\n".join(f"| `{k}` | `{v}` |" for k, v in recipe.items())
    sections = [f"---\n{card_data.to_yaml()}\n---\n", f"# {model_name}\n", summary.strip() + "\n"]
    if results_markdown:
        sections.append("## Results\n\n" + results_markdown.strip() + "\n")
    if sample_image:
        sections.append(
            f"## Samples\n\n{sample_caption}\n\n![samples]({sample_image})\n"
        )
    sections += [
        (
            "## Usage\n\n"
            f"Needs only `torch`, `{TRANSFORMERS_FLOOR}`, `safetensors`, `pillow` and `numpy`: the code of the model, "
            "its image processor and the pipeline is in this repository, hence `trust_remote_code=True`.\n\n"
            "```python\n"
            "from transformers import pipeline\n\n"
            f'pipe = pipeline(model="{model_name}", trust_remote_code=True)  # task "{TASK}", named in config.json\n'
            'harmonized = pipe("composite.jpg", "mask.png")  # PIL image of the composite\'s size\n'
            "```\n\n"
            "The mask is white (or 1) on the region to harmonize; soft edges are allowed. Any image size: the network "
            "runs at its working size (preprocessor_config.json) and its correction is carried to full resolution by a "
            "local colour transform; outside the mask the output equals the input. Batches: "
            '`pipe([img1, img2], [mask1, mask2], batch_size=2)`; `output_type="pt"` or `"np"` for float output.\n\n'
            f"`pipeline_tag: {PIPELINE_TAG}` lists the model under that Hub task; transformers 5 has no pipeline of "
            "that name and needs none here, as config.json names the task. With lemart_hf installed, "
            f'`pipeline("{TASK}", model="{model_name}", pipeline_class=lemart_hf.ImageHarmonizationPipeline)` runs '
            "the installed code instead of the copies here.\n\n"
            "The model and its processor alone:\n\n"
            "```python\n"
            "from transformers import AutoImageProcessor, AutoModelForImageToImage\n\n"
            f'model = AutoModelForImageToImage.from_pretrained("{model_name}", trust_remote_code=True)\n'
            f'processor = AutoImageProcessor.from_pretrained("{model_name}", trust_remote_code=True)\n'
            "inputs = processor(images=composite, masks=mask)  # pixel_values (1, 4, h, w) at the working size\n"
            "outputs = model(pixel_values=inputs['pixel_values'])  # outputs.harmonized (1, 3, h, w) in [0, 1]\n"
            "harmonized = processor.post_process_harmonization(outputs, target_sizes=inputs['original_sizes'])[0]\n"
            "```\n"
        ),
        "## Training recipe\n\n| setting | value |\n| --- | --- |\n" + recipe_rows + "\n",
        "## Command\n\n```bash\n" + command + "\n```\n",
    ]
    if notes:
        sections.append(notes.strip() + "\n")
    sections += [
        f"## License\n\n`{license}`. {license_reason.strip()}\n",
        (
            "## Citation\n\n"
            "```bibtex\n"
            "@inproceedings{liu2023lemart,\n"
            "  title     = {LEMaRT: Label-Efficient Masked Region Transform for Image Harmonization},\n"
            "  author    = {Liu, Sheng and Huynh, Cong Phuoc and Chen, Cong and Arap, Maxim and Hamid, Raffay},\n"
            "  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},\n"
            "  year      = {2023}\n"
            "}\n"
            "```\n"
        ),
    ]
    return portable_text("\n".join(sections))


@dataclass
class CardParts:
    """What `read_card` recovers of a card written by `model_card`: enough to write it again."""

    model_name: str | None
    summary: str
    results_markdown: str
    notes: str
    recipe: dict[str, str]
    command: str
    metrics: list[CardMetric]
    base_model: str | None
    license: str | None
    tags: list[str]
    sample_caption: str = SAMPLE_CAPTION


def read_card(path: str | os.PathLike) -> CardParts:
    """Parse a README.md written by `model_card` (front matter with huggingface_hub, sections by their headings).

    Metrics that an older card listed twice for one dataset and split (a single subset's row and "All") are read
    once.
    """
    from huggingface_hub import ModelCard

    card = ModelCard.load(path)
    lines, fenced = card.text.strip().splitlines(), False
    title, summary, sections, current = None, [], {}, None
    for line in lines:
        fenced ^= line.startswith("```")
        if not fenced and line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif not fenced and line.startswith("# ") and title is None:
            title = line[2:].strip()
        elif current is None:
            summary.append(line)
        else:
            sections[current].append(line)
    text = {heading: "\n".join(body).strip() for heading, body in sections.items()}
    recipe = {m["key"]: m["value"] for m in map(_RECIPE_ROW.match, text.get("Training recipe", "").splitlines()) if m}
    command = _CODE_BLOCK.search(text.get("Command", ""))
    notes = [f"## {heading}\n\n{body}" for heading, body in text.items() if heading not in _GENERATED_SECTIONS]
    metrics, seen = [], set()
    for r in card.data.eval_results or []:
        key = (r.dataset_name, r.dataset_type, r.dataset_split, r.metric_type)
        if key not in seen:
            seen.add(key)
            metrics.append(
                CardMetric(
                    r.metric_name or r.metric_type, r.metric_type, r.metric_value, r.dataset_name, r.dataset_type,
                    r.dataset_split, r.dataset_config,
                )  # fmt: skip
            )
    return CardParts(
        model_name=card.data.model_name or title,
        summary="\n".join(summary).strip(),
        results_markdown=text.get("Results", ""),
        notes="\n\n".join(notes),
        recipe=recipe,
        command=command["code"] if command else "",
        metrics=metrics,
        base_model=card.data.base_model,
        sample_caption=text.get("Samples", "").split("\n\n![samples]")[0].strip() or SAMPLE_CAPTION,
        license=card.data.license,
        tags=list(card.data.tags or []),
    )


def base_model_name(name_or_path: str | None) -> str | None:
    """What a model to start from was released as: a Hub id as given; for a local folder, the name its card gives
    (the repository it was pushed to, or would have been); None without one."""
    if not name_or_path or not os.path.isdir(name_or_path):
        return name_or_path or None
    card = Path(name_or_path) / "README.md"
    return read_card(card).model_name if card.is_file() else None


# ======================================================================================================
# Uploads


class HubRepo:
    """A model repository on the Hub that a training run uploads to.

    Constructing it creates the repository if needed and checks that the token may write to it, so a missing or
    read-only token, or a namespace the user cannot write to, stops a run before its first step rather than after
    it. `repo_id` is the full id ("user/name") even when a bare name was given.

    Raises:
        huggingface_hub errors (OSError subclasses) or the HTTP client's: no token, no access, no connection.
    """

    def __init__(self, repo_id: str, *, token: str | None = None, private: bool = False):
        from huggingface_hub import HfApi

        self.api = HfApi(token=token)
        self.repo_id = self.api.create_repo(repo_id, exist_ok=True, private=private).repo_id
        self.api.auth_check(self.repo_id, write=True)

    def upload_model(self, folder: str | os.PathLike, commit_message: str):
        """Upload a training run's --output_dir without checkpoints, logs and intermediate samples."""
        return self.api.upload_folder(
            repo_id=self.repo_id,
            folder_path=str(folder),
            commit_message=commit_message,
            ignore_patterns=list(HUB_IGNORE_PATTERNS),  # a copy: upload_folder extends the list it is given
        )

    def upload_checkpoint(self, checkpoint: str | os.PathLike, commit_message: str):
        """Upload a checkpoint folder as `last-checkpoint/` (replacing the files of the previous one)."""
        return self.api.upload_folder(
            repo_id=self.repo_id,
            folder_path=str(checkpoint),
            path_in_repo=LAST_CHECKPOINT,
            commit_message=commit_message,
        )


__all__ = [
    "CARD_METRICS",
    "HUB_IGNORE_PATTERNS",
    "HUB_STRATEGIES",
    "LAST_CHECKPOINT",
    "PIPELINE_TAG",
    "SAMPLE_CAPTION",
    "TASK",
    "TRANSFORMERS_FLOOR",
    "CardMetric",
    "CardParts",
    "HubRepo",
    "base_model_name",
    "check_hub_folder",
    "hub_code_files",
    "model_card",
    "portable_text",
    "read_card",
    "results_metrics",
    "save_hub_folder",
]
