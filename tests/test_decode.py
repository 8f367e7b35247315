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
    if expect == hostile.TAGGED:
        tile = decode.decode(data)
        assert tile.shape == (32, 32, 3) and tile.dtype == np.uint8
    else:
        with pytest.raises(decode.ImageError) as raised:
            decode.decode(data)
        assert expect in str(raised.value)


def test_reasons_are_sentences_not_tracebacks():
    for _, (data, expect) in CASES:
        if expect != hostile.TAGGED:
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
