"""A person reviews by keyboard in a real browser (Debian's chromium, headless, driven by Playwright) and
their answers, exactly those, are in image_reviews: on PostgreSQL and on SQLite, for a CIFAR-10 and a
CIFAR-100 model at once."""

from __future__ import annotations

import shutil

import pytest
import sqlalchemy as sa

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    return path


@pytest.fixture
def page(chromium):
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield browser.new_page()
        browser.close()


def shown(page) -> str:
    """The key of the image the page shows, once no request is in flight."""
    page.wait_for_selector("body[data-busy='0'][data-loaded='1']")
    return page.get_attribute("#card", "data-uri")


def press(page, key: str, answered: int | None = None) -> None:
    """Press `key` on the page; wait until `answered` answers stand on it (when given) and nothing is in flight."""
    page.keyboard.press(key)
    if answered is not None:
        page.wait_for_selector(f"body[data-answered='{answered}']")
    page.wait_for_selector("body[data-busy='0']")


def stored(db_url: str) -> tuple[list[tuple], set[tuple]]:
    """(every image_reviews row as (image, label, reviewer, retracted image or None), the current answers)."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT r.image_uri, r.label, r.reviewer, a.image_uri FROM image_reviews r "
                "LEFT JOIN image_reviews a ON a.review_id = r.retracts ORDER BY r.review_seq")).all()
            current = connection.execute(sa.text("SELECT image_uri, label FROM image_reviews_current")).all()
    finally:
        engine.dispose()
    return [tuple(row) for row in rows], {tuple(row) for row in current}


def test_five_cards_answered_by_keyboard_are_exactly_the_rows_in_image_reviews(tagged, serve, client, page):
    env, db_url, _ = tagged
    server = serve(env, db_url)
    queue = client.get(server.base + "/api/queue").json()
    cards = {card["image_uri"]: card for card in queue["cards"]}
    assert {card["model_version"].split("-")[1] for card in cards.values()} == {"cifar10", "cifar100"}
    assert {len(classes) for classes in queue["classes"].values()} == {10, 100}

    page.goto(server.base + "/")
    first = shown(page)
    assert first == queue["cards"][0]["image_uri"], "the page asks in the queue's order"
    # the picture arrives (served through the result row) and decodes
    page.wait_for_function("() => { const img = document.getElementById('picture');"
                           " return img.complete && img.naturalWidth > 0; }", timeout=30_000)
    press(page, "Enter", answered=1)  # accept the model's best
    second = shown(page)
    press(page, "2", answered=2)  # pick the second candidate
    third = shown(page)
    press(page, "0", answered=3)  # none of these classes
    fourth = shown(page)
    press(page, "u")  # undo: "none" for the third is retracted, and the third is asked again
    assert shown(page) == third
    press(page, "ArrowRight")  # skip it: nothing is written
    assert shown(page) == fourth
    searched = cards[fourth]["model_version"]
    wanted = queue["classes"][searched][-1]  # truck (CIFAR-10) or worm (CIFAR-100): any class, by search
    press(page, "/")
    page.keyboard.type(wanted)
    press(page, "Enter", answered=4)
    assert shown(page) not in (first, second, fourth)

    rows, current = stored(db_url)
    assert rows == [(first, cards[first]["candidates"][0]["label"], "ana", None),
                    (second, cards[second]["candidates"][1]["label"], "ana", None),
                    (third, None, "ana", None),
                    (third, None, "ana", third),  # the undo: a retraction row, nothing deleted
                    (fourth, wanted, "ana", None)]
    assert current == {(first, cards[first]["candidates"][0]["label"]),
                       (second, cards[second]["candidates"][1]["label"]), (fourth, wanted)}
    # answered images leave the queue; the skipped and the retracted one stay
    remaining = [card["image_uri"] for card in client.get(server.base + "/api/queue").json()["cards"]]
    assert third in remaining and not {first, second, fourth} & set(remaining)
    assert len(remaining) == len(cards) - 3
