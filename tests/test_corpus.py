"""The bundled corpus: manifest, splits, labels and one-line errors."""

import pytest

from speechmask.corpus import Corpus, DataError, noise_type_of


@pytest.fixture(scope="module")
def corpus():
    return Corpus()


def test_bundled_corpus_matches_its_readme(corpus):
    stats = {(r["split"], r["kind"]): r for r in corpus.stats()}
    assert stats["train", "speech"]["files"] == 900
    assert stats["valid", "speech"]["files"] == 72
    assert stats["test", "speech"]["files"] == 216
    assert stats["train", "noise"]["files"] == 248
    assert sum(r["files"] for r in stats.values()) == 1611
    assert all(f.path.is_file() for f in corpus.files)
    assert (corpus.root / "LICENSES").is_dir()


def test_test_split_is_disjoint_from_training(corpus):
    speakers = {s: {f.label for f in corpus.select(s, "speech")} for s in ("train", "test")}
    assert speakers["train"].isdisjoint(speakers["test"])
    noise_files = {s: {f.path.name for f in corpus.select(s, "noise")} for s in ("train", "test")}
    assert noise_files["train"].isdisjoint(noise_files["test"])
    # Long-form noise types (Blanket, Speech Commands) of the test split never occur in train.
    long_form = {f.label for f in corpus.select("test", "noise") if f.source != "esc10"}
    train_long = {f.label for f in corpus.select("train", "noise") if f.source != "esc10"}
    assert long_form and long_form.isdisjoint(train_long)


@pytest.mark.parametrize("name,label", [
    ("sea_waves_1-123-A.flac", "sea_waves"), ("dog_5-9032-A.flac", "dog"),
    ("coffee-shop.flac", "coffee-shop"), ("running_tap.flac", "running_tap"),
])
def test_noise_type_of(name, label, tmp_path):
    assert noise_type_of(tmp_path / name) == label


def test_missing_corpus_is_one_line_error(tmp_path):
    with pytest.raises(DataError) as err:
        Corpus(tmp_path / "nowhere")
    assert "manifest.csv" in str(err.value) and "\n" not in str(err.value)


def test_unknown_split(corpus):
    with pytest.raises(DataError, match="unknown split"):
        corpus.select("dev", "speech")
