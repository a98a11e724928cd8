"""Unpaired image folders: listing, robust loading, albumentations pipelines and a resumable sampler.

Every image becomes uint8 HWC RGB before augmentation (albumentations misbehaves on anything else) and a
float tensor in [-1, 1] after it. Augmentation is seeded per sample, so the data order and the crops depend only
on the run seed and the position in the run: identical across worker counts, and exact on resume.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
MAX_PIXELS = 64_000_000  # anything larger is treated as a decompression bomb, never decoded


class DataError(ValueError):
    """A user-facing problem with the data (missing folder, empty domain, unreadable image)."""


def list_images(folder: str | Path) -> list[Path]:
    """All image files under `folder`, recursively, in a stable order; a clear error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: 16-bit scaled to 8-bit, transparency composited on white, CMYK converted."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 257.0 if img.mode.startswith("I;16") or arr.max() > 255 else 1.0
        img = Image.fromarray(np.clip(arr / scale + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode one image file into a uint8 HWC RGB array, or raise DataError naming the file and the problem.

    Handles grayscale, palette, RGBA (composited on white), 16-bit, CMYK, EXIF rotation and animated files
    (first frame). Refuses empty, truncated, non-image and oversized (decompression bomb) files.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise DataError(f"{path}: {img.width}x{img.height} pixels is over the limit of "
                                    f"{MAX_PIXELS:,} (possible decompression bomb)")
                img.seek(0)
                img.load()
                img = ImageOps.exif_transpose(img)
                return np.asarray(to_rgb(img), dtype=np.uint8).copy()
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: possible decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or truncated image ({exc})") from None


def check_image(path: str | Path) -> str | None:
    """A cheap validity check (header, size, chunk CRCs): the reason the file is bad, or None if it looks fine."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    return f"{img.width}x{img.height} pixels is over the limit (possible decompression bomb)"
                img.verify()
    except UnidentifiedImageError:
        return "not an image Pillow can read"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "possible decompression bomb"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"unreadable or truncated image ({exc})"
    return None


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HWC RGB -> float CHW in [-1, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float CHW in [-1, 1] -> uint8 HWC RGB."""
    return x.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).cpu().numpy()


MAX_ASPECT = 8


def limit_aspect(image: np.ndarray, **_) -> np.ndarray:
    """Centre-crop a strip longer than MAX_ASPECT times its width, so resizing its short side cannot blow up."""
    h, w = image.shape[:2]
    if h > MAX_ASPECT * w:
        top = (h - MAX_ASPECT * w) // 2
        return image[top:top + MAX_ASPECT * w]
    if w > MAX_ASPECT * h:
        left = (w - MAX_ASPECT * h) // 2
        return image[:, left:left + MAX_ASPECT * h]
    return image


def build_transform(load_size: int, crop_size: int, resize: bool = True, crop: bool = True,
                    flip: bool = True, train: bool = True) -> A.Compose:
    """resize (shorter side to load_size, at least crop_size; keeps aspect) -> random/centre crop -> horizontal
    flip; strips longer than MAX_ASPECT:1 are centre-cropped to it first.

    For evaluation (train=False) the shorter side goes straight to crop_size and the centre is kept.
    """
    import albumentations as A  # here, not at the top: inference imports this module and never augments
    steps: list = [A.Lambda(image=limit_aspect, name="limit_aspect")]
    if not train:
        steps += [A.SmallestMaxSize(max_size=crop_size), A.CenterCrop(crop_size, crop_size)]
        return A.Compose(steps)
    if resize:
        steps.append(A.SmallestMaxSize(max_size=max(load_size, crop_size)))
    steps.append(A.PadIfNeeded(crop_size, crop_size, border_mode=0, fill=255))
    steps.append(A.RandomCrop(crop_size, crop_size) if crop else A.CenterCrop(crop_size, crop_size))
    if flip:
        steps.append(A.HorizontalFlip(p=0.5))
    return A.Compose(steps)


def scan(files: list[Path]) -> tuple[list[Path], dict[Path, str]]:
    """Split files into (good, {bad: reason}) with the cheap check; a clear error if nothing good is left."""
    good, bad = [], {}
    for path in files:
        reason = check_image(path)
        if reason is None:
            good.append(path)
        else:
            bad[path] = reason
    return good, bad


class UnpairedDataset(torch.utils.data.Dataset):
    """Two independent image lists. Items are addressed by (index_a, index_b, seed) from UnpairedSampler.

    A file that fails to decode is replaced by the next good file of its domain; its path and reason come back
    in the item's "bad" list so the trainer can warn once and count it.
    """

    def __init__(self, files_a: list[Path], files_b: list[Path], transform: A.Compose):
        self.files = {"a": list(files_a), "b": list(files_b)}
        self.transform = transform

    def __len__(self) -> int:
        return max(len(self.files["a"]), len(self.files["b"]))

    def _load(self, domain: str, index: int, bad: list[str]) -> np.ndarray:
        files = self.files[domain]
        for k in range(len(files)):
            path = files[(index + k) % len(files)]
            try:
                return load_rgb(path)
            except DataError as exc:
                bad.append(str(exc))
        raise DataError(f"domain {domain.upper()}: no readable image among {len(files)} files")

    def __getitem__(self, key: tuple[int, int, int]) -> dict:
        index_a, index_b, seed = key
        bad: list[str] = []
        out = {}
        for domain, index, offset in (("a", index_a, 0), ("b", index_b, 1)):
            self.transform.set_random_seed((seed * 2 + offset) % 2**32)
            out[domain] = to_tensor(self.transform(image=self._load(domain, index, bad))["image"])
        out["bad"] = bad
        return out


def collate(items: list[dict]) -> dict:
    return {"a": torch.stack([i["a"] for i in items]), "b": torch.stack([i["b"] for i in items]),
            "bad": [msg for i in items for msg in i["bad"]]}


@dataclass
class UnpairedBatches(torch.utils.data.Sampler):
    """The run's batches of (index_a, index_b, seed) keys, step `start` to `stop`, for UnpairedDataset.

    Each domain is shuffled independently per epoch from (seed, epoch); an epoch is max(len_a, len_b) pairs, the
    shorter domain drawn from repeated permutations of itself. Step s of an epoch takes the pairs
    [s * G, (s + 1) * G) where G = batch_size * world_size is the global batch; rank r gets its batch_size-slice.
    So the data depends only on the seed and the step: exact on resume, equal across worker and process counts.
    """
    len_a: int
    len_b: int
    batch_size: int
    seed: int
    start: int = 0
    stop: int | None = None
    rank: int = 0
    world_size: int = 1

    @property
    def pairs_per_epoch(self) -> int:
        return max(self.len_a, self.len_b)

    @property
    def steps_per_epoch(self) -> int:
        return self.pairs_per_epoch // (self.batch_size * self.world_size)

    def order(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This epoch's index order for each domain."""
        orders = []
        for salt, n in enumerate((self.len_a, self.len_b)):
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 2 + salt)
            reps = -(-self.pairs_per_epoch // n)
            orders.append(torch.cat([torch.randperm(n, generator=g) for _ in range(reps)])[:self.pairs_per_epoch])
        return orders[0], orders[1]

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self):
        if self.steps_per_epoch == 0:
            raise DataError(f"a global batch of {self.batch_size * self.world_size} is more than the "
                            f"{self.pairs_per_epoch} images of the larger domain")
        epoch_seen = None
        for step in range(self.start, self.stop):
            epoch, within = divmod(step, self.steps_per_epoch)
            if epoch != epoch_seen:
                order_a, order_b, epoch_seen = *self.order(epoch), epoch
            first = (within * self.world_size + self.rank) * self.batch_size
            yield [(int(order_a[i]), int(order_b[i]), (self.seed * 7919 + epoch) * self.pairs_per_epoch + i)
                   for i in range(first, first + self.batch_size)]
