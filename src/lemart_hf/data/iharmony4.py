"""iHarmony4-layout folders -> `datasets.Dataset`, and the collator that turns its rows into tensors.

Layout (DESIGN.md §3)::

    <root>/<Subset>/composite_images/<real>_<maskid>_<k>.jpg
    <root>/<Subset>/masks/<real>_<maskid>.png
    <root>/<Subset>/real_images/<real>.jpg
    <root>/<Subset>/<Subset>_train.txt, <Subset>_test.txt     (composite file names, one a line)

Some repositories (DoveNet, iS2AM) use one list for all subsets instead: ``<root>/IHD_train.txt`` /
``IHD_test.txt`` with lines ``<Subset>/composite_images/<name>.jpg``. Both are read; any folder with a
``composite_images`` sub-folder is a subset (HCOCO, HAdobe5k, HFlickr, Hday2night, or e.g. HOutdoor).

`load_iharmony4` gives a `datasets.Dataset` with columns ``composite``, ``mask``, ``real`` (`datasets.Image`,
decoded lazily to PIL images on access), ``subset`` and ``name`` (the composite's file name).
`HarmonizationCollator` makes batches of float tensors at the evaluation protocol's size (or random crops
and flips for training), so training, evaluation and the example scripts all read data the same way.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..metrics.protocol import EvalProtocol, apply_protocol, get_protocol, resize_image

#: The four iHarmony4 subsets in the order of the paper's tables.
IHARMONY4_SUBSETS = ("HCOCO", "HAdobe5k", "HFlickr", "Hday2night")
COMPOSITE_DIR, MASK_DIR, REAL_DIR = "composite_images", "masks", "real_images"
_MAX_LISTED_MISSING = 5


def subset_sort_key(name: str) -> tuple[int, str]:
    """Orders subsets as the paper's tables do: HCOCO, HAdobe5k, HFlickr, Hday2night, then the rest by name."""
    return (IHARMONY4_SUBSETS.index(name), "") if name in IHARMONY4_SUBSETS else (len(IHARMONY4_SUBSETS), name)


