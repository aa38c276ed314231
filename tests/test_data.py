"""speechmask.data, the old home of the corpus, mixing, Dataset and evaluation-set names: each
name still imports from it and is the object of its new module."""

import importlib

import pytest

from speechmask import data


@pytest.mark.parametrize("name", data.__all__)
def test_old_names_are_the_new_modules_objects(name):
    obj = getattr(data, name)
    home = next(m for m in ("corpus", "mixing", "augment", "dataset", "evalsets")
                if hasattr(importlib.import_module(f"speechmask.{m}"), name))
    assert getattr(importlib.import_module(f"speechmask.{home}"), name) is obj
