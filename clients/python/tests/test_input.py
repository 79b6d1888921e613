"""Content sniffing and the accepted image argument types."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from inferq import sniff_content_type
from inferq._input import is_uri, read_image


@pytest.mark.parametrize(
    "name,expected",
    [("chelsea.png", "image/png"), ("photo-640x480.jpg", "image/jpeg"), ("two-people.jpg", "image/jpeg")],
)
def test_sniff_real_images(images: Path, name: str, expected: str) -> None:
    assert sniff_content_type((images / name).read_bytes()) == expected


@pytest.mark.parametrize(
    "head,expected",
    [
        (b"GIF89a\x01\x00", "image/gif"),
        (b"GIF87a\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"BM\x36\x00\x00\x00", "image/bmp"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "application/octet-stream"),
        (b"hello", "application/octet-stream"),
        (b"", "application/octet-stream"),
    ],
)
def test_sniff_magic(head: bytes, expected: str) -> None:
    assert sniff_content_type(head) == expected


def test_read_image_kinds(images: Path) -> None:
    p = images / "chelsea.png"
    data = p.read_bytes()
    assert read_image(p).data == data
    assert read_image(str(p)).data == data
    assert read_image(data).data == data
    assert read_image(bytearray(data)).data == data
    assert read_image(io.BytesIO(data)).data == data
    with open(p, "rb") as f:
        assert read_image(f).content_type == "image/png"


@pytest.mark.parametrize(
    "uri", ["gs://b/cat.jpg", "s3://b/k.png", "https://example.com/a.jpg", "http://h/x", "file:///tmp/x.png"]
)
def test_uris_are_references(uri: str) -> None:
    assert is_uri(uri)
    p = read_image(uri)
    assert p.uri == uri and p.data is None


def test_text_file_objects_are_refused() -> None:
    with pytest.raises(TypeError):
        read_image(io.StringIO("x"))  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        read_image("no/such/file.png")
