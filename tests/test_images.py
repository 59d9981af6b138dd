"""vislang.images: every format and pixel mode loads as the RGB a user expects, or fails clearly."""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from vislang.errors import ImageLoadError, ImageTooLargeError
from vislang.images import IMAGE_EXTENSIONS, MAX_PIXELS, is_image_path, load_image

ORANGE = (200, 100, 50)
RED, BLUE, GREEN, WHITE, BLACK = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255), (0, 0, 0)


# --- helpers ---------------------------------------------------------------------------------


def save(image: Image.Image, path: Path, **options) -> Path:
    """Write ``image`` the way a user's tool would; HEIC goes through pillow_heif directly."""
    if path.suffix in (".heic", ".heif"):
        pillow_heif.from_pillow(image).save(path, **{"quality": 90, **options})
    else:
        image.save(path, **options)
    return path


def noise(size=(64, 64), mode="RGB") -> Image.Image:
    """Incompressible pixels, so that cutting the file in half cuts into the pixel data."""
    data = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(data).convert(mode)


def assert_colour(actual, expected, tolerance=0):
    assert all(abs(a - e) <= tolerance for a, e in zip(actual, expected)), (actual, expected)


def load_error(source, **kwargs) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_image(source, **kwargs)
    return str(info.value)


def png_with_declared_size(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height, followed by far too little pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "options", "tolerance"),
    [
        (".jpg", {"quality": 95}, 4),
        (".jpeg", {"quality": 95}, 4),
        (".png", {}, 0),
        (".webp", {"lossless": True}, 0),
        (".gif", {}, 0),
        (".bmp", {}, 0),
        (".tif", {}, 0),
        (".tiff", {"compression": "tiff_lzw"}, 0),
        (".heic", {}, 6),
        (".heif", {}, 6),
    ],
)
def test_each_format_loads_its_colour_as_rgb(tmp_path, suffix, options, tolerance):
    path = save(Image.new("RGB", (32, 24), ORANGE), tmp_path / f"photo{suffix}", **options)
    image = load_image(path)
    assert (image.mode, image.size) == ("RGB", (32, 24))
    assert_colour(image.getpixel((16, 12)), ORANGE, tolerance)


def test_animated_gif_gives_its_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    red, blue = Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)
    red.save(path, save_all=True, append_images=[blue], duration=100, loop=0)
    with Image.open(path) as written:
        assert written.n_frames == 2
    assert load_image(path).getpixel((4, 4)) == RED


@pytest.mark.parametrize(("suffix", "tolerance"), [(".jpg", 8), (".png", 0), (".heic", 8)])
def test_exif_orientation_is_applied(tmp_path, suffix, tolerance):
    stored = Image.new("RGB", (20, 10), BLUE)
    stored.paste(RED, (0, 0, 10, 10))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = save(stored, tmp_path / f"rotated{suffix}", exif=exif.tobytes())
    image = load_image(path)
    assert image.size == (10, 20)
    # Rotating clockwise brings the left half to the top (counter-clockwise would put it at the
    # bottom). HEIC stores the rotation in its container instead: it must not be applied twice.
    assert_colour(image.getpixel((5, 3)), RED, tolerance)
    assert_colour(image.getpixel((5, 16)), BLUE, tolerance)


# --- pixel modes -------------------------------------------------------------------------------


def test_alpha_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 128))  # half-transparent red
    rgba.putpixel((1, 0), (0, 0, 0, 0))  # fully transparent black
    image = load_image(save(rgba, tmp_path / "alpha.png"))
    assert_colour(image.getpixel((0, 0)), (255, 127, 127), tolerance=1)
    assert image.getpixel((1, 0)) == WHITE


def test_gray_with_alpha_is_composited_on_white(tmp_path):
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (0, 255))  # opaque black
    la.putpixel((1, 0), (0, 0))  # transparent black
    image = load_image(save(la, tmp_path / "la.png"))
    assert [image.getpixel((x, 0)) for x in range(2)] == [BLACK, WHITE]


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_transparency_becomes_white(tmp_path, suffix):
    palette = Image.new("P", (2, 1))
    palette.putpalette([*RED, *GREEN] + [0] * 762)
    palette.putpixel((1, 0), 1)
    image = load_image(save(palette, tmp_path / f"palette{suffix}", transparency=0))
    assert [image.getpixel((x, 0)) for x in range(2)] == [WHITE, GREEN]


