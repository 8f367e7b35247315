"""The run page (tasks/tag/report.py) links to `hashtagger review` for its run and shows the reviewed
accuracy of its model from sql/queries/reviewed_accuracy.sql."""

from __future__ import annotations

import html
import re

import sqlalchemy as sa

from tasks.store import db, reviews_sql
from tasks.tag import report


def test_the_run_page_links_to_the_review_and_shows_reviewed_accuracy(tagged):
    _, db_url, folders = tagged
    engine = db.engine(db_url)
    with engine.connect() as connection:
        run_id, model = connection.execute(sa.text(
            "SELECT run_id, model_version FROM tagging_runs WHERE source = :source"),
            {"source": str(folders["cifar10"])}).one()
    page = report.write(engine, [run_id]).read_text()
    assert f'href="http://127.0.0.1:8765/?run={run_id}"' in page
    assert "reviewed accuracy" not in page, "no answers yet: no figure"

    items = [item for item in reviews_sql.queue(engine, reviews_sql.QueueFilter(run=run_id))]
    assert len(items) == 4
    for index, item in enumerate(items):  # three agree with the model, one says none of these classes
        label = item.label if index < 3 else None
        reviews_sql.record_answer(engine, f"answer-{index:04d}", item.image_uri, item.content_hash,
                                  item.model_version, label, "ana")
    page = html.unescape(report.write(engine, [run_id]).read_text())
    assert model in page
    shown = re.search(r"<th align=left>reviewed accuracy</th><td>([^<]+)</td>", page).group(1)
    assert shown == "75% of 4 reviewed images (95% interval 30% to 95%)"
