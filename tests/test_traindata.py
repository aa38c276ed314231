"""What a run trains on: TrainData from arrays, a Dataset or the corpus, and its checks."""

import numpy as np
import pytest

from speechmask.augment import AugmentConfig
from speechmask.corpus import Corpus, DataError
from speechmask.dataset import MixtureDataset
from speechmask.evalsets import EvalPair, eval_pairs
from speechmask.mixing import MixConfig
from speechmask.train import TrainConfig
from speechmask.traindata import TrainData, corpus_noise_and_valid

CFG = TrainConfig(mix=MixConfig(crop_seconds=0.5, examples_per_epoch=6,
                                augment=AugmentConfig.off()))


@pytest.fixture(scope="module")
def arrays():
    from conftest import _speech_like

    rng = np.random.default_rng(0)
    speech = [_speech_like(seconds=1.0, seed=i) for i in range(3)]
    noise = [rng.standard_normal(8000).astype(np.float32) for _ in range(2)]
    clean = _speech_like(seconds=0.5, seed=9)
    valid = [EvalPair("v0", clean, clean + noise[0][: len(clean)], 0.0, "white", "", "", "")]
    return speech, noise, valid


def test_from_arrays_mixes_them_by_the_config(arrays):
    speech, noise, valid = arrays
    data = TrainData.from_arrays(CFG, speech, noise, valid)
    assert isinstance(data.train_set, MixtureDataset) and len(data.train_set) == 6
    assert data.train_set[0]["noisy"].shape == (8000,)
    assert data.valid == valid
    assert data.description == "3 utterances, 2 noise recordings, 1 validation pairs"


@pytest.mark.parametrize("make,message", [
    (lambda s, n, v: TrainData.from_dataset(MixtureDataset(s, n), None), "needs validation"),
    (lambda s, n, v: TrainData.from_dataset(MixtureDataset(s, n), []), "no validation pairs"),
    (lambda s, n, v: TrainData.from_arrays(CFG, s, n, []), "no validation pairs"),
    (lambda s, n, v: TrainData.from_arrays(CFG, [], n, v), "no speech"),
    (lambda s, n, v: TrainData.from_arrays(CFG, s, [], v), "no noise"),
])
def test_unusable_data_is_a_one_line_error(arrays, make, message):
    with pytest.raises(DataError, match=message) as err:
        make(*arrays)
    assert "\n" not in str(err.value)


def test_from_corpus_loads_what_is_not_given(arrays):
    speech, noise, _ = arrays
    cfg = TrainConfig(valid_count=4, holdout_noise=("wind",))
    data = TrainData.from_corpus(cfg, Corpus(), speech=speech, noise=noise)
    assert data.train_set.speech == speech and data.train_set.noise == noise
    assert len(data.valid) == 4 and {p.noise_type for p in data.valid} == {"wind"}


def test_holdout_noise_trains_without_those_types_and_validates_on_them():
    corpus = Corpus()
    held = ("wind", "exercise_bike")
    cfg = TrainConfig(valid_count=8, holdout_noise=held)
    noise, valid = corpus_noise_and_valid(corpus, cfg)
    assert not {f.label for f in noise} & set(held)
    assert len(valid) == 8 and {p.noise_type for p in valid} <= set(held)
    every_noise, every_valid = corpus_noise_and_valid(corpus, TrainConfig(valid_count=8))
    train_held = [f for f in corpus.select("train", "noise") if f.label in held]
    assert train_held and len(every_noise) == len(noise) + len(train_held)
    assert [p.id for p in every_valid] == [p.id for p in eval_pairs(corpus, "valid", 8)]
    with pytest.raises(DataError, match="coffee-shop"):
        corpus_noise_and_valid(corpus, TrainConfig(holdout_noise=("coffee-shop",)))

