"""Train/serve parity: the features training learns from are the features serving computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audio_maas.features.frontend import FrontEnd
from audio_maas.features.spec import FeatureSpec
from audio_maas.training.dataset import load_fsdd, select_split
from audio_maas.training.featurise import featurise


def test_training_features_equal_serving_features_for_real_recordings(fsdd_dir: Path, tmp_path: Path) -> None:
    """Training featurises in worker processes from its loader; serving reads the spec back from
    the model directory and runs the front end on the request bytes. Every value must agree."""
    utterances = select_split(load_fsdd(fsdd_dir), "test")[::3]  # 100 files, all speakers and digits
    spec = FeatureSpec()
    training_features = featurise(utterances, spec, workers=2)

    spec.write(tmp_path)
    serving = FrontEnd(FeatureSpec.read(tmp_path))
    for utterance, trained_on in zip(utterances, training_features, strict=True):
        served = serving.from_bytes(data=(fsdd_dir / "recordings" / utterance.name).read_bytes(), max_duration_s=60)
        np.testing.assert_array_equal(served, trained_on, err_msg=utterance.name)
