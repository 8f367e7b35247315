"""--limit in one place (tasks/tag/stages.py Budget): new images (tagged or failed) use room, images done
before do not; a batch is trimmed at the limit; the run stops once it is reached."""

from __future__ import annotations

import pytest
from PIL import Image

from fixtures import hostile
from fixtures.tagging import run
from tasks.tag.refs import ImageRef
from tasks.tag.stages import Budget, Item


def items(states: str) -> list[Item]:
    """One Item per letter: d done, t tile, f failed, n new (a dry run's)."""
    names = {"d": "done", "t": "tile", "f": "failed", "n": "new"}
    return [Item(ImageRef(f"/photos/{index}.jpg"), names[letter]) for index, letter in enumerate(states)]


def states(kept: list[Item]) -> str:
    return "".join(item.state[0] for item in kept)


def test_no_limit_keeps_every_item_and_is_never_reached():
    budget = Budget(None)
    batch = items("tdfn" * 50)
    assert budget.take(batch) == batch
    assert budget.spent == 150 and not budget.reached()
    assert budget.may_queue(10**9)


def test_done_items_use_no_room():
    budget = Budget(2)
    assert states(budget.take(items("ddtdd"))) == "ddtdd"
    assert budget.spent == 1 and not budget.reached()
    assert states(budget.take(items("dddd"))) == "dddd"
    assert budget.spent == 1 and not budget.reached()


def test_a_batch_is_trimmed_at_the_limit_and_the_run_stops():
    budget = Budget(3)
    assert states(budget.take(items("tdf"))) == "tdf"
    assert budget.spent == 2 and not budget.reached()
    # one new image fits; done ones after it still fit, up to the next new one
    assert states(budget.take(items("dtddnttd"))) == "dtdd"
    assert budget.spent == 3 and budget.reached()
    assert budget.take(items("td")) == []  # nothing new fits any more (the pipeline stops before this)


def test_failed_images_use_room_like_tagged_ones():
    budget = Budget(2)
    assert states(budget.take(items("fff"))) == "ff"
    assert budget.reached()


def test_queued_images_hold_room_until_their_batch_is_taken():
    budget = Budget(10)
    assert budget.may_queue(0) and budget.may_queue(9)
    assert not budget.may_queue(10), "ten listed images may all be new: the room is full"
    budget.take(items("t" * 4))
    assert budget.may_queue(5) and not budget.may_queue(6)
    budget.take(items("d" * 20))
    assert budget.may_queue(5), "done images gave their room back"


def test_a_capped_run_after_another_counts_the_done_images_it_met_but_tags_only_its_limit(tmp_path, model, engine):
    (tmp_path / "photos").mkdir()
    for index in range(20):  # textured: a tile of one flat colour is refused as blank
        picture = hostile.textured(Image.new("RGB", (48, 40), (200, 20 + index, 20)))
        picture.save(tmp_path / "photos" / f"img{index:04d}.jpg")
    first = run(tmp_path / "photos", model, engine, limit=9)
    assert (first.tagged, first.skipped, first.seen) == (9, 0, 9)
    # the 5 untagged images that waited longest, then the listing again: its first two images are done and
    # fill the batch of 7 (done ones cost nothing); the run stops there, its limit reached
    second = run(tmp_path / "photos", model, engine, limit=5)
    assert (second.tagged, second.skipped, second.seen) == (5, 2, 7)


def test_a_limit_below_one_is_refused_by_the_settings_not_only_the_cli():
    """0 listed the source and tagged nothing, then said 'no images found' (the CLI refused it already)."""
    from tasks.tag.config import TagConfig

    for bad in (0, -1):
        with pytest.raises(ValueError, match="limit must be at least 1"):
            TagConfig(limit=bad)
    assert TagConfig(limit=1).limit == 1 and TagConfig().limit is None
