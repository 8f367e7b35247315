"""`hashtagger train --init-from MODEL`: a fine-tune starts from the saved model's weights, and a model
whose weights do not fit is refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.registry import artifact
from tasks.train import train

SMALL = (("widths", [16, 32, 32]),)  # airbench at a sixteenth of its channels: seconds on a CPU


@pytest.mark.slow
def test_a_fine_tune_starts_from_the_saved_weights(tiny_cifar, hashtagger_home):
    first = train.train(train.TrainConfig(architecture="airbench", recipe="airbench", epochs=1, model_overrides=SMALL,
                                          reports=False, verbose=0))
    # a rate of zero: the trainable weights stay where the run started (batch-norm statistics still move)
    tuned = train.train(train.TrainConfig(
        architecture="airbench", recipe="airbench", epochs=1, model_overrides=SMALL, reports=False,
        verbose=0, init_from=first["path"],
        recipe_overrides=(("learning_rate", 0.0), ("lookahead_every", 0))))
    start, end = artifact.load_keras(first["path"])[0], artifact.load_keras(tuned["path"])[0]
    for before, after in zip(start.trainable_weights, end.trainable_weights):
        np.testing.assert_allclose(np.asarray(before), np.asarray(after), atol=1e-6, err_msg=before.path)
    assert f"--init-from {first['path']} " in tuned["reproduce"]

    with pytest.raises(artifact.ArtifactError, match="its weights do not fit this airbench") as refused:
        train.train(train.TrainConfig(architecture="airbench", recipe="airbench", epochs=1, reports=False,
                                      verbose=0, init_from=first["path"]))  # full widths
    assert "\n" not in str(refused.value)
    with pytest.raises(artifact.ArtifactError, match="a airbench model of 10 classes, not a vgg16"):
        train.train(train.TrainConfig(architecture="vgg16", epochs=1, reports=False, verbose=0,
                                      init_from=first["path"]))
