"""Real sample photos for the demo, the default int8 calibration set, tests and benchmark, from
scikit-image's bundled data.

`write_sample_photos(folder)` writes each photo as a JPEG plus near-duplicate variants (mirror,
centre crop, half size), so "the most similar image" has a meaningful answer. Needs the
`demo` extra (scikit-image); nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

# scikit-image sample images that ship inside its wheel (no download).
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "camera",
    "coins",
    "horse",
    "moon",
)


def photo(name: str) -> Image.Image:
    """One scikit-image sample photo as a Pillow image."""
    try:
        from skimage import data
    except ImportError as exc:
        raise RuntimeError("sample photos need scikit-image: pip install 'imagesim[demo]'") from exc
    array = getattr(data, name)()
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    return Image.fromarray(np.asarray(array, dtype=np.uint8))


def variants(image: Image.Image) -> dict[str, Image.Image]:
    """Near-duplicates of one image."""
    width, height = image.size
    return {
        "mirror": ImageOps.mirror(image),
        "crop": image.crop((width // 10, height // 10, width - width // 10, height - height // 10)),
        "half": image.resize((max(1, width // 2), max(1, height // 2))),
    }


def write_sample_photos(folder: Path, with_variants: bool = True) -> list[Path]:
    """Write the sample photos (and their variants) into `folder` as JPEGs; returns paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in PHOTOS:
        image = photo(name)
        images = {name: image}
        if with_variants:
            images.update({f"{name}_{kind}": v for kind, v in variants(image).items()})
        for stem, img in images.items():
            path = folder / f"{stem}.jpg"
            img.convert("RGB").save(path, "JPEG", quality=92)
            written.append(path)
    return written


def write_photo_crops(
    folder: Path, count: int, seed: int = 0, size: tuple[int, int] = (500, 375)
) -> list[Path]:
    """`count` distinct real-photo images: random crops (10-60% of the side), flips and
    rotations of the sample photos, resized to `size` like a mirflickr photo."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = [photo(name).convert("RGB") for name in PHOTOS]
    written = []
    for n in range(count):
        source = sources[int(rng.integers(len(sources)))]
        width, height = source.size
        side = rng.uniform(0.1, 0.6)
        w, h = max(8, int(width * side)), max(8, int(height * side))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        crop = source.crop((x, y, x + w, y + h))
        if rng.random() < 0.5:
            crop = ImageOps.mirror(crop)
        crop = crop.rotate(float(rng.choice([0, 90, 180, 270])), expand=True).resize(size)
        path = folder / f"crop_{n:05d}.jpg"
        crop.save(path, "JPEG", quality=90)
        written.append(path)
    return written


def write_held_out_cat(path: Path) -> Path:
    """A photo no index holds whose near-duplicates the samples are: the cat, cropped
    differently, a little brighter, saved at another JPEG quality."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cat = photo("chelsea")
    recropped = cat.crop((30, 0, cat.width, cat.height - 20))
    ImageEnhance.Brightness(recropped).enhance(1.08).convert("RGB").save(path, quality=80)
    return path
