"""EvaluationResult (tasks/evaluate/result.py): the JSON it reads is the JSON it writes, for the files already
on disk (the bundled models' metadata and metrics.json), hand-written fixtures and keys it does not know."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tasks.evaluate.result import EvaluationResult

BUNDLED = Path(__file__).resolve().parents[2] / "models" / "bundled"


@pytest.mark.parametrize("document", [
    pytest.param(json.loads((BUNDLED / "cifar10" / "metadata.json").read_text())["metrics"], id="metadata.json"),
    pytest.param(json.loads((BUNDLED / "cifar100" / "reports" / "metrics.json").read_text()), id="metrics.json"),
    pytest.param({"dataset_version": "v1", "test_top1": 0.5}, id="by hand"),
    pytest.param({"test_top1": 0.5, "from_a_newer_version": {"k": 1}}, id="unknown key"),
])
def test_a_metrics_document_reads_and_writes_back_unchanged(document):
    result = EvaluationResult.from_dict(document)
    assert result.as_dict() == document and list(result.as_dict()) == list(document)  # keys in field order, as written
    assert EvaluationResult.from_dict(json.loads(json.dumps(result.as_dict()))) == result


def test_the_fields_say_what_was_measured():
    document = json.loads((BUNDLED / "cifar10" / "metadata.json").read_text())["metrics"]
    result = EvaluationResult.from_dict(document)
    assert result.dataset == "cifar10" and result.test_images == 10_000
    assert 0 < result.test_top1 <= result.test_top5 <= 1 and result.extra == {}
    assert result.model_id is None and "model_id" not in result.as_dict()  # None is left out
    named = result.identified(model_id="m1", reports_dir="/tmp/r")
    assert (named.model_id, named.reports_dir, named.test_top1) == ("m1", "/tmp/r", result.test_top1)
    assert list(named.as_dict())[-2:] == ["model_id", "reports_dir"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.test_top1 = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        EvaluationResult.from_dict({"dataset_version": "v1"})  # test_top1 is the one figure always there
