"""Turning the ``image`` argument of ``submit`` into a request body.

A path, bytes or a file object is uploaded as raw bytes with its content
type sniffed from the magic bytes (the server checks the header too, but a
right ``Content-Type`` gives better errors). A string with a storage scheme
(``gs://``, ``s3://``, ``http(s)://``, ``file://``) is *not* read here: it
is sent as a reference (``{"input": {"uri": …}}``) and fetched by a worker.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import IO, Union

#: Anything ``submit`` accepts as an image.
ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes]]

_URI = re.compile(r"^(gs|s3|https?|file)://", re.IGNORECASE)


def sniff_content_type(data: bytes) -> str:
    """The image MIME type from the first bytes, ``application/octet-stream`` if unknown."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"BM"):
        return "image/bmp"
    return "application/octet-stream"


def is_uri(image: object) -> bool:
    """True for a string naming a storage object the server should fetch."""
    return isinstance(image, str) and bool(_URI.match(image))


@dataclass(frozen=True)
class Payload:
    """Either raw image bytes (``data``) or a storage reference (``uri``)."""

    data: bytes | None = None
    uri: str | None = None

    @property
    def content_type(self) -> str:
        return sniff_content_type(self.data or b"")


def read_image(image: ImageInput) -> Payload:
    """Resolve ``image`` to a :class:`Payload` (reads files; URIs stay references).

    The bytes are read once, up front, so a retried submit sends the same body.
    """
    if isinstance(image, str) and is_uri(image):
        return Payload(uri=image)
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as f:
            return Payload(data=f.read())
    if isinstance(image, (bytes, bytearray, memoryview)):
        return Payload(data=bytes(image))
    if hasattr(image, "read"):
        data = image.read()
        if not isinstance(data, bytes):
            raise TypeError("file objects must be opened in binary mode")
        return Payload(data=data)
    raise TypeError(f"unsupported image type: {type(image).__name__}")