def find_subsets(root: str | os.PathLike) -> list[str]:
    """Names of the subset folders under ``root`` (those holding a ``composite_images`` folder), in table order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"iHarmony4 root {str(root)!r} is not a directory")
    found = [p.name for p in root.iterdir() if p.is_dir() and (p / COMPOSITE_DIR).is_dir()]
    return sorted(found, key=subset_sort_key)


def split_composite_name(name: str) -> tuple[str, str]:
    """``"a_1_2.jpg"`` -> (real stem ``"a"``, mask stem ``"a_1"``): composite ``<real>_<maskid>_<k>.<ext>``."""
    stem = Path(name).stem
    parts = stem.rsplit("_", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"composite name {name!r} does not follow iHarmony4's <real>_<maskid>_<k>.<ext>")
    return parts[0], f"{parts[0]}_{parts[1]}"


class _FolderIndex:
    """File names of one folder, listed once: exact names plus stem -> name (to tolerate .jpg/.png swaps)."""

    def __init__(self, folder: Path):
        self.folder = folder
        names = sorted(os.listdir(folder)) if folder.is_dir() else []
        self.names = set(names)
        self.by_stem: dict[str, str] = {}
        for n in names:
            self.by_stem.setdefault(os.path.splitext(n)[0], n)

    def resolve(self, name: str, preferred_ext: str | None = None) -> str | None:
        if preferred_ext is not None:
            if name + preferred_ext in self.names:
                return str(self.folder / (name + preferred_ext))
            found = self.by_stem.get(name)
        else:
            found = name if name in self.names else self.by_stem.get(os.path.splitext(name)[0])
        return None if found is None else str(self.folder / found)


def _read_list(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]


def _subset_list_file(root: Path, subset: str, split: str) -> Path | None:
    for candidate in (root / subset / f"{subset}_{split}.txt", root / f"{subset}_{split}.txt"):
        if candidate.is_file():
            return candidate
    return None


def _parse_list_line(line: str, default_subset: str | None, list_path: Path) -> tuple[str, str]:
    """A list line -> (subset, composite file name). Plain ``name.jpg`` needs ``default_subset``."""
    parts = Path(line.replace("\\", "/")).parts
    if len(parts) == 1:
        if default_subset is None:
            raise ValueError(
                f"{list_path}: line {line!r} names no subset; use '<Subset>/composite_images/<name>' lines "
                f"or select exactly one subset"
            )
        return default_subset, parts[0]
    if len(parts) >= 3 and parts[-2] == COMPOSITE_DIR:
        return parts[-3], parts[-1]
    if len(parts) == 2:  # "<Subset>/<name>"
        return parts[0], parts[1]
    raise ValueError(f"{list_path}: cannot read line {line!r}; expected '<name>' or '<Subset>/composite_images/<name>'")


def _collect_entries(
    root: Path, subsets: Sequence[str], split: str, list_file: str | os.PathLike | None
) -> list[tuple[str, str]]:
    """(subset, composite name) pairs in list order."""
    if list_file is not None:
        path = Path(list_file)
        path = path if path.is_absolute() or path.is_file() else root / path
        if not path.is_file():
            raise FileNotFoundError(f"list file {str(list_file)!r} not found (also looked under {str(root)!r})")
        default = subsets[0] if len(subsets) == 1 else None
        entries = [_parse_list_line(line, default, path) for line in _read_list(path)]
        return [e for e in entries if e[0] in subsets]

    entries: list[tuple[str, str]] = []
    missing_lists = []
    for subset in subsets:
        path = _subset_list_file(root, subset, split)
        if path is None:
            missing_lists.append(subset)
            continue
        entries.extend(_parse_list_line(line, subset, path) for line in _read_list(path))
    if missing_lists:
        combined = root / f"IHD_{split}.txt"
        if not combined.is_file():
            looked = ", ".join(f"{s}/{s}_{split}.txt" for s in missing_lists[:3])
            raise FileNotFoundError(
                f"no '{split}' list for subset(s) {', '.join(missing_lists)} under {str(root)!r}: looked for "
                f"{looked} (also at the root) and IHD_{split}.txt"
            )
        wanted = set(missing_lists)
        entries.extend(
            e for e in (_parse_list_line(line, None, combined) for line in _read_list(combined)) if e[0] in wanted
        )
    return entries


def _subsample(indices: list[int], fraction: float | None, max_samples: int | None, seed: int) -> list[int]:
    """A seeded uniform ``fraction`` of ``indices`` (list order kept, at least one), then at most ``max_samples``."""
    if fraction is not None and fraction < 1.0:
        keep = max(1, int(round(fraction * len(indices)))) if indices else 0
        chosen = np.random.default_rng(seed).choice(len(indices), size=keep, replace=False)
        indices = [indices[i] for i in sorted(chosen)]
    if max_samples is not None:
        indices = indices[:max_samples]
    return indices


def load_iharmony4(
    root: str | os.PathLike,
    subsets: str | Iterable[str] | None = None,
    split: str = "test",
    *,
    fraction: float | None = None,
    seed: int = 0,
    list_file: str | os.PathLike | None = None,
    max_samples: int | None = None,
):
    """Loads an iHarmony4-layout folder as a `datasets.Dataset`.

    Args:
        root: the folder holding the subset folders (and, in the combined-list style, ``IHD_<split>.txt``).
        subsets: subset folder names (a name or a list); default every folder under ``root`` with a
            ``composite_images`` folder, in table order (HCOCO, HAdobe5k, HFlickr, Hday2night, others by name).
        split: which list to read: ``<Subset>/<Subset>_<split>.txt`` (or ``<root>/<Subset>_<split>.txt``);
            for subsets without one, ``<root>/IHD_<split>.txt`` (lines ``<Subset>/composite_images/<name>``).
        fraction: keep this fraction of each subset's list, a seeded uniform sample without replacement (at
            least one image per subset, list order kept) — for label-efficiency runs (e.g. 0.5 = 50% of labels).
            Sampling per subset keeps the subsets' proportions, as "x% of the labels" does in the paper.
        seed: the seed of that sample. Each subset is sampled with its own generator seeded by ``seed``, so a
            subset's sample is the same whichever other subsets are loaded with it.
        list_file: read this list instead (either line style; relative paths are tried under ``root``). Plain
            names need exactly one subset selected.
        max_samples: keep at most this many images per subset (after ``fraction``), for smoke tests.

    Returns:
        `datasets.Dataset` with columns ``composite``, ``mask``, ``real`` (`datasets.Image`, decoded lazily),
        ``subset`` and ``name`` (the composite's file name), in list order, subsets in the order given.

    Raises:
        FileNotFoundError: ``root`` or a list is missing, no subset folder is found, or files named in a list do
            not exist (one error giving the count and the first few missing paths).
        ValueError: an unknown subset, a malformed list line, a bad ``fraction`` or ``max_samples`` < 1.
    """
    import datasets

    root = Path(root)
    available = find_subsets(root)
    if not available:
        raise FileNotFoundError(
            f"no iHarmony4 subsets under {str(root)!r}: expected folders like <Subset>/{COMPOSITE_DIR}/"
        )
    if subsets is None:
        subsets = available
    else:
        subsets = [subsets] if isinstance(subsets, str) else list(subsets)
        unknown = [s for s in subsets if s not in available]
        if unknown:
            raise ValueError(f"subset(s) {unknown} not found under {str(root)!r}; available: {available}")
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")

    entries = _collect_entries(root, subsets, split, list_file)
    indexes = {
        s: (
            _FolderIndex(root / s / COMPOSITE_DIR),
            _FolderIndex(root / s / MASK_DIR),
            _FolderIndex(root / s / REAL_DIR),
        )
        for s in subsets
    }
    columns: dict[str, list[str]] = {"composite": [], "mask": [], "real": [], "subset": [], "name": []}
    missing: list[str] = []
    for subset in subsets:
        subset_entries = [e for e in entries if e[0] == subset]
        composites, masks, reals = indexes[subset]
        for i in _subsample(list(range(len(subset_entries))), fraction, max_samples, seed):
            name = subset_entries[i][1]
            real_stem, mask_stem = split_composite_name(name)
            found = (composites.resolve(name), masks.resolve(mask_stem, ".png"), reals.resolve(real_stem, ".jpg"))
            expected = (
                root / subset / COMPOSITE_DIR / name,
                root / subset / MASK_DIR / f"{mask_stem}.png",
                root / subset / REAL_DIR / f"{real_stem}.jpg",
            )
            paths = [f if f is not None else str(e) for f, e in zip(found, expected)]
            missing.extend(p for p, f in zip(paths, found) if f is None)
            for key, path in zip(("composite", "mask", "real"), paths):
                columns[key].append(path)
            columns["subset"].append(subset)
            columns["name"].append(name)
    if missing:
        shown = ", ".join(missing[:_MAX_LISTED_MISSING])
        more = f" (and {len(missing) - _MAX_LISTED_MISSING} more)" if len(missing) > _MAX_LISTED_MISSING else ""
        raise FileNotFoundError(
            f"{len(missing)} file(s) named by the '{split}' list(s) under {str(root)!r} do not exist: {shown}{more}"
        )
    if not columns["name"]:
        raise ValueError(f"the '{split}' list(s) under {str(root)!r} name no images for subsets {list(subsets)}")
    features = datasets.Features(
        {
            "composite": datasets.Image(),
            "mask": datasets.Image(),
            "real": datasets.Image(),
            "subset": datasets.Value("string"),
            "name": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(columns, features=features)


def hold_out_photos(dataset, fraction: float):
    """Split `load_iharmony4` rows into (kept, held out) by source photo, for a validation split carved from train.

    A photo (``subset`` + real stem of ``name``, so every composite of one photo lands on the same side) is held
    out when a hash of its name falls below ``fraction``: the split depends on nothing but the names, so it is the
    same for every seed, label fraction and run, and a photo added later does not move the others.

    Args:
        dataset: a `datasets.Dataset` with ``subset`` and ``name`` columns.
        fraction: share of the photos to hold out, in [0, 1).

    Returns:
        ``(kept, held_out)``, both `datasets.Dataset` in the input's row order.
    """
    import hashlib

    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction}")
    photos = [f"{subset}/{split_composite_name(name)[0]}" for subset, name in zip(dataset["subset"], dataset["name"])]
    held_photos = {p for p in photos if int.from_bytes(hashlib.sha256(p.encode()).digest()[:8], "big") < fraction * 2**64}
    if fraction > 0 and not held_photos:
        held_photos = {photos[0]}  # a tiny set still gets a validation photo
    held = [p in held_photos for p in photos]
    kept = [i for i, h in enumerate(held) if not h]
    if not kept:
        raise ValueError(f"holding out {fraction:.0%} of the photos leaves no training pairs")
    return dataset.select(kept), dataset.select([i for i, h in enumerate(held) if h])


# ----------------------------------------------------------------------------------------------------------
# Rows -> tensors


class DataFileError(ValueError):
    """A file of a dataset row cannot be used (unreadable, corrupt or truncated; or images of different sizes in one
    row). The message is one line naming the file."""

    def __init__(self, message: str):
        # A DataLoader worker's error reaches the main process as ``DataFileError(text)``, where text is the worker's
        # traceback ("Caught DataFileError in DataLoader worker process 0. Original Traceback ..."); its last line
        # holds the original message.
        if message.startswith("Caught ") and "Original Traceback" in message:
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message)


def without_image_decoding(dataset):
    """A `datasets.Dataset` with its image columns left undecoded (``{"path", "bytes"}``; metadata only, nothing is
    copied), so that `example_to_tensors` decodes each file itself and names one it cannot read. Anything else
    (a list of rows, a torch dataset) is returned as it is."""
    import datasets

    if not isinstance(dataset, datasets.Dataset):
        return dataset
    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
    return dataset


def _decode(image):
    """A path or an undecoded `datasets.Image` value -> a loaded PIL image; `DataFileError` naming the file."""
    from PIL import Image

    from ..lemart.image_loading import UNREADABLE_IMAGE_ERRORS

    if isinstance(image, dict):
        path, data = image.get("path"), image.get("bytes")
        source = io.BytesIO(data) if data is not None else path
    else:
        path = source = image
    try:
        opened = Image.open(source)
        opened.load()
    except UNREADABLE_IMAGE_ERRORS as error:
        raise DataFileError(f"cannot read image {os.fspath(path) if path else '<bytes>'!r}: {error}") from None
    return opened


def _describe(image) -> str:
    """How a row's image names itself in errors: its path where known (a decoded PIL image keeps its file name)."""
    path = image.get("path") if isinstance(image, dict) else getattr(image, "filename", image)
    return repr(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else "the image"


def pil_to_tensor(image, *, mask: bool = False) -> torch.Tensor:
    """An image -> float tensor in [0, 1]: RGB (3, H, W), or a mask (1, H, W).

    Accepts a PIL image, a path, an undecoded `datasets.Image` value (``{"path", "bytes"}``), or an array /
    tensor already channels first (C, H, W) or (H, W) — uint8 (0..255) or float (taken as [0, 1]). Masks follow
    the image processor's rules (`lemart_hf.models.swinih.image_processing_swinih.to_mask`): 1 / 255 =
    foreground, an integer mask holding only 0 and 1 is a 0/1 mask, a palette mask is foreground where its index
    is not 0.

    Raises:
        DataFileError: a file that cannot be decoded (corrupt, truncated, not an image), named.
    """
    from ..models.swinih.image_processing_swinih import to_mask

    if isinstance(image, (str, os.PathLike, dict)):
        image = _decode(image)
    if mask:
        return to_mask(image if not isinstance(image, np.ndarray) or image.ndim != 3 else torch.as_tensor(image))
    if isinstance(image, (torch.Tensor, np.ndarray)):
        x = torch.as_tensor(image)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        return x.unsqueeze(0) if x.ndim == 2 else x
    array = np.array(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def example_to_tensors(example: dict) -> dict[str, torch.Tensor]:
    """One dataset row -> ``{"composite" (3, H, W), "mask" (1, H, W), "real" (3, H, W)}`` at the original size,
    float in [0, 1] (mask not thresholded).

    Raises:
        DataFileError: an unreadable file, or a real image or mask whose size differs from the composite's (a
            mismatched mask would be stretched over the wrong pixels; the pipeline refuses it too).
    """
    composite = pil_to_tensor(example["composite"])
    real = pil_to_tensor(example["real"])
    mask = pil_to_tensor(example["mask"], mask=True)
    for key, tensor in (("real", real), ("mask", mask)):
        if tensor.shape[-2:] != composite.shape[-2:]:
            raise DataFileError(
                f"{example.get('name', '?')}: the {key} {_describe(example[key])} is {tensor.shape[-1]}x"
                f"{tensor.shape[-2]} but the composite {_describe(example['composite'])} is {composite.shape[-1]}x"
                f"{composite.shape[-2]} (width x height)"
            )
    return {"composite": composite, "mask": mask, "real": real}


def random_resized_crop_flip(
    tensors: dict[str, torch.Tensor],
    size: tuple[int, int],
    *,
    scale: tuple[float, float] = (0.5, 1.0),
    hflip_p: float = 0.5,
    antialias: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """The same random crop (area fraction in ``scale``, the image's aspect ratio) and horizontal flip applied
    to every (C, H, W) tensor in ``tensors``, then a bilinear resize to ``size`` — the usual iHarmony4
    training augmentation (iS2AM: RandomResizedCrop(scale=(0.5, 1)) + HorizontalFlip). Masks stay soft."""
    first = next(iter(tensors.values()))
    height, width = first.shape[-2:]
    area = float(torch.empty(1).uniform_(scale[0], scale[1], generator=generator))
    crop_h = max(1, min(height, int(round(height * math.sqrt(area)))))
    crop_w = max(1, min(width, int(round(width * math.sqrt(area)))))
    top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
    flip = bool(torch.rand(1, generator=generator) < hflip_p)
    out = {}
    for key, x in tensors.items():
        x = x[..., top : top + crop_h, left : left + crop_w]
        if flip:
            x = x.flip(-1)
        out[key] = resize_image(x.contiguous(), size, antialias)
    return out


class HarmonizationCollator:
    """Batches `load_iharmony4` rows into tensors at a fixed size.

    Evaluation (default): each sample is brought to the protocol with `lemart_hf.metrics.apply_protocol` — the
    one resizing function of the evaluation protocol — so batch tensors are exactly what the metrics use.
    Training (``train=True``): a random resized crop and flip per sample (`random_resized_crop_flip`), then
    the protocol's mask treatment (thresholded for ``default``).

    Output batch::

        composite (B, 3, H, W), real (B, 3, H, W): float in [0, 1]
        mask (B, 1, H, W): float, 1 = foreground (binary under the default protocol)
        pixel_values (B, 4, H, W): cat([composite, mask]) — the model input of the package's contract
        original_size (B, 2): long, (height, width) before resizing
        subset, name: lists of str

    Args:
        protocol: ``"default"``, ``"is2am"`` or an `EvalProtocol` (its ``size`` is the output size).
        size: overrides the protocol's size (e.g. for training at another resolution).
        train: random crop + flip instead of the plain resize.
        crop_scale, hflip_p: the training augmentation's parameters.
    """

    def __init__(
        self,
        protocol: str | EvalProtocol = "default",
        *,
        size: int | tuple[int, int] | None = None,
        train: bool = False,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        hflip_p: float = 0.5,
    ):
        protocol = get_protocol(protocol)
        if size is not None:
            size = (size, size) if isinstance(size, int) else tuple(size)
            protocol = EvalProtocol(**{**protocol.to_dict(), "size": size, "name": protocol.name})
        self.protocol = protocol
        self.train = train
        self.crop_scale = crop_scale
        self.hflip_p = hflip_p

    def __call__(self, examples: list[dict]) -> dict:
        composites, masks, reals, sizes = [], [], [], []
        for example in examples:
            t = example_to_tensors(example)
            sizes.append(tuple(t["composite"].shape[-2:]))
            if self.train:
                t = random_resized_crop_flip(
                    t,
                    self.protocol.size,
                    scale=self.crop_scale,
                    hflip_p=self.hflip_p,
                    antialias=self.protocol.antialias,
                )
            composite, mask, real = apply_protocol(t["composite"], t["mask"], t["real"], self.protocol)
            composites.append(composite)
            masks.append(mask)
            reals.append(real)
        composite = torch.stack(composites)
        mask = torch.stack(masks)
        return {
            "composite": composite,
            "mask": mask,
            "real": torch.stack(reals),
            "pixel_values": torch.cat([composite, mask], dim=1),
            "original_size": torch.tensor(sizes, dtype=torch.long),
            "subset": [e.get("subset", "") for e in examples],
            "name": [e.get("name", "") for e in examples],
        }
