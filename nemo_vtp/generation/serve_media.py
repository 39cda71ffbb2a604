"""Images of `nemo-vtp serve` requests: base64 data URLs, and local files only under an allowed root.

Pixel limit: the image header gives the size, checked against `max_image_pixels` before any pixel is
decoded (the data loader's check and limit). Decodes run in at most `slots` threads at once and each
image is dropped as soon as the processor has resized it. Local paths: off unless a root is named;
every refusal (outside the root, missing, not a regular file, no root) gives one identical error, so
that answers do not reveal which files exist.
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
from pathlib import Path

import torch

from nemo_vtp.generation.http_guard import RequestError

# One answer for every refused local path, so that errors do not tell which files exist.
LOCAL_MEDIA_REFUSED = ("local image paths are refused unless they name a readable file under the server's "
                       "--allowed-local-media-path: send the image as a base64 data URL")

# The formats OpenAI's API takes. Others are refused before PIL picks a plugin by the bytes: EPS would
# run Ghostscript, and rarer decoders are attack surface nobody here needs.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")


def local_image_path(url: str, root: Path | None, param: str) -> Path:
    """The file a local path or `file://` URL names, if it is a regular file under `root` (symlinks
    resolved first); every refusal raises the same error, whatever the reason."""
    refused = RequestError(400, LOCAL_MEDIA_REFUSED, param)
    if root is None:
        raise refused
    try:
        path = (root / url.removeprefix("file://")).resolve(strict=True)  # an absolute path replaces root
    except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, a NUL byte
        raise refused from None
    if not path.is_relative_to(root) or not path.is_file():
        raise refused
    return path


def _data_url_bytes(url: str, param: str) -> bytes:
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        raise RequestError(400, "image data URLs must be base64 encoded", param)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(400, f"cannot read the image: bad base64 ({err})", param) from None


def load_image(url: str, param: str, *, root: Path | None, max_image_pixels: int):
    """A PIL RGB image from a base64 data URL or an allowed local path, within the pixel limit.

    The size comes from the image header and is checked before any pixel is decoded (the data
    loader's check, `nemo_vtp.data.io`, with the same `max_image_pixels`)."""
    from nemo_vtp.data.io import ImageError
    from nemo_vtp.eval.items import open_image

    if url.startswith("data:"):
        ref: bytes | str = _data_url_bytes(url, param)
    elif url.startswith(("http://", "https://")):
        raise RequestError(400, "remote image URLs are not fetched: send a base64 data URL", param)
    else:
        ref = str(local_image_path(url, root, param))
    _check_format(ref, param)
    try:
        return open_image(ref, max_image_pixels)
    except (ImageError, ValueError) as err:
        raise RequestError(400, f"cannot use the image: {err}", param) from None


def _check_format(ref: bytes | str, param: str) -> None:
    """RequestError 400 unless the image's header says one of IMAGE_FORMATS (only the header is read)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(ref) if isinstance(ref, bytes) else ref, formats=IMAGE_FORMATS):
            pass
    except Image.DecompressionBombError as err:
        raise RequestError(400, f"cannot use the image: {err}", param) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise RequestError(400, f"cannot use the image: not a readable {', '.join(IMAGE_FORMATS)} image",
                           param) from None


def encode_images(image_processor, urls: list[tuple[str, str]], *, root: Path | None, max_image_pixels: int,
                  slots: threading.BoundedSemaphore) -> tuple[torch.Tensor, torch.Tensor]:
    """(url, param) pairs -> (pixel_values, image_grid_thw), one image decoded at a time per slot and
    dropped once the processor has resized it, so a request holds at most one full-size image."""
    pixels, grids = [], []
    for url, param in urls:
        with slots:
            image = load_image(url, param, root=root, max_image_pixels=max_image_pixels)
            try:
                encoded = image_processor(images=[image], return_tensors="pt")
            except ValueError as err:  # e.g. an aspect ratio the resize rule refuses
                raise RequestError(400, f"cannot use the image: {err}", param) from None
            del image
        pixels.append(encoded["pixel_values"])
        grids.append(encoded["image_grid_thw"])
    return torch.cat(pixels), torch.cat(grids)