def test_cmyk_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    assert load_image(save(cmyk, tmp_path / "cmyk.tif")).getpixel((1, 1)) == RED


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    gray16 = Image.fromarray(np.array([[65535, 32768, 0]], dtype=np.uint16))
    assert gray16.mode == "I;16"
    image = load_image(save(gray16, tmp_path / "deep.png"))
    assert [image.getpixel((x, 0)) for x in range(3)] == [WHITE, (128,) * 3, BLACK]


def test_16bit_grayscale_transparent_key_becomes_white(tmp_path):
    gray16 = Image.fromarray(np.array([[1000, 32768]], dtype=np.uint16))
    image = load_image(save(gray16, tmp_path / "key.png", transparency=1000))
    assert [image.getpixel((x, 0)) for x in range(2)] == [WHITE, (128,) * 3]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([[65535, 32768, 0]], dtype=">u2"), [255, 128, 0]),  # I;16B
        (np.array([[65535, 32768, 0]], dtype=np.int32), [255, 128, 0]),  # I holding 16-bit data
        (np.array([[1 << 20, 1 << 19, 0]], dtype=np.int32), [255, 128, 0]),  # I beyond 16 bits
        (np.array([[1.0, 0.5, 0.0]], dtype=np.float32), [255, 128, 0]),  # F normalised to [0, 1]
        (np.array([[1.0, 0.0, -1.0]], dtype=np.float32), [255, 128, 0]),  # F outside [0, 1]
    ],
)
def test_high_depth_grayscale_is_scaled_to_8bit(values, expected):
    image = load_image(Image.fromarray(values))
    assert [image.getpixel((x, 0)) for x in range(3)] == [(v,) * 3 for v in expected]


def test_float_tiff_loads(tmp_path):
    path = save(Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)), tmp_path / "f.tif")
    image = load_image(path)
    assert [image.getpixel((x, 0)) for x in range(3)] == [BLACK, (128,) * 3, WHITE]


def test_bilevel_image_is_black_and_white(tmp_path):
    bilevel = Image.new("1", (2, 1))
    bilevel.putpixel((1, 0), 1)
    image = load_image(save(bilevel, tmp_path / "bw.png"))
    assert [image.getpixel((x, 0)) for x in range(2)] == [BLACK, WHITE]


def test_ycbcr_and_lab_keep_their_colours():
    assert_colour(load_image(Image.new("RGB", (2, 2), RED).convert("YCbCr")).getpixel((0, 0)), RED, 3)
    lab = Image.new("LAB", (2, 1), (0, 128, 128))  # L*=0: black
    lab.putpixel((1, 0), (255, 128, 128))  # L*=100: white
    image = load_image(lab)
    assert_colour(image.getpixel((0, 0)), BLACK, 2)
    assert_colour(image.getpixel((1, 0)), WHITE, 2)


# --- inputs other than paths -------------------------------------------------------------------


def test_bytes_and_file_objects_load(tmp_path):
    path = save(Image.new("RGB", (4, 4), ORANGE), tmp_path / "photo.png")
    assert load_image(path.read_bytes()).getpixel((0, 0)) == ORANGE
    assert load_image(str(path)).getpixel((0, 0)) == ORANGE
    with path.open("rb") as file:
        assert load_image(file).getpixel((0, 0)) == ORANGE
        assert not file.closed  # the caller's file stays the caller's to close


def test_non_seekable_stream_loads(tmp_path):
    # e.g. an image piped to stdin
    data = save(Image.new("RGB", (4, 4), ORANGE), tmp_path / "piped.png").read_bytes()
    read_end, write_end = os.pipe()
    os.write(write_end, data)  # a few hundred bytes: fits in the pipe buffer
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        assert not pipe.seekable()
        assert load_image(pipe).getpixel((0, 0)) == ORANGE


def test_pil_image_input_is_normalised_without_changing_it():
    rgba = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    assert load_image(rgba).getpixel((0, 0)) == WHITE
    assert rgba.mode == "RGBA" and rgba.getpixel((0, 0)) == (0, 0, 0, 0)


def test_loaded_image_outlives_its_file(tmp_path):
    path = save(Image.new("RGB", (4, 4), ORANGE), tmp_path / "gone.png")
    image = load_image(path)
    path.unlink()
    assert image.getpixel((3, 3)) == ORANGE


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
@pytest.mark.filterwarnings("error")  # a file left for the garbage collector raises ResourceWarning
def test_no_file_handles_leak(tmp_path):
    paths = [save(noise(), tmp_path / f"p{suffix}") for suffix in (".png", ".gif", ".jpg", ".heic", ".tif")]
    broken = tmp_path / "broken.png"
    broken.write_bytes(paths[0].read_bytes()[:2000])
    load_image(paths[0])  # warm-up: first use may open shared libraries
    before = open_fd_count()
    for _ in range(10):
        for path in paths:
            load_image(path)
        with pytest.raises(ImageLoadError):
            load_image(broken)
    assert open_fd_count() == before


