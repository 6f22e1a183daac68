"""The bundled model: re-evaluated on the FSDD test split, it scores what its card says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import BUNDLED_MODEL
from training.dataset import load_fsdd, select_split
from training.evaluate import evaluate


@pytest.fixture(scope="module")
def fresh_metrics(fsdd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return evaluate(BUNDLED_MODEL, select_split(load_fsdd(fsdd_dir), "test"), report_dir=tmp_path_factory.mktemp("r"))


def test_bundled_model_is_small() -> None:
    size = sum(path.stat().st_size for path in BUNDLED_MODEL.rglob("*") if path.is_file())
    assert size < 5 * 2**20, f"bundled model is {size / 2**20:.1f} MiB"


def test_reevaluation_meets_the_target_and_matches_the_recorded_metrics(fresh_metrics: dict) -> None:
    recorded = json.loads((BUNDLED_MODEL / "metrics.json").read_text())
    assert fresh_metrics["n"] == recorded["n"] == 300
    assert fresh_metrics["accuracy"] >= 0.99
    assert fresh_metrics["accuracy"] == recorded["accuracy"]
    assert fresh_metrics["confusion_matrix"] == recorded["confusion_matrix"]
    for key in ["precision_macro", "recall_macro", "f1_macro", "roc_auc_macro"]:
        assert fresh_metrics[key] == pytest.approx(recorded[key], abs=1e-4), key


def test_card_states_the_reevaluated_figures(fresh_metrics: dict) -> None:
    card = (BUNDLED_MODEL / "MODEL_CARD.md").read_text()
    assert f"| accuracy | {fresh_metrics['accuracy']:.4f} |" in card
    assert f"| F1 (macro) | {fresh_metrics['f1_macro']:.4f} |" in card
    assert "CC BY-SA 4.0" in card
