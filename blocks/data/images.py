"""Images from folders: `data: {images: {path: DIR}}`, one sub-folder per class.

The data pipeline decodes each file with Pillow, converts it to the model input's channels
(1: grey, 3: RGB) and resizes it to the input's height and width; the result, a float tensor
`[C, H, W]` with values in 0..1, is the model's *raw* input. Per-channel normalisation is the
model's own `preprocess` (`channel_mean`/`channel_std`, fitted on the training split unless the
recipe gives them), so `blocks predict` on image files and `blocks.load(...).predict` on the
decoded tensors agree. Augmentation (training only) is a few tensor ops on the decoded image.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from blocks.core.errors import BlocksError, Problem, SpecError, escape_name
from blocks.data.arrays import RawData, Split, Splits, learned_spec
from blocks.spec.preprocess import PreprocessSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class BadImageError(BlocksError):
    """An image file that cannot be decoded (corrupt, truncated, not an image)."""


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise SpecError(Problem("data.images", "reading image folders needs Pillow, which is not "
                                "installed: pip install 'blocks[images]'", "missing_extra")) from None
    return Image


def image_shape(model: Any, where: str = "model.input.shape") -> tuple[int, int, int]:
    shape = list(model.input.shape)
    if len(shape) != 3 or shape[0] not in (1, 3) or model.input.dtype == "int64":
        raise SpecError(Problem(where, f"image folders feed a [C, H, W] float input with 1 (grey) "
                                f"or 3 (RGB) channels, got {shape} ({model.input.dtype})",
                                "shape_mismatch"))
    return shape[0], shape[1], shape[2]


_TO_GREY = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr")


def decode_image(path: Path, shape: tuple[int, int, int], resize: str) -> torch.Tensor:
    """One file as uint8 `[C, H, W]` at the model input's size (BadImageError naming it).

    Every Pillow mode is read by its real range: 16-bit grey (`I;16`, e.g. a 16-bit PNG) is
    scaled from 0..65535, not clipped at 255 (which turns it all white); 32-bit integer and
    float pixels must say their range (0..65535, or 0..1 / 0..255) or the file is refused. A
    decompression bomb (more pixels than Pillow's limit) is a bad file, like a corrupt one."""
    image_module = _pil()
    channels, height, width = shape
    shown = escape_name(path)
    try:
        with image_module.open(path) as image:
            image = _eight_bit(image, image_module, shown)
            if channels == 1 and image.mode not in _TO_GREY:
                image = image.convert("RGB")  # LAB, HSV, ... reach grey through RGB only
            image = image.convert("L" if channels == 1 else "RGB")
            if resize == "crop":  # short side to size, then the centre
                scale = max(width / image.width, height / image.height)
                size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
                image = image.resize(size, image_module.Resampling.BILINEAR)
                left, top = (size[0] - width) // 2, (size[1] - height) // 2
                image = image.crop((left, top, left + width, top + height))
            else:
                image = image.resize((width, height), image_module.Resampling.BILINEAR)
            array = np.array(image, dtype=np.uint8)  # a writable copy
    except image_module.DecompressionBombError as err:
        raise BadImageError(f"{shown}: refused, a possible decompression bomb ({err})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise BadImageError(f"{shown}: not a readable image ({escape_name(err)})") from None
    array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def _eight_bit(image: Any, image_module: Any, shown: str) -> Any:
    """`image` as an 8-bit mode Pillow converts correctly, scaled by its real range: Pillow's own
    `convert("L")` clips 16-bit and 32-bit pixels at 255 instead of scaling them."""
    mode = image.mode
    if not (mode.startswith("I") or mode.startswith("F")):
        return image
    values = np.asarray(image, dtype=np.float64)
    if mode.startswith("I;16"):
        top = 65535.0
    else:
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if not (math.isfinite(low) and math.isfinite(high)):
            raise BadImageError(f"{shown}: its {mode} pixels hold NaN or infinite values")
        if mode.startswith("F") and low >= 0 and high <= 1:
            top = 1.0
        elif low >= 0 and high <= (255 if mode.startswith("F") else 65535):
            top = 255.0 if mode.startswith("F") else 65535.0
        else:
            raise BadImageError(
                f"{shown}: its {mode} pixels range over {low:g}..{high:g}, which says nothing "
                f"of their scale ({'0..1 or 0..255' if mode.startswith('F') else '0..65535'} "
                "is read); convert it to an 8- or 16-bit image")
    scaled = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
    return image_module.fromarray(scaled)  # 2-D uint8: mode L


@dataclass
class ImageFiles:
    """The files of an image folder and the class id of each."""

    files: list[Path]
    targets: list[int]
    classes: list[str]


def list_image_folder(root: Path, labels: list[str] | None, where: str = "data.images.path", *,
                      training: bool = True) -> ImageFiles:
    """Image files and class ids of a folder of class folders. For training (`training`),
    every label needs a folder with files; held-out data may lack some classes."""
    if not root.is_dir():
        raise SpecError(Problem(where, f"folder {escape_name(root)!r} does not exist", "file_not_found"))
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise SpecError(Problem(where, f"{escape_name(root)} has no sub-folders; put each class's "
                                "images in a folder named after the class", "empty_data"))
    names = [f.name for f in folders]
    if labels is not None:
        unknown = [n for n in names if n not in labels]
        if unknown:
            raise SpecError(Problem(where, f"folder {escape_name(unknown[0])!r} is not one of the "
                                    f"head's labels ({', '.join(escape_name(n) for n in labels[:8])})",
                                    "unknown_label"))
        absent = [label for label in labels if label not in names]
        if absent and training:
            raise SpecError(Problem(where, f"{escape_name(root)} has no folder for the head's label "
                                    f"{escape_name(absent[0])!r}: that class would train with no "
                                    "samples", "empty_class"))
    classes = labels if labels is not None else names
    files, targets = [], []
    for folder in folders:
        found = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not found and not training:
            continue  # held-out data without this class
        if not found:
            raise SpecError(Problem(where, f"class folder {escape_name(folder)!r} holds no files: "
                                    "its class would train with no samples; add images or remove "
                                    "the folder", "empty_class"))
        files += found
        targets += [classes.index(folder.name)] * len(found)
    return ImageFiles(files, targets, list(classes))


class ImageFolderDataset(Dataset):
    """(raw image `[C, H, W]` float 0..1, class id) pairs, decoded on the fly or from a cache of
    uint8 images; `augment` (training only) changes each image randomly on every visit."""

    def __init__(self, files: list[Path], targets: list[int], shape: tuple[int, int, int],
                 resize: str, *, cache: list[torch.Tensor] | None = None, augment: Any = None,
                 num_workers: int = 0) -> None:
        self.files, self.targets = files, targets
        self.shape, self.resize, self.cache, self.augment = shape, resize, cache, augment
        self.num_workers = num_workers  # read by the trainer's DataLoader

    def __len__(self) -> int:
        return len(self.files)

    def image(self, index: int) -> torch.Tensor:
        raw = self.cache[index] if self.cache is not None else decode_image(
            self.files[index], self.shape, self.resize)
        return raw.to(torch.float32) / 255.0

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.image(index)
        if self.augment is not None:
            x = augment_image(x, self.augment)
        return x, torch.tensor(self.targets[index], dtype=torch.long)


def augment_image(x: torch.Tensor, spec: Any) -> torch.Tensor:
    """Random resized crop, flip, rotation and brightness/contrast jitter of one `[C, H, W]`
    image in 0..1 (torch's global RNG: seeded by the trainer, per worker by the DataLoader)."""
    _, height, width = x.shape
    if spec.crop_scale < 1.0:
        area = float(torch.empty(()).uniform_(spec.crop_scale, 1.0))
        ratio = math.exp(float(torch.empty(()).uniform_(math.log(3 / 4), math.log(4 / 3))))
        h = min(height, max(1, round(math.sqrt(area * height * width / ratio))))
        w = min(width, max(1, round(math.sqrt(area * height * width * ratio))))
        top = int(torch.randint(0, height - h + 1, ()))
        left = int(torch.randint(0, width - w + 1, ()))
        x = F.interpolate(x[None, :, top:top + h, left:left + w], size=(height, width),
                          mode="bilinear", align_corners=False)[0]
    if spec.flip and bool(torch.rand(()) < 0.5):
        x = x.flip(-1)
    if spec.rotate > 0:
        angle = math.radians(float(torch.empty(()).uniform_(-spec.rotate, spec.rotate)))
        cos, sin = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype)[None]
        grid = F.affine_grid(theta, [1, *x.shape], align_corners=False)
        x = F.grid_sample(x[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    if spec.jitter > 0:
        brightness = float(torch.empty(()).uniform_(1 - spec.jitter, 1 + spec.jitter))
        contrast = float(torch.empty(()).uniform_(1 - spec.jitter, 1 + spec.jitter))
        x = x * brightness
        mean = x.mean()
        x = ((x - mean) * contrast + mean).clamp(0.0, 1.0)
    return x


def load_image_folder(source: Any, model: Any, base_dir: Path | None):
    """The folder's files and class ids as `RawData` holding a (not yet split) file list."""

    root = Path(source.path)
    if not root.is_absolute() and base_dir is not None:
        root = base_dir / root
    shape = image_shape(model)
    heads = model.head_specs
    if model.multi_head or next(iter(heads.values())).type != "softmax":
        raise SpecError(Problem("data.images", "image folders give one class per image: use a "
                                "single softmax `head`", "targets_shape"))
    head = next(iter(heads.values()))
    listing = list_image_folder(root, head.labels)
    if len(listing.classes) != head.classes:
        raise SpecError(Problem("model.head.classes", f"{escape_name(root.name)} has "
                                f"{len(listing.classes)} class folders "
                                f"({', '.join(escape_name(c) for c in listing.classes[:8])}) but the head "
                                f"has {head.classes} classes", "class_count"))
    cache = _decode_all(listing, shape, source) if _fits(listing, shape, source) else None
    if cache is None:
        _verify_all(listing, source)
    labels = {next(iter(heads)): listing.classes} if head.labels is None else None
    dataset = ImageFolderDataset(listing.files, listing.targets, shape, source.resize, cache=cache,
                                 num_workers=source.workers)
    return RawData(None, np.asarray(listing.targets, dtype=np.int64), "image", labels=labels,
                   dataset=dataset)


def _fits(listing: ImageFiles, shape: tuple[int, int, int], source: Any) -> bool:
    return len(listing.files) * math.prod(shape) <= source.cache_mb * (1 << 20)


def _bad(listing: ImageFiles, bad: list[tuple[int, str]], source: Any) -> None:
    """Refuse the first bad file, or (skip_bad_files) drop every bad one with a warning."""
    if not bad:
        return
    if not source.skip_bad_files:
        raise SpecError(Problem("data.images.path", f"{bad[0][1]} ({len(bad)} bad file"
                                f"{'s' if len(bad) > 1 else ''}; set `skip_bad_files: true` to "
                                "skip them)", "bad_image"))
    shown = ", ".join(escape_name(listing.files[i]) for i, _ in bad[:3])
    warnings.warn(f"skipped {len(bad)} unreadable image file(s): {shown}"
                  f"{' ...' if len(bad) > 3 else ''}", stacklevel=4)
    drop = {i for i, _ in bad}
    listing.files = [f for i, f in enumerate(listing.files) if i not in drop]
    listing.targets = [t for i, t in enumerate(listing.targets) if i not in drop]
    if not listing.files:
        raise SpecError(Problem("data.images.path", "no readable images left", "empty_data"))
    emptied = sorted(set(range(len(listing.classes))) - set(listing.targets))
    if emptied:
        raise SpecError(Problem("data.images.path", f"class {escape_name(listing.classes[emptied[0]])!r} "
                                "has no readable images left once the bad files are skipped: it "
                                "would train with no samples", "empty_class"))


def _decode_all(listing: ImageFiles, shape: tuple[int, int, int], source: Any) -> list[torch.Tensor]:
    images, bad = [], []
    for i, path in enumerate(listing.files):
        try:
            images.append(decode_image(path, shape, source.resize))
        except BadImageError as err:
            bad.append((i, str(err)))
    _bad(listing, bad, source)
    return images


def _verify_all(listing: ImageFiles, source: Any) -> None:
    """Headers and checksums of every file, without decoding (too many to cache)."""
    image_module = _pil()
    bad = []
    for i, path in enumerate(listing.files):
        try:
            with image_module.open(path) as image:
                image.verify()
        except image_module.DecompressionBombError as err:
            bad.append((i, f"{escape_name(path)}: refused, a possible decompression bomb ({err})"))
        except (OSError, ValueError, SyntaxError, EOFError) as err:
            bad.append((i, f"{escape_name(path)}: not a readable image ({escape_name(err)})"))
    _bad(listing, bad, source)


def read_images(path: Path, model: Any) -> tuple[torch.Tensor, list[Path]]:
    """`blocks predict` on an image file or a folder of them (sorted, recursively): the raw
    inputs a model trained on an image folder takes, decoded as in training."""
    pre = model.spec.preprocess
    shape = image_shape(model.spec)
    resize = pre.images if pre is not None and pre.images is not None else "crop"
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SpecError(Problem("", "no image files here", "empty_data", str(path)))
    try:
        images = [decode_image(f, shape, resize) for f in files]
    except BadImageError as err:
        raise SpecError(Problem("", str(err), "bad_image")) from None
    return torch.stack(images).to(torch.float32) / 255.0, files


def image_splits(raw: Any, recipe: Any, model_spec: Any, train_idx: np.ndarray,
                 val_idx: np.ndarray, info: dict[str, Any]):
    """Train/val `Split`s of Datasets over the file list, and the model spec whose preprocess
    normalises channels with statistics of the training images (unless given)."""
    dataset: ImageFolderDataset = raw.dataset
    source = recipe.data.images

    def subset(idx: np.ndarray, augment: Any) -> ImageFolderDataset:
        cache = [dataset.cache[i] for i in idx] if dataset.cache is not None else None
        return ImageFolderDataset([dataset.files[i] for i in idx], [dataset.targets[i] for i in idx],
                                  dataset.shape, dataset.resize, cache=cache, augment=augment,
                                  num_workers=dataset.num_workers)

    train = subset(train_idx, source.augment)
    val = subset(val_idx, None) if len(val_idx) else None
    if model_spec is None:
        preprocess = recipe.model.preprocess
        if preprocess is None:
            mean, std = source.mean, source.std
            if mean is None or std is None:
                fitted_mean, fitted_std = _channel_stats(subset(train_idx, None))
                mean, std = mean or fitted_mean, std or fitted_std
            preprocess = PreprocessSpec(raw_shape=list(dataset.shape), channel_mean=mean,
                                        channel_std=std, images=source.resize)
        model_spec = learned_spec(recipe.model, preprocess, raw.labels)
    return Splits(Split(None, None, train), Split(None, None, val) if val is not None else None,
                  model_spec.preprocess, model_spec, info)


def _channel_stats(dataset: ImageFolderDataset, limit: int = 2000) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of (up to `limit`, evenly spread) training images."""
    step = max(1, len(dataset) // limit)
    total = torch.zeros(dataset.shape[0], dtype=torch.float64)
    squares = torch.zeros_like(total)
    count = 0
    for i in range(0, len(dataset), step):
        x = dataset.image(i).to(torch.float64).reshape(dataset.shape[0], -1)
        total += x.sum(1)
        squares += (x * x).sum(1)
        count += x.shape[1]
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return [round(v, 6) for v in mean.tolist()], [round(v, 6) for v in std.tolist()]
