"""Save a grid of what LEMaRT pre-training sees: original | mask | composite, one row per photo.

python examples/show_lemart.py --image_dir ../shared/data/photos --num_images 8 --output /tmp/lemart.png
"""

import argparse

import numpy as np
import torch
from PIL import Image

from lemart_hf.lemart import MASK_STRATEGIES, LEMaRTComposer, lemart_transform, load_image_folder


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image_dir", required=True, help="Folder of photos (searched recursively).")
    parser.add_argument("--num_images", type=int, default=8, help="Rows in the grid.")
    parser.add_argument("--mask_strategy", choices=MASK_STRATEGIES, default="random")
    parser.add_argument("--mask_ratio", type=float, default=0.5)
    parser.add_argument("--resolution", type=int, default=256, help="Working size (square).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="lemart_grid.png", help="PNG file to write.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    photos = load_image_folder(args.image_dir, verify=False)  # decoded by the transform, only the rows shown
    photos = photos.shuffle(seed=args.seed).select(range(min(args.num_images, len(photos))))
    composer = LEMaRTComposer(mask_strategy=args.mask_strategy, mask_ratio=args.mask_ratio)
    transform = lemart_transform(composer=composer, resolution=args.resolution, seed=args.seed)
    batch = transform(photos[:])

    composite = batch["pixel_values"][:, :3]
    mask = batch["mask"].expand_as(composite)
    rows = torch.cat([batch["labels"], mask, composite], dim=3)  # (N, 3, H, 3W): side by side
    grid = rows.permute(0, 2, 3, 1).reshape(-1, rows.shape[-1], 3)
    Image.fromarray((grid.numpy() * 255 + 0.5).astype(np.uint8)).save(args.output)
    print(f"Wrote {len(rows)} rows (original | mask | composite) to {args.output}")


if __name__ == "__main__":
    main()
