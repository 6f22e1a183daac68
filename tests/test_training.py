"""Training, export and evaluation end to end on a small slice of real FSDD, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from audio_maas.cli import main
from audio_maas.features.spec import FeatureSpec
from audio_maas.protocol.contract import INPUT_NAME, OUTPUT_NAME, SIGNATURE_KEY
from audio_maas.protocol.model_dir import read_labels
from audio_maas.training.config import TrainConfig
from audio_maas.training.dataset import DIGIT_LABELS, UNKNOWN_LABEL, load_fsdd, select_split
from audio_maas.training.evaluate import compute_metrics, predict
from audio_maas.training.featurise import featurise
from audio_maas.training.models import build_model, shift_logit
from audio_maas.training.outside_voices import ALLISON_CREDIT
from audio_maas.training.train import train
from tests.conftest import SHARED_DATA, assert_distributions, chain_bound

SPEAKERS = ("george", "jackson")
INDICES = (0, 1, 5, 10, 11, 12, 13, 14, 15, 16)


@pytest.fixture(scope="module")
def small_fsdd(fsdd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two speakers, ten takes of each digit: 200 real recordings (links, not copies)."""
    root = tmp_path_factory.mktemp("fsdd") / "recordings"
    root.mkdir()
    for digit in range(10):
        for speaker in SPEAKERS:
            for index in INDICES:
                name = f"{digit}_{speaker}_{index}.wav"
                (root / name).symlink_to(fsdd_dir / "recordings" / name)
    return root.parent


