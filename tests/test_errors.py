"""The one-line error helper and the atomic text write every module uses."""

import pytest

from speechmask.atomic import write_text_atomic
from speechmask.errors import first_line


@pytest.mark.parametrize(("err", "limit", "want"), [
    (ValueError("bad rate\nTraceback detail"), None, "bad rate"),
    (ValueError("  \n  leading blank lines\nmore"), None, "leading blank lines"),
    (OSError(), None, "OSError"),
    (RuntimeError("x" * 300), 120, "x" * 120),
])
def test_first_line(err, limit, want):
    assert first_line(err, limit) == want


def test_write_text_atomic_replaces_whole_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "pairs.csv"
    write_text_atomic(path, "a,b\n1,2\n")
    write_text_atomic(path, "ä\n")
    assert path.read_text(encoding="utf-8") == "ä\n"
    assert [p.name for p in path.parent.iterdir()] == ["pairs.csv"]

    class Boom(Exception):
        pass

    from speechmask.atomic import write_atomic

    def fail(handle):
        handle.write(b"half")
        raise Boom

    with pytest.raises(Boom):
        write_atomic(path, fail)
    assert path.read_text(encoding="utf-8") == "ä\n"  # the old file, untouched
    assert [p.name for p in path.parent.iterdir()] == ["pairs.csv"]
