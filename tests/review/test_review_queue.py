"""The review queue as the app serves it (GET /api/queue, the page's filter form) over folders tagged by
the CLI with the bundled CIFAR-10 and CIFAR-100 models, on PostgreSQL and SQLite."""

from __future__ import annotations

import pytest


def test_the_queue_filters_by_run_source_label_and_model(tagged, serve, client):
    env, db_url, folders = tagged
    server = serve(env, db_url)
    everything = client.get(server.base + "/api/queue").json()
    cards = everything["cards"]
    assert len(cards) == 8
    # what teaches most first: abstentions, then the smallest margin between the two best
    order = [(card["label"] is not None, card["margin"]) for card in cards]
    assert order == sorted(order)
    for card in cards:  # the margin, computed by the database from the stored candidates
        first, second = (candidate["probability"] for candidate in card["candidates"][:2])
        assert card["margin"] == pytest.approx(first - second)

    models = {card["model_version"] for card in cards}
    assert len(models) == 2
    for model in models:
        chosen = client.get(server.base + "/api/queue", params={"model": model}).json()
        assert {card["model_version"] for card in chosen["cards"]} == {model} and len(chosen["cards"]) == 4
        assert list(chosen["classes"]) == [model]
    cifar100 = client.get(server.base + "/api/queue", params={"source": str(folders["cifar100"])}).json()
    assert all(card["image_uri"].startswith(str(folders["cifar100"])) for card in cifar100["cards"])
    assert [len(classes) for classes in cifar100["classes"].values()] == [100]
    run_id = cards[0]["run_id"]
    assert {card["run_id"] for card in client.get(server.base + "/api/queue", params={"run": run_id}).json()["cards"]} \
        == {run_id}
    labelled = next(card for card in cards if card["label"] is not None)
    by_label = client.get(server.base + "/api/queue", params={"label": labelled["label"]}).json()["cards"]
    assert by_label and {card["label"] for card in by_label} == {labelled["label"]}
    assert client.get(server.base + "/api/queue", params={"limit": 3}).json()["cards"] == cards[:3]

    page = client.get(server.base + "/", params={"model": sorted(models)[0]}).text
    for model in models:  # the filter form offers every model, the chosen one selected
        assert f'<option value="{model}"' in page
    assert f'<option value="{sorted(models)[0]}" selected>' in page
