"""The FSDD loader and its splits, on the real recordings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from audio_maas.training.dataset import (
    DIGIT_LABELS,
    UNKNOWN_LABEL,
    class_label,
    is_digits,
    load_dataset,
    load_fsdd,
    select_split,
    spec_for,
    with_unknown,
)
from tests.conftest import SHARED_DATA


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


@pytest.mark.parametrize(
    ("folder", "label"),
    [("001 - Dog bark", "Dog bark"), ("2_no", "no"), ("10.rain", "rain"), ("_silence_", "_silence_"), ("yes", "yes")],
)
def test_a_class_folder_names_its_label_without_a_leading_number(folder: str, label: str) -> None:
    assert class_label(folder) == label


def test_esc10_folds_come_from_file_names_and_the_last_fold_is_the_test_set() -> None:
    dataset = load_dataset(SHARED_DATA / "esc10")
    assert dataset.layout == "folders" and len(dataset.utterances) == 320
    assert dataset.labels[:3] == ["Baby cry", "Chainsaw", "Clock tick"] and len(dataset.labels) == 10
    test = select_split(dataset.utterances, "test")
    assert {u.speaker.split(":")[0] for u in test} == {"fold4"} and len(test) == 80
    sources = {side: {u.speaker for u in dataset.utterances if u.subset == side} for side in ("train", "validation")}
    assert sources["train"] and sources["validation"] and not sources["train"] & sources["validation"]
    assert "4 (the last) is the test set" in dataset.split_rule


def test_speech_commands_speakers_stay_on_one_side_of_a_seeded_split(tmp_path: Path) -> None:
    for word in ("yes", "no", "_silence_"):
        shutil.copytree(SHARED_DATA / "speech-commands" / word, tmp_path / word)
    dataset = load_dataset(tmp_path, seed=3)
    sides = {}
    for utterance in dataset.utterances:
        assert sides.setdefault(utterance.speaker, utterance.subset) == utterance.subset, utterance.speaker
    counts = {side: sum(u.subset == side for u in dataset.utterances) for side in ("train", "validation", "test")}
    assert 0.1 < counts["test"] / len(dataset.utterances) < 0.3, counts
    assert [u.subset for u in load_dataset(tmp_path, seed=3).utterances] == [u.subset for u in dataset.utterances]
    assert [u.subset for u in load_dataset(tmp_path, seed=4).utterances] != [u.subset for u in dataset.utterances]


def test_folders_that_cannot_train_a_classifier_are_named(tmp_path: Path, fsdd_dir: Path) -> None:
    recording = (fsdd_dir / "recordings" / "0_theo_0.wav").read_bytes()
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.wav").write_bytes(recording)
    with pytest.raises(ValueError, match=f"{tmp_path} holds one class \\(one\\)"):
        load_dataset(tmp_path)
    (tmp_path / "two").mkdir()
    with pytest.raises(ValueError, match=f"class folder {tmp_path / 'two'} holds no audio"):
        load_dataset(tmp_path)
    (tmp_path / "two" / "deep" / "er").mkdir(parents=True)
    (tmp_path / "two" / "deep" / "er" / "b.wav").write_bytes(recording)  # nested folders are the class's too
    (tmp_path / "two" / "broken.wav").write_bytes(b"RIFF, but no")
    with pytest.raises(ValueError, match=r"broken\.wav cannot be read as audio: .*--on-bad-file skip"):
        load_dataset(tmp_path)
    dataset = load_dataset(tmp_path, on_bad_file="skip")
    assert sorted(u.label for u in dataset.utterances) == ["one", "two"]
    assert len(dataset.skipped) == 1 and dataset.skipped[0].startswith(f"{tmp_path / 'two' / 'broken.wav'}: ")


def test_a_data_folder_spec_follows_its_recordings_and_flags_win() -> None:
    esc = load_dataset(SHARED_DATA / "esc10")
    spec = spec_for(esc)
    assert (spec.sample_rate, spec.clip_s, spec.fmax, spec.n_mels) == (16000, 5.0, 8000, 64)
    assert (spec.hop_length, spec.n_fft, spec.feature_shape) == (640, 1024, (126, 64))  # 5 s kept near 125 frames
    short = spec_for(esc, clip_s=1.0)
    assert (short.hop_length, short.n_fft, short.n_frames) == (160, 512, 101)  # FSDD's 10 ms hop and 32 ms window
    assert spec_for(esc, sample_rate=8000, clip_s=2.0).clip_s == 2.0


def test_unknown_is_drawn_evenly_from_other_folders_and_keeps_their_split(tmp_path: Path) -> None:
    for word in ("yes", "no"):
        shutil.copytree(SHARED_DATA / "speech-commands" / word, tmp_path / "words" / word)
    words = load_dataset(tmp_path / "words")
    dataset = with_unknown(words, [SHARED_DATA / "esc10"], per_class=5, seed=1)
    assert dataset.labels == ["no", "yes", UNKNOWN_LABEL] and dataset.unknown_from == (str(SHARED_DATA / "esc10"),)
    unknown = [u for u in dataset.utterances if u.label == UNKNOWN_LABEL]
    assert len(unknown) == 50 and len({Path(u.name).parent.name for u in unknown}) == 10  # five of each class
    assert {u.speaker.split(":")[0] for u in unknown if u.subset == "test"} <= {"esc10/fold4"}
    assert {u.speaker.split(":")[0] for u in unknown if u.subset != "test"} <= {f"esc10/fold{k}" for k in (1, 2, 3)}
    assert dataset.utterances[: len(words.utterances)] == words.utterances
    shutil.copytree(SHARED_DATA / "speech-commands" / "yes", tmp_path / "others" / "yes")
    shutil.copytree(SHARED_DATA / "speech-commands" / "up", tmp_path / "others" / "up")
    with pytest.raises(ValueError, match=r"others holds classes the model names \(yes\)"):
        with_unknown(words, [tmp_path / "others"], per_class=5)


@pytest.mark.parametrize(("labels", "digits"), [(DIGIT_LABELS, True), ([*DIGIT_LABELS, "unknown"], True),
                                                (["0", "1"], False), (["yes", "no"], False)])  # fmt: skip
def test_digit_only_steps_apply_to_the_ten_digits_with_or_without_unknown(labels: list[str], digits: bool) -> None:
    assert is_digits(labels) is digits
