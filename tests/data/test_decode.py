"""Decoding: every hostile file gives a 32x32 RGB tile or a reason a person understands; never a crash."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from fixtures import hostile
from tasks.data import images as decode

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

CASES = sorted(hostile.files().items())


@pytest.mark.parametrize("name, case", CASES, ids=[name[:40] for name, _ in CASES])
def test_every_hostile_file_is_a_tile_or_a_reason(name, case):
    data, expect = case
    if expect in (hostile.TAGGED, hostile.BLANK):
        tile = decode.decode(data)
        assert tile.shape == (32, 32, 3) and tile.dtype == np.uint8
        assert decode.is_flat(tile) == (expect == hostile.BLANK), "blank exactly when one flat colour"
    else:
        with pytest.raises(decode.ImageError) as raised:
            decode.decode(data)
        assert expect in str(raised.value)


def test_reasons_are_sentences_not_tracebacks():
    for _, (data, expect) in CASES:
        if expect not in (hostile.TAGGED, hostile.BLANK):
            with pytest.raises(decode.ImageError) as raised:
                decode.decode(data)
            reason = str(raised.value)
            assert reason and "\n" not in reason and "Traceback" not in reason and len(reason) < 300


def test_exif_orientation_is_applied():
    tile = decode.decode(hostile.exif_rotated_jpeg()).astype(int)
    top, bottom = tile[:12].reshape(-1, 3).mean(0), tile[-12:].reshape(-1, 3).mean(0)
    assert top[0] > 150 and top[2] < 60, "the left (red) half turns into the top"
    assert bottom[2] > 150 and bottom[0] < 60


def test_transparency_is_composed_on_white():
    tile = decode.decode(hostile.odd_modes()["palette-transparent.png"])
    assert (tile == 255).all()


def test_sixteen_bit_grey_keeps_its_range():
    assert (decode.decode(hostile.odd_modes()["grey16.png"]) == 255).all()


def test_cmyk_becomes_rgb():
    tile = decode.decode(hostile.odd_modes()["cmyk.jpg"]).astype(int)
    red, green, blue = tile.reshape(-1, 3).mean(0)
    assert red > 200 and green < 100 and blue < 100  # no cyan, full magenta and yellow: red


def test_animated_gif_uses_the_first_frame():
    red, green, blue = decode.decode(hostile.animated_gif()).reshape(-1, 3).mean(0)
    assert red > 200 and green < 30 and blue < 30


def test_jpeg_draft_mode_is_used_and_close_to_a_full_decode(monkeypatch):
    data = hostile.noisy_jpeg(size=(1600, 1200), seed=3)
    requested = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        requested.append(size)
        return original(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    fast = decode.decode(data).astype(int)
    assert requested == [(64, 64)]
    with Image.open(__import__("io").BytesIO(data)) as image:
        full = np.asarray(image.convert("RGB").resize((32, 32), Image.Resampling.LANCZOS)).astype(int)
    assert np.abs(fast - full).mean() < 4  # out of 255: the same picture


def test_decompression_bomb_limit_stays_on():
    assert Image.MAX_IMAGE_PIXELS is not None
    for width in (10_000, 20_000):  # 100 MP (over the warning threshold), 400 MP (over Pillow's error)
        with pytest.raises(decode.ImageError, match="too large"):
            decode.decode(hostile.png_header_only(width, width))


def test_threads_decode_the_same_as_one_thread():
    datas = [data for _, (data, _) in CASES] * 3

    def outcome(data):
        try:
            return decode.decode(data).tobytes()
        except decode.ImageError as error:
            return str(error)

    serial = [outcome(data) for data in datas]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert list(pool.map(outcome, datas)) == serial


@pytest.mark.parametrize("name", ["exif-unit-rational.jpg", "exif-xresolution-byte.jpg",
                                  "exif-yresolution-ascii.jpg", "exif-orientation-rational.jpg"])
def test_broken_exif_costs_no_image_and_the_orientation_is_still_applied(name):
    data, _ = hostile.metadata_cases()[name]
    notes = []
    tile = decode.decode(data, notes).astype(int)
    top, bottom = tile[:12].reshape(-1, 3).mean(0), tile[-12:].reshape(-1, 3).mean(0)
    assert top[0] > 150 and top[2] < 60 and bottom[2] > 150 and bottom[0] < 60, "turned upright"
    assert len(notes) == 1 and "EXIF metadata is malformed" in notes[0] and "orientation 6 applied" in notes[0]


@pytest.mark.parametrize("name", ["png-huge-ztxt.png", "png-huge-iccp.png", "png-huge-xmp.png"])
def test_oversized_metadata_chunks_are_skipped_with_a_note(name):
    data, _ = hostile.metadata_cases()[name]
    notes = []
    red, green, blue = decode.decode(data, notes).reshape(-1, 3).mean(0)
    assert red > 170 and green < 60 and blue < 60, "the picture, not a placeholder"
    assert notes == ["metadata skipped: unreadable image (Decompressed data too large for "
                     "PngImagePlugin.MAX_TEXT_CHUNK)"]


def test_a_good_image_has_no_notes():
    notes = []
    decode.decode(hostile.exif_rotated_jpeg(), notes)
    assert notes == []


@pytest.mark.parametrize("name", ["alpha-zero-rgba.png", "alpha-zero-rgba.tif", "alpha-zero-la.png"])
def test_an_alpha_that_hides_the_whole_picture_is_ignored(name):
    data, _ = hostile.alpha_cases()[name]
    notes = []
    tile = decode.decode(data, notes)
    assert not decode.is_flat(tile) and not (tile == 255).all(), "not a blank white tile"
    assert notes == ["the transparency hides the whole picture; its colours were used without it"]


def test_partial_transparency_is_still_composed_on_white():
    image = hostile.textured(Image.new("RGB", (40, 40), (30, 160, 40))).convert("RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 20, 40))  # the left half transparent
    tile = decode.decode(hostile.encode(image, "PNG"))
    assert (tile[:, :14] == 255).all() and tile[:, 20:, 1].mean() > 120


def test_phone_mpo_photos_are_decoded_in_draft_mode(monkeypatch):
    data = hostile.mpo()
    requested = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        requested.append((self.format, size))
        return original(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    decode.decode(data)
    assert requested == [("MPO", (64, 64))]


def test_flat_tiles_are_recognised_and_pictures_are_not():
    assert decode.is_flat(np.full((32, 32, 3), 128, np.uint8))
    nearly = np.full((32, 32, 3), 128, np.uint8)
    nearly[0, 0] = 131  # JPEG noise on a blank frame
    assert decode.is_flat(nearly)
    assert not decode.is_flat(decode.decode(hostile.jpeg()))
    assert not decode.is_flat(decode.decode(hostile.noisy_jpeg()))
