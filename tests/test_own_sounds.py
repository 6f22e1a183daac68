"""A user's own recordings, as a new user would go: a folder per class -> ``audio-maas train``
-> ``serve --model`` -> ``predict``. The folder is built from real Speech Commands recordings
(16 kHz FLAC, other words than digits), nested and with numbered folder names."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from audio_maas.cli import main
from audio_maas.features.spec import FeatureSpec
from audio_maas.protocol.model_dir import read_labels
from audio_maas.serving.settings import ServiceSettings
from audio_maas.training.dataset import load_dataset, select_split
from audio_maas.training.evaluate import predict
from audio_maas.training.featurise import featurise
from tests.conftest import SHARED_DATA, loopback_settings, running_service

WORDS = {"01 - yes": "yes", "02 - no": "no", "03 - _silence_": "_silence_"}


@pytest.fixture(scope="module")
def own_recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("my-recordings")
    for name, word in WORDS.items():
        files = sorted((SHARED_DATA / "speech-commands" / word).glob("*.flac"))[:24]
        for index, path in enumerate(files):
            target = folder / name / ("take-a" if index % 2 else "take-b") / path.name  # nested, as users keep them
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    return folder


@pytest.fixture(scope="module")
def words_model(own_recordings: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("models") / "words"
    arguments = ["train", "--data-dir", str(own_recordings), "--out", str(model_dir), "--epochs", "3"]
    assert main([*arguments, "--augment-copies", "1", "--batch-size", "16"]) == 0
    return model_dir


def test_training_on_a_folder_per_class_exports_the_folders_labels_and_a_spec_from_the_data(
    words_model: Path,
) -> None:
    assert read_labels(words_model) == ["_silence_", "no", "yes"]
    spec = FeatureSpec.read(words_model)
    assert (spec.sample_rate, spec.clip_s) == (16000, 1.0)
    training = json.loads((words_model / "training.json").read_text())
    assert training["examples"]["synthetic_utterances"] == 0  # espeak digits only for digit labels
    assert training["dataset"]["layout"] == "folders" and training["dataset"]["recordings"] == 72
    card = (words_model / "MODEL_CARD.md").read_text()
    assert "Classifies a recording as one of 3 classes: _silence_, no, yes." in card
    assert "under their own licence, which audio-maas does not know" in card
    assert "FSDD" not in card


def test_evaluate_scores_the_same_test_subset_the_training_held_out(
    words_model: Path, own_recordings: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["--model", str(words_model), "--data-dir", str(own_recordings), "--report", str(tmp_path)]
    assert main(["evaluate", *arguments]) == 0
    recorded = json.loads((words_model / "metrics.json").read_text())
    assert f"n={recorded['n']}  accuracy={recorded['accuracy']:.4f}" in capsys.readouterr().out


@pytest.fixture(scope="module")
def served(words_model: Path) -> Iterator[ServiceSettings]:
    settings = loopback_settings()
    with running_service(settings, models=["--model", str(words_model)]):
        yield settings


def test_the_trained_model_is_served_under_its_folders_name_and_answers_as_exported(
    served: ServiceSettings, words_model: Path, own_recordings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test = select_split(load_dataset(own_recordings).utterances, "test")
    offline = predict(words_model, featurise(test, FeatureSpec.read(words_model)))
    labels = read_labels(words_model)
    for utterance, probabilities in zip(test[:6], offline, strict=False):
        assert main(["predict", "--url", served.url, "--model", "words", utterance.name]) == 0
        printed = capsys.readouterr().out
        assert printed.startswith(f"{utterance.name}: {labels[int(np.argmax(probabilities))]}  (top-3"), printed


@pytest.mark.slow
def test_cross_validation_holds_out_each_fold_once_and_records_it_in_the_card(
    words_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ESC-10's file names give folds: two of its classes, one round per fold."""
    for name in ("001 - Dog bark", "005 - Clock tick"):
        shutil.copytree(SHARED_DATA / "esc10" / name, tmp_path / "sounds" / name)
    model_dir = shutil.copytree(words_model, tmp_path / "model")
    arguments = ["--data-dir", str(tmp_path / "sounds"), "--epochs", "1", "--augment-copies", "0"]
    assert main(["cross-validate", *arguments, "--model", str(model_dir)]) == 0
    result = json.loads((model_dir / "cross_validation.json").read_text())
    assert result["held_out"] == "fold" and list(result["accuracy"]) == ["fold1", "fold2", "fold3", "fold4"]
    assert f"mean: {result['mean_accuracy']:.4f} (standard deviation {result['std_accuracy']:.4f})" in (
        capsys.readouterr().out
    )
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert "## Cross-validation: one fold held out at a time" in card and "| fold4 |" in card
