"""`lemart-harmonize`: harmonize composites from the command line with the "image-harmonization" pipeline.

    lemart-harmonize composite.jpg mask.png -o harmonized.png      # the packaged default model, offline
    lemart-harmonize --model PATH_OR_ID composite.jpg mask.png -o harmonized.png
    lemart-harmonize --model PATH_OR_ID --input_dir composites/ --output_dir harmonized/
    lemart-harmonize --dtype bf16 composite.jpg mask.png -o harmonized.png   # bfloat16 weights: CPUs with AVX512-BF16
    lemart-harmonize export-onnx swinih.onnx [--model PATH_OR_ID] [--int8] # ONNX export (lemart_hf.onnx)
    lemart-harmonize --model swinih.onnx composite.jpg mask.png -o harmonized.png   # run it in ONNX Runtime

Folder mode takes every image `NAME.EXT` in `--input_dir` whose mask `NAME_mask.png` lies beside it and writes
`NAME.png` into `--output_dir`. Inputs are checked (mask present, sizes equal, headers readable) before the model is
loaded, so a bad input fails fast with one line `lemart-harmonize: error: ...` and exit code 2; nothing is written
over an input file. In folder mode, a composite or mask that cannot be decoded (corrupt, truncated) is skipped with
a warning that counts the skipped ones, the others are harmonized, and the run ends with exit code 2 and one line
listing what was skipped. Outputs have the composite's size (EXIF orientation applied), whatever the model's working
size; each is written to a temporary file beside it and renamed, so an interrupted run leaves no truncated image.
Masks: white / 255 (or 1 in a 0/1 mask; any non-zero index of a palette mask) = the region to harmonize.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from .cpu_features import cpu_has_fast_bf16
from .data.composite_folders import composite_paths, mask_path
from .default_model import DEFAULT_MODEL_NAME, default_model_path
from .lemart.image_loading import IMAGE_EXTENSIONS
from .onnx import is_onnx_path, require_module

PROG = "lemart-harmonize"
EXIT_BAD_INPUT = 2
EXPORT_COMMAND = "export-onnx"
#: --dtype short names -> torch dtype names (which --dtype takes too).
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class InputError(Exception):
    """A problem with what the user passed: reported as one line, exit code 2."""


class UnreadableImageError(InputError):
    """An input image that cannot be decoded: fatal in single-image mode, skipped in folder mode."""


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        _fail(f"{message} (see {self.prog} --help)")


def _fail(message: str):
    first_line = " ".join(str(message).split())
    print(f"{PROG}: error: {first_line}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=PROG,
        description="Harmonize the masked region of composite images (LEMaRT / SwinIH) at their own resolution.",
        epilog=f"{PROG} {EXPORT_COMMAND} OUT.onnx [--model X] exports a model for ONNX Runtime (see {PROG} "
        f"{EXPORT_COMMAND} --help); run it with --model OUT.onnx.",
    )
    parser.add_argument("composite", nargs="?", help="composite image (single-image mode)")
    parser.add_argument(
        "mask",
        nargs="?",
        help="its mask: white (or 1 in a 0/1 mask, any non-zero palette index) = the region to harmonize, soft edges "
        "allowed",
    )
    parser.add_argument(
        "--model",
        default=None,
        help=f"model folder or Hugging Face Hub id (default: the packaged {DEFAULT_MODEL_NAME}, offline)",
    )
    parser.add_argument("-o", "--output", help="output image (single-image mode); format from its extension")
    parser.add_argument("--input_dir", help="folder mode: composites NAME.EXT with masks NAME_mask.png")
    parser.add_argument("--output_dir", help="folder mode: where NAME.png are written (created if needed)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps, ... (default: the first GPU if any, else cpu)")
    parser.add_argument(
        "--dtype",
        help="weights and activations: fp32 (default), bf16 (GPUs, and CPUs with AVX512-BF16 or AMX) or fp16 (GPUs); "
        "an .onnx model runs in fp32",
    )
    parser.add_argument(
        "--size",
        help="working size the model runs at: N or HxW, at least 8 (default: the model's image processor size)",
    )
    parser.add_argument(
        "--method",
        choices=("affine", "offset", "resize"),
        default="affine",
        help="how the correction reaches full resolution (default: affine, a local colour transform)",
    )
    parser.add_argument("--batch_size", type=int, default=1, help="images per forward pass (folder mode)")
    parser.add_argument("--resize_mask", action="store_true", help="resize masks whose size differs from the image's")
    parser.add_argument("--trust_remote_code", action="store_true", help="allow model code from the model folder")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


# ----- checking the inputs (before the model is loaded) ---------------------------------------------------------
def _oriented_size(path: Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, reading only the header; `InputError` if unreadable."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise InputError(f"file not found: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(f"cannot read image {path}: {error}") from error
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _check_pair(composite: Path, mask: Path, resize_mask: bool) -> None:
    image_size, mask_size = _oriented_size(composite), _oriented_size(mask)
    if image_size != mask_size and not resize_mask:
        raise InputError(
            f"{composite} is {image_size[0]}x{image_size[1]} but its mask {mask} is {mask_size[0]}x{mask_size[1]}; "
            "pass --resize_mask to resize the mask"
        )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_output(output: Path, inputs: Sequence[Path]) -> None:
    from PIL import Image

    Image.init()
    if output.suffix.lower() not in Image.EXTENSION:
        raise InputError(f"cannot tell the image format from the output name {output} (use e.g. .png or .jpg)")
    for path in inputs:
        if output.resolve() == path.resolve() or _same_file(output, path):
            raise InputError(f"refusing to overwrite the input file {path}")
    if output.is_dir():
        raise InputError(f"output {output} is a folder; give a file name")


def _single_jobs(args) -> list[tuple[Path, Path, Path]]:
    if args.input_dir or args.output_dir:
        raise InputError("give either COMPOSITE MASK -o OUT or --input_dir/--output_dir, not both")
    if not (args.composite and args.mask):
        raise InputError("give COMPOSITE and MASK (or --input_dir and --output_dir)")
    if not args.output:
        raise InputError("give the output file with -o OUT")
    composite, mask, output = Path(args.composite), Path(args.mask), Path(args.output)
    _check_pair(composite, mask, args.resize_mask)
    _check_output(output, [composite, mask])
    return [(composite, mask, output)]


def _folder_jobs(args, skipped: list[str]) -> list[tuple[Path, Path, Path]]:
    """The (composite, mask, output) triplets of folder mode; pairs whose headers cannot be read are described in
    ``skipped`` (with a counted warning) instead."""
    if args.composite or args.mask or args.output:
        raise InputError("give either COMPOSITE MASK -o OUT or --input_dir/--output_dir, not both")
    if not (args.input_dir and args.output_dir):
        raise InputError("folder mode needs both --input_dir and --output_dir")
    input_dir, output_dir = Path(args.input_dir), Path(args.output_dir)
    if not input_dir.is_dir():
        raise InputError(f"input folder not found: {input_dir}")
    if output_dir.exists() and (not output_dir.is_dir() or _same_file(input_dir, output_dir)):
        raise InputError(f"--output_dir {output_dir} must be a folder other than --input_dir")
    composites = composite_paths(input_dir)
    if not composites:
        raise InputError(f"no composite images ({', '.join(IMAGE_EXTENSIONS)}) in {input_dir}")
    jobs, outputs = [], {}
    for composite in composites:
        mask = mask_path(composite)
        if not mask.is_file():
            raise InputError(f"no mask for {composite}: expected {mask}")
        output = output_dir / f"{composite.stem}.png"
        if output in outputs:
            raise InputError(f"{composite} and {outputs[output]} would both be written to {output}")
        outputs[output] = composite
        try:
            _check_pair(composite, mask, args.resize_mask)
        except UnreadableImageError as error:
            _skip(error, skipped)
            continue
        jobs.append((composite, mask, output))
    return jobs


def _skip(error: Exception, skipped: list[str]) -> None:
    skipped.append(str(error))
    print(f"{PROG}: warning: skipped ({len(skipped)} so far): {error}", file=sys.stderr)


def _parse_size(text: str | None) -> tuple[int, int] | None:
    from .models.swinih.image_processing_swinih import MIN_WORKING_SIZE

    if text is None:
        return None
    try:
        parts = [int(part) for part in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < MIN_WORKING_SIZE:
        raise InputError(f"--size must be N or HxW with integers >= {MIN_WORKING_SIZE}, got {text!r}")
    return (parts[0], parts[-1])


def _check_dtype(text: str | None, device, onnx: bool) -> str | None:
    """The torch dtype name for --dtype (None: the model's own); refuses fp16 on the CPU and any but fp32 for an ONNX
    model, and warns that bf16 is slow on a CPU without native bf16."""
    import torch

    if text is None:
        return None
    name = DTYPES.get(text.lower(), text.lower())
    if name not in DTYPES.values():
        raise InputError(f"--dtype must be fp32, bf16 or fp16, got {text!r}")
    if onnx:
        if name != "float32":
            raise InputError(f"--dtype {text} applies to PyTorch models; an ONNX model runs in fp32")
        return None
    on_cpu = device.type == "cpu" if device is not None else not torch.cuda.is_available()
    if on_cpu and name == "float16":
        raise InputError(
            "--dtype fp16 is not supported on the CPU (no fast fp16 arithmetic there): use bf16 on CPUs with "
            "AVX512-BF16 or AMX, else fp32"
        )
    if on_cpu and name == "bfloat16" and not cpu_has_fast_bf16():
        print(
            f"{PROG}: warning: this CPU has no AVX512-BF16 or AMX: --dtype bf16 is likely slower than fp32",
            file=sys.stderr,
        )
    return name


def _check_device(device: str | None):
    if device is None:
        return None
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as error:
        raise InputError(f"unknown --device {device!r}") from error
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: MPS is not available on this machine")
    return parsed


# ----- running --------------------------------------------------------------------------------------------------
def _check_model(model: str) -> None:
    """A missing local folder fails here, rather than as a Hub lookup (with retries) of a name that is no repo id; so
    does a local folder without a config or with missing, truncated or corrupt weights (`model_path_problem`), and a
    missing .onnx file."""
    from .training import model_path_problem

    if is_onnx_path(model):
        if not Path(model).is_file():
            raise InputError(f"ONNX model file not found: {model}")
        return
    looks_local = model.startswith((".", "/", "~")) or model.count("/") > 1 or (os.sep != "/" and os.sep in model)
    if looks_local and not Path(model).expanduser().exists():
        raise InputError(f"model folder not found: {model}")
    if problem := model_path_problem(model):
        raise InputError(f"model {model!r} {problem}")


def _load_pipeline(args, size, device, dtype):
    import huggingface_hub
    import transformers
    from transformers import pipeline

    from .onnx import onnx_pipeline
    from .pipelines import ImageHarmonizationPipeline

    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.logging.set_verbosity_error()  # no multi-line retry chatter before our one-line error
    options = {"highres_method": args.method}
    if size is not None:
        options["working_size"] = size
    if args.resize_mask:
        options["resize_mask"] = True
    if is_onnx_path(args.model):
        try:
            return onnx_pipeline(args.model, batch_size=args.batch_size, **options)
        except (ImportError, ValueError) as error:  # onnxruntime missing (with the pip command), or a bad file
            raise InputError(str(error)) from error
    if dtype is not None:
        options["dtype"] = dtype
    try:
        # pipeline_class: also folders saved by `pipe.save_pretrained` (which declare the task as custom code)
        # load with the installed lemart_hf, without trust_remote_code.
        return pipeline(
            "image-harmonization",
            model=args.model,
            pipeline_class=ImageHarmonizationPipeline,
            device=device,
            batch_size=args.batch_size,
            trust_remote_code=args.trust_remote_code or None,
            **options,
        )
    except (OSError, ValueError, KeyError) as error:
        raise InputError(f"cannot load the model {args.model!r}: {error}") from error


def _save(image, output: Path) -> None:
    """Write ``image`` to a temporary file beside ``output``, then rename it: ``output`` is whole or untouched."""
    from PIL import Image

    extra = {"quality": 95} if output.suffix.lower() in (".jpg", ".jpeg") else {}
    temporary = None
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        hidden = f".{output.name}."
        with tempfile.NamedTemporaryFile(dir=output.parent, prefix=hidden, suffix=".tmp", delete=False) as f:
            temporary = Path(f.name)
            image.save(f, format=Image.registered_extensions()[output.suffix.lower()], **extra)
        os.replace(temporary, output)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot write {output}: {error}") from error
    finally:
        if temporary is not None and temporary.exists():  # a failed write, or Ctrl-C / SIGTERM
            temporary.unlink()


def _decoded_inputs(
    jobs: Sequence[tuple[Path, Path, Path]], started: deque, skipped: list[str] | None
) -> Iterator[dict]:
    """Pipeline inputs for ``jobs``, each composite and mask decoded once here, appended to ``started`` in the order
    they are yielded (the pipeline keeps that order). A job whose files cannot be decoded ends the run, or with a
    ``skipped`` list (folder mode) is described there, with a counted warning, and left out.

    The decoded images are handed over as the pipeline keeps them (8-bit data as uint8 tensors) and the PIL images
    dropped, so that a large photo is not held twice (Pillow keeps RGB in 4 bytes a pixel) while it is harmonized."""
    from .models.swinih.image_processing_swinih import load_image, to_mask, to_rgb

    for job in jobs:
        composite, mask, _ = job
        try:
            image, alpha = load_image(composite), load_image(mask)
        except ValueError as error:
            if skipped is None:
                raise InputError(str(error)) from error
            _skip(error, skipped)
            continue
        started.append(job)
        rgb = to_rgb(image, keep_uint8=True)
        del image  # before the mask's array is made: the decoded photo is never held twice with both masks
        inputs = {"image": rgb, "mask": to_mask(alpha, keep_uint8=True)}
        del rgb, alpha
        yield inputs
        del inputs


# ----- export-onnx ----------------------------------------------------------------------------------------------
def build_export_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=f"{PROG} {EXPORT_COMMAND}",
        description="Export a SwinIH model to ONNX (dynamic batch, height and width) for ONNX Runtime; run the file "
        f"with `{PROG} --model OUT.onnx ...` or lemart_hf.onnx.onnx_pipeline.",
    )
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument(
        "--model",
        default=None,
        help=f"model folder or Hugging Face Hub id (default: the packaged {DEFAULT_MODEL_NAME}, offline)",
    )
    parser.add_argument(
        "--size",
        help="working size recorded in the file, which the pipeline runs it at: N or HxW (default: the model's image "
        "processor size)",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="store the weights of the matrix multiplications as int8 (ONNX Runtime dynamic quantization): faster on "
        "CPUs, slightly less exact",
    )
    parser.add_argument("--trust_remote_code", action="store_true", help="allow model code from the model folder")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the output path")
    return parser


def export_main(argv: Sequence[str]) -> int:
    """`lemart-harmonize export-onnx OUT.onnx [--model X] [--size N] [--int8]`: see `lemart_hf.onnx.export_onnx` and
    `quantize_onnx`."""
    import logging
    import warnings

    args = build_export_parser().parse_args(argv)
    try:
        output = Path(args.output)
        if output.suffix.lower() != ".onnx":
            raise InputError(f"the output must be a .onnx file, got {output}")
        if output.is_dir():
            raise InputError(f"output {output} is a folder; give a file name")
        size = _parse_size(args.size)
        if args.model is None:
            args.model = default_model_path()
        if is_onnx_path(args.model):
            raise InputError(f"--model {args.model} is already an ONNX file")
        _check_model(args.model)
        for module in ("onnxscript", "onnxruntime") if args.int8 else ("onnxscript",):
            require_module(module)  # before the model is loaded
        import transformers
        from transformers import AutoImageProcessor, AutoModelForImageToImage

        from .onnx import export_onnx, quantize_onnx

        transformers.utils.logging.disable_progress_bar()

        remote = args.trust_remote_code or None
        try:
            model = AutoModelForImageToImage.from_pretrained(args.model, trust_remote_code=remote)
            if size is None:
                processor_size = AutoImageProcessor.from_pretrained(args.model, trust_remote_code=remote).size
                size = (processor_size["height"], processor_size["width"])
        except (OSError, ValueError, KeyError) as error:
            raise InputError(f"cannot load the model {args.model!r}: {error}") from error
        output.parent.mkdir(parents=True, exist_ok=True)
        # The exporter's notes on optional torchvision ops and torch-internal deprecations, and the quantizer's advice
        # to pre-process, are not the user's concern.
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.") as folder:
            temporary = Path(folder) / output.name
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                export_onnx(model, temporary, size)
            if args.int8:
                logging.disable(logging.WARNING)
                try:
                    temporary = quantize_onnx(temporary, Path(folder) / f"int8_{output.name}")
                finally:
                    logging.disable(logging.NOTSET)
            os.replace(temporary, output)
    except (InputError, TypeError, ValueError, ImportError, FileNotFoundError) as error:
        _fail(str(error))
    if not args.quiet:
        print(output)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == [EXPORT_COMMAND]:
        return export_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.batch_size < 1:
            raise InputError(f"--batch_size must be at least 1, got {args.batch_size}")
        size = _parse_size(args.size)
        folder_mode = bool(args.input_dir or args.output_dir)
        skipped = [] if folder_mode else None
        jobs = _folder_jobs(args, skipped) if folder_mode else _single_jobs(args)
        if not jobs:
            raise InputError(f"no readable image pair in {args.input_dir}: {'; '.join(skipped)}")
        device = _check_device(args.device)
        if args.model is None:
            try:
                args.model = default_model_path()
            except FileNotFoundError as error:
                raise InputError(str(error)) from error
        _check_model(args.model)
        onnx = is_onnx_path(args.model)
        if onnx and device is not None and device.type != "cpu":
            raise InputError(f"an ONNX model runs on the CPU (ONNX Runtime); drop --device {args.device}")
        dtype = _check_dtype(args.dtype, device, onnx)
        pipe = _load_pipeline(args, size, device, dtype)
        started = deque()
        # num_workers=0: the generator must run in this process, where `started` is read.
        results = pipe(_decoded_inputs(jobs, started, skipped), num_workers=0)
        with tqdm(total=len(jobs), desc=PROG, unit="image", disable=args.quiet or not folder_mode) as progress:
            for image in results:
                _save(image, started.popleft()[2])
                progress.update(1)
        if skipped:
            raise InputError(f"skipped {len(skipped)} unreadable image pair(s): {'; '.join(skipped)}")
    except InputError as error:
        _fail(str(error))
    except ValueError as error:  # raised by the pipeline on an input it cannot use
        _fail(str(error))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    if not args.quiet and not folder_mode:
        print(jobs[0][2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