# --- errors ------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    message = load_error(tmp_path / "nowhere.jpg")
    assert "nowhere.jpg" in message and "file not found" in message


def test_directory(tmp_path):
    folder = tmp_path / "album.jpg"
    folder.mkdir()
    message = load_error(folder)
    assert "album.jpg" in message and "directory" in message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    message = load_error(path)
    assert "empty.png" in message and "empty file (0 bytes)" in message


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list: eggs, milk\n")
    message = load_error(path)
    assert "notes.jpg" in message and "not an image or unsupported format" in message


def test_random_bytes():
    garbage = random.Random(0).randbytes(4096)
    assert "not an image or unsupported format" in load_error(garbage)
    assert "not an image or unsupported format" in load_error(io.BytesIO(garbage))


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".heic"])
def test_truncated_file_is_an_error_not_grey_padding(tmp_path, suffix):
    path = save(noise(), tmp_path / f"cut{suffix}", quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = load_error(path)
    assert f"cut{suffix}" in message and "truncated or corrupt image data" in message


def test_permission_denied(tmp_path):
    path = save(Image.new("RGB", (4, 4)), tmp_path / "secret.png")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running with privileges that read a chmod 000 file (e.g. root)")
        message = load_error(path)
    finally:
        path.chmod(0o644)
    assert "secret.png" in message and "permission denied" in message


def test_pixel_limit_is_exact(tmp_path):
    path = save(Image.new("RGB", (20, 20), ORANGE), tmp_path / "small.png")
    assert load_image(path, max_pixels=400).size == (20, 20)
    message = load_error(path, max_pixels=399)
    assert "small.png" in message and "20x20 = 400 pixels, over the limit of 399" in message


@pytest.mark.filterwarnings("error")  # Pillow's DecompressionBombWarning must not escape either
def test_huge_declared_size_is_refused_from_the_header(tmp_path):
    # The pixel data is far too short: decoding it would fail with "truncated", so the size
    # message proves the limit is checked before any decoding.
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_declared_size(12_000, 12_000))
    message = load_error(path)
    assert "bomb.png" in message
    assert f"12000x12000 = 144,000,000 pixels, over the limit of {MAX_PIXELS:,}" in message


@pytest.mark.filterwarnings("error")
def test_size_beyond_pillows_own_limit_is_the_same_too_large_error(tmp_path):
    # Pillow refuses above twice its limit (179 MP) with its own error; the user must still
    # hear our limit, the way a 144 MP image says it (the server's 413, not a 422).
    path = tmp_path / "bigger-bomb.png"
    path.write_bytes(png_with_declared_size(30_000, 30_000))
    with pytest.raises(ImageTooLargeError) as info:
        load_image(path)
    assert "bigger-bomb.png" in str(info.value)
    assert f"30000x30000 = 900,000,000 pixels, over the limit of {MAX_PIXELS:,}" in str(info.value)


@pytest.mark.filterwarnings("error")  # a DecompressionBombWarning fails the test
def test_our_pixel_limit_is_the_only_one(tmp_path, monkeypatch):
    # Pillow's limit scaled down, so images on both sides of it stay small: 1,600 pixels is in
    # its warning band, 10,000 beyond its error. Within max_pixels, both load, silently.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for side in (40, 100):
        path = save(Image.new("RGB", (side, side), ORANGE), tmp_path / f"{side}.png")
        assert load_image(path, max_pixels=side * side).size == (side, side)
        with pytest.raises(ImageTooLargeError):
            load_image(path, max_pixels=side * side - 1)
    assert Image.MAX_IMAGE_PIXELS == 1000  # Pillow's setting is left as it was


# --- extensions --------------------------------------------------------------------------------


def test_is_image_path():
    assert all(is_image_path(f"x{suffix}") for suffix in IMAGE_EXTENSIONS)
    assert is_image_path("Holiday.JPG") and is_image_path(Path("dir/phone.HeIc"))
    assert not any(is_image_path(name) for name in ("notes.txt", "jpg", "archive.png.zip"))


def test_a_fifo_named_like_an_image_is_an_error_not_a_hang(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    # A subprocess, so that a blocking open fails the test instead of hanging the run.
    code = ("import sys, vislang.images as im\n"
            "try:\n    im.load_image(sys.argv[1])\n"
            "except im.ImageLoadError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip() == f"cannot read image {fifo}: not a regular file (a FIFO)"
