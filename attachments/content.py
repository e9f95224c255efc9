"""What a file is, from its bytes (magic numbers, not its name), and the image work: EXIF strip, thumbnail."""

from __future__ import annotations

import io
import mimetypes
import warnings
from dataclasses import dataclass
from typing import IO, Any

import filetype
from PIL import Image, ImageOps

#: Raster images the browser shows inline (thumbnail and full size); everything else is a download.
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_PILLOW_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}
_SNIFF_BYTES = 8192
# Markup that a browser would render (and run) if it were served inline: never typed text/plain.
_MARKUP_PREFIXES = (
    (b"<svg", "image/svg+xml"),
    (b"<!doctype html", "text/html"),
    (b"<html", "text/html"),
    (b"<?xml", "application/xml"),
)


class ImageRefused(Exception):
    """The image cannot be decoded safely (too many pixels, or broken); ``str`` says which."""


def sniff_type(head: bytes) -> str:
    """The MIME type the first bytes show: a magic number, else markup or UTF-8 text, else octet-stream."""
    kind = filetype.guess(head)
    if kind is not None:
        return kind.mime
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for prefix, mime in _MARKUP_PREFIXES:
        if text.startswith(prefix):
            return "image/svg+xml" if b"<svg" in text[:1024] else mime
    if b"<svg" in text[:1024] or b"<html" in text[:1024]:
        return "text/html"
    if b"\x00" not in head and _is_utf8(head):
        return "text/plain"
    return "application/octet-stream"


def _is_utf8(head: bytes) -> bool:
    # The sniffed head may end inside a multi-byte character: allow up to 3 cut bytes at its end.
    for cut in range(4):
        try:
            (head[: len(head) - cut] if cut else head).decode("utf-8")
        except UnicodeDecodeError:
            continue
        return True
    return False


def read_head(file: IO[bytes] | Any) -> bytes:
    file.seek(0)
    head = file.read(_SNIFF_BYTES)
    file.seek(0)
    return head


def name_contradicts(name: str, content_type: str) -> str | None:
    """The type the name claims when it is not the content's (``x.png`` holding a PDF), else None."""
    claimed, _ = mimetypes.guess_type(name, strict=False)
    if claimed is None or claimed == content_type:
        return None
    if claimed.startswith("text/") and content_type == "text/plain":
        return None  # .csv, .md, .log: text is text
    if {claimed, content_type} <= {"image/jpeg", "image/pjpeg"}:
        return None
    return claimed


@dataclass(frozen=True)
class CleanImage:
    """An image re-encoded without metadata, and its thumbnail."""

    data: bytes
    thumbnail: bytes
    thumbnail_type: str
    width: int
    height: int


def image_clean(file: IO[bytes] | Any, *, content_type: str, max_pixels: int, thumbnail_px: int) -> CleanImage:
    """Re-encode an image without EXIF (GPS included), XMP or comments, upright, plus a thumbnail.

    Pillow's decompression-bomb limit is on (``max_pixels``; its warning is an error here), so a small file
    that would decode into gigabytes is refused before it is decoded.
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            file.seek(0)
            with Image.open(file) as image:
                image.load()
                return _clean(image, content_type=content_type, thumbnail_px=thumbnail_px)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused(f"the image has more than {max_pixels} pixels") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRefused(f"the image cannot be read: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _clean(image: Image.Image, *, content_type: str, thumbnail_px: int) -> CleanImage:
    fmt = _PILLOW_FORMATS[content_type]
    animated = getattr(image, "n_frames", 1) > 1
    out = io.BytesIO()
    if animated:
        # Every frame again, without the metadata (GIF has no EXIF; animated WebP may).
        image.info.pop("exif", None)
        image.info.pop("xmp", None)
        image.save(out, format=fmt, save_all=True, exif=b"") if fmt == "WEBP" else image.save(
            out, format=fmt, save_all=True
        )
        upright = image.copy()
    else:
        upright = ImageOps.exif_transpose(image)  # the orientation EXIF carried goes into the pixels
        upright.info = {k: v for k, v in upright.info.items() if k in ("transparency", "icc_profile")}
        options: dict = {"format": fmt}
        if fmt == "JPEG":
            options.update(quality=90, exif=b"")
            upright = upright.convert("RGB") if upright.mode not in ("RGB", "L", "CMYK") else upright
        elif fmt == "WEBP":
            options.update(quality=90, exif=b"", xmp=b"")
        upright.save(out, **options)
    width, height = upright.size
    thumb = upright.convert("RGBA") if upright.mode in ("P", "LA", "PA") else upright.copy()
    thumb.thumbnail((thumbnail_px, thumbnail_px))
    thumb_out = io.BytesIO()
    if thumb.mode in ("RGBA", "LA"):
        thumb.save(thumb_out, format="PNG")
        thumbnail_type = "image/png"
    else:
        thumb.convert("RGB").save(thumb_out, format="JPEG", quality=80)
        thumbnail_type = "image/jpeg"
    return CleanImage(out.getvalue(), thumb_out.getvalue(), thumbnail_type, width, height)
