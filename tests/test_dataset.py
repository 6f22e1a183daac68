"""The FSDD loader and its splits, on the real recordings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from training.dataset import DIGIT_LABELS, load_fsdd, select_split


def test_loader_reads_all_of_fsdd_with_labels_speakers_and_indices(fsdd_dir: Path) -> None:
    utterances = load_fsdd(fsdd_dir)
    assert len(utterances) == 3000
    assert {u.label for u in utterances} == set(DIGIT_LABELS)
    assert len({u.speaker for u in utterances}) == 6
    first = next(u for u in utterances if u.name == "7_jackson_32.wav")
    assert (first.label, first.speaker, first.index) == ("7", "jackson", 32)
    assert first.data == (fsdd_dir / "recordings" / "7_jackson_32.wav").read_bytes()


def test_official_test_split_is_index_0_to_4(fsdd_dir: Path) -> None:
    utterances = load_fsdd(fsdd_dir)
    test, train = select_split(utterances, "test"), select_split(utterances, "train")
    assert len(test) == 300 and len(train) == 2700
    assert {u.index for u in test} == set(range(5))
    assert min(u.index for u in train) == 5
    assert len(select_split(utterances, "all")) == 3000


def test_excluded_speakers_are_left_out_of_every_split(fsdd_dir: Path) -> None:
    utterances = load_fsdd(fsdd_dir)
    kept = select_split(utterances, "all", exclude_speakers=["theo", "lucas"])
    assert len(kept) == 2000 and not {"theo", "lucas"} & {u.speaker for u in kept}


def test_loader_takes_a_flat_directory_in_the_same_layout(tmp_path: Path, fsdd_dir: Path) -> None:
    for name in ["3_theo_0.wav", "4_nicolas_12.wav"]:
        shutil.copy(fsdd_dir / "recordings" / name, tmp_path / name)
    assert [u.name for u in load_fsdd(tmp_path)] == ["3_theo_0.wav", "4_nicolas_12.wav"]


def test_loader_refuses_files_outside_the_layout_instead_of_skipping_them(tmp_path: Path) -> None:
    (tmp_path / "hello.wav").write_bytes(b"RIFF")
    with pytest.raises(ValueError, match=r"hello\.wav does not follow the FSDD layout"):
        load_fsdd(tmp_path)


def test_loader_says_when_there_is_nothing_to_load(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no FSDD recordings"):
        load_fsdd(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_fsdd(tmp_path / "missing")


def test_split_name_is_checked() -> None:
    with pytest.raises(ValueError, match="split must be"):
        select_split([], "validation")  # type: ignore[arg-type]