@pytest.fixture(scope="module", params=["cnn", pytest.param("lstm+unknown", marks=pytest.mark.slow)])
def trained(request: pytest.FixtureRequest, small_fsdd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CNN on digits; the LSTM on digits and ``unknown`` (three of each Speech Commands folder),
    with a bias against ``unknown``."""
    arch, _, unknown = request.param.partition("+")
    model_dir = tmp_path_factory.mktemp(arch) / "model"
    argv = ["train", "--arch", arch, "--data-dir", str(small_fsdd), "--out", str(model_dir)]
    argv += ["--epochs", "3", "--augment-copies", "1", "--synthetic-takes", "1"]
    if unknown:
        argv += ["--unknown", str(SHARED_DATA / "speech-commands"), "--unknown-per-class", "3"]
        argv += ["--unknown-bias", "-1.5"]
    assert main(argv) == 0
    return model_dir


def _labels(model_dir: Path) -> list[str]:
    return [*DIGIT_LABELS, UNKNOWN_LABEL] if "lstm" in str(model_dir) else DIGIT_LABELS


def test_model_directory_holds_savedmodel_spec_labels_card_and_report(trained: Path) -> None:
    for name in ["saved_model.pb", "feature_spec.json", "labels.txt", "MODEL_CARD.md", "metrics.json", "training.json"]:
        assert (trained / name).is_file(), name
    for plot in ["confusion_matrix.png", "roc_curves.png", "training_curves.png"]:
        assert (trained / "report" / plot).read_bytes().startswith(b"\x89PNG"), plot
    assert read_labels(trained) == _labels(trained)
    assert FeatureSpec.read(trained) == FeatureSpec()


def test_serving_signature_has_the_contract_names_and_shapes(trained: Path) -> None:
    signature = tf.saved_model.load(str(trained)).signatures[SIGNATURE_KEY]
    inputs = signature.structured_input_signature[1]
    assert list(inputs) == [INPUT_NAME]
    assert inputs[INPUT_NAME].shape.as_list() == [None, *FeatureSpec().feature_shape]
    assert inputs[INPUT_NAME].dtype == tf.float32
    outputs = signature.structured_outputs
    assert list(outputs) == [OUTPUT_NAME] and outputs[OUTPUT_NAME].shape.as_list() == [None, len(_labels(trained))]


def test_exported_model_outputs_probabilities(trained: Path, small_fsdd: Path) -> None:
    features = featurise(load_fsdd(small_fsdd)[:20], FeatureSpec(), workers=1)
    probabilities = predict(trained, features)
    assert probabilities.shape == (20, len(_labels(trained)))
    assert_distributions(probabilities)


def test_training_learns_beyond_chance_and_records_its_history(trained: Path) -> None:
    training = json.loads((trained / "training.json").read_text())
    assert len(training["history"]["loss"]) == 3
    assert training["history"]["loss"][-1] < training["history"]["loss"][0]
    assert training["examples"]["synthetic_utterances"] > 0
    # Three epochs on 200 clips fit the training data well beyond chance (0.1); held-out accuracy
    # needs the full run (batch-norm statistics lag at this few steps), which the bundled model covers.
    assert training["history"]["accuracy"][-1] > 0.5
    metrics = json.loads((trained / "metrics.json").read_text())
    assert "synthetic_held_out_voices_accuracy" in metrics  # scored on voices training never heard
    assert "outside_voice_accuracy" in metrics  # and on a real one (make system-deps installs it)
    if UNKNOWN_LABEL not in read_labels(trained):
        assert metrics["n"] == 40
        return
    # unknown: 3 of each of 11 Speech Commands folders, some of them from held-out speakers, plus silences
    assert 40 < metrics["n"] < 40 + 33 and metrics["per_class"][UNKNOWN_LABEL]["n"] == metrics["n"] - 40
    assert training["dataset"]["unknown_recordings"] == 33 and training["examples"]["silences"] == 10


def test_card_reports_the_measured_figures(trained: Path) -> None:
    card = (trained / "MODEL_CARD.md").read_text()
    metrics = json.loads((trained / "metrics.json").read_text())
    assert f"| accuracy | {metrics['accuracy']:.4f} |" in card
    assert f"| F1 (macro) | {metrics['f1_macro']:.4f} |" in card
    assert "CC BY-SA 4.0" in card
    assert f"| accuracy on a real voice outside FSDD (Limits) | {metrics['outside_voice_accuracy']:.4f} |" in card
    assert f"were measured: {metrics['outside_voice_accuracy']:.0%} right" in card and ALLISON_CREDIT in card
    if UNKNOWN_LABEL in read_labels(trained):
        unknown = metrics["per_class"][UNKNOWN_LABEL]
        assert f"| unknown | {unknown['precision']:.4f} | {unknown['recall']:.4f} |" in card
        assert "Speech Commands v0.02 by Pete Warden" in card and "CC BY 4.0" in card
        assert "10 clips of digital silence or faint hiss" in card
        assert "-1.5 was added to `unknown`'s logit" in card and "0.223 times" in card


def test_evaluate_command_reproduces_the_figures_of_training(
    trained: Path, small_fsdd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", "--model", str(trained), "--data-dir", str(small_fsdd), "--report", str(tmp_path)]
    if UNKNOWN_LABEL in read_labels(trained):  # the same draw as training's: the same test clips
        argv += ["--unknown", str(SHARED_DATA / "speech-commands"), "--unknown-per-class", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    recorded = json.loads((trained / "metrics.json").read_text())
    fresh = json.loads((tmp_path / "metrics.json").read_text())
    assert fresh["accuracy"] == recorded["accuracy"]
    assert fresh["confusion_matrix"] == recorded["confusion_matrix"]
    assert f"accuracy={recorded['accuracy']:.4f}" in printed
    assert (tmp_path / "confusion_matrix.png").is_file()
    counts = np.sum(fresh["confusion_matrix"], axis=1)
    present = {label for label, count in zip(fresh["labels"], counts, strict=True) if count}
    assert {path.stem for path in (tmp_path / "explanations").glob("*.png")} == present  # one figure per class


def test_metrics_match_hand_computed_values() -> None:
    labels = ["a", "b", "c"]
    y_true = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array(
        [[0.8, 0.1, 0.1], [0.4, 0.5, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.3, 0.1, 0.6]]
    )
    result = compute_metrics(y_true=y_true, probabilities=probabilities, labels=labels)
    assert result["accuracy"] == pytest.approx(5 / 6)
    assert result["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 2]]
    assert result["precision_macro"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert result["recall_macro"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert result["roc_auc"]["c"] == pytest.approx(1.0)
    assert result["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "n": 2}


def test_unknown_bias_scales_the_odds_of_one_class_and_keeps_the_others() -> None:
    features = np.random.default_rng(0).normal(size=(16, 101, 40)).astype(np.float32)
    model = build_model(arch="cnn", train_features=features, n_classes=3, cnn_filters=(4,))
    before = model.predict(features, verbose=0)
    shift_logit(model, 2, -1.5)
    after = model.predict(features, verbose=0)
    # The same kernels on the same input but for one logit's bias: each ratio of two softmax outputs
    # rounds by at most twice a softmax row's (classes + 2) eps, before and after; the kernels by chain_bound.
    fan_ins = [int(np.prod(w.shape[:-1])) for w in model.weights if w.name.endswith("kernel")]
    assert fan_ins, [w.name for w in model.weights]
    rtol = 4 * (3 + 2) * np.finfo(np.float32).eps + chain_bound(fan_ins)
    np.testing.assert_allclose(after[:, 2] / after[:, 0], before[:, 2] / before[:, 0] * np.exp(-1.5), rtol=rtol)
    np.testing.assert_allclose(after[:, 1] / after[:, 0], before[:, 1] / before[:, 0], rtol=rtol)


def test_unknown_bias_needs_an_unknown_class(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--unknown DIR"):
        train(TrainConfig(unknown_bias=-1.0), train_set=[], validation_set=[], model_dir=tmp_path)


def test_evaluate_refuses_labels_the_model_does_not_know(trained: Path, small_fsdd: Path) -> None:
    from dataclasses import replace

    from audio_maas.training.evaluate import evaluate

    stranger = replace(select_split(load_fsdd(small_fsdd), "test")[0], label="eleven")
    with pytest.raises(ValueError, match="eleven"):
        evaluate(trained, [stranger])


def test_cli_reports_a_missing_data_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--model", str(tmp_path), "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
