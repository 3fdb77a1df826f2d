"""CSV/TSV files: the library fast path gives the hand-written parser's array, bit for bit, or
steps aside so that the hand-written parser reads the file and names any bad cell."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest

from modalbag.errors import DataError
from modalbag.io.files import _parse_delimited, _read_plain_delimited, load_array

PLAIN = {  # files the fast path reads itself
    "header.csv": "a,b,c\n1.5,-2,3.25\n4,0,-6.5\n",
    "no_header.csv": "1.5,-2,3.25\n4,0,-6.5\n",
    "empty_cells.csv": "x,y,z\n1,,3\n,5,NA\nnan,null,NaN\n",
    "table.tsv": "a\tb\tc\n1.5\t\t3.25\n4\t0\t-6.5\n",
    "one_column.csv": "label\n0\n1\n1\n",
    "one_row.csv": "1,2,3\n",
    "spaces_and_blank_lines.csv": "\n a , b , c \n1, 2 ,3\n\n4 ,5, 6\n\n",
    "windows_excel.csv": "\ufeffa,b\r\n1,2\r\n3,4\r\n",
    "exponents.csv": "1.000000000000000000e+00,-2.5E-3\n6.02e23,+7\n",
    "infinities.csv": "inf,-Infinity,+INF\n1,2,3\n",
    "integers.csv": "16777217,9007199254740993,18446744073709551615\n-1,2,3\n",
    "words_header_with_quotes.csv": '"height","weight"\n1.5,70\n1.8,80\n',
}
BY_HAND = {  # files the fast path leaves to the hand-written parser, which reads them
    "quoted_cells.csv": '"1.5","2"\n"3",4\n',
    "line_of_spaces.csv": "1\n   \n3\n",
    "signed_number_beside_a_space.csv": "+1.5 ,2\n3,4\n",
    "missing_word_padded.csv": " NA ,2\n3,4\n",
    "underscores.csv": "1_000,2\n3,4\n",
    "lone_carriage_returns.csv": "1,2\r3,4\r",
}
BAD = {  # files that fail, with the hand-written parser's message
    "word.csv": ("a,b\n1,2\n3,oops\n", r"row 3, column 2 \('b'\): 'oops' is not a number"),
    "boolean.csv": ("1,2\nTrue,3\n", r"row 2, column 1: 'True' is not a number"),
    "sign_then_space.csv": ("1,2\n+1E 5,3\n", r"row 2, column 1: '\+1E 5' is not a number"),
    "short_row.csv": ("1,2\n3\n", r"row 2 has 1 cells, expected 2"),
    "long_row.csv": ("1,2\n3,4,5\n", r"row 2 has 3 cells, expected 2"),
    "header_only.csv": ("a,b\n", r"no data rows"),
}


def _write(folder, name: str, text: str):
    path = folder / name
    path.write_bytes(text.encode("utf-8"))
    return path


def _assert_same(fast: np.ndarray, slow: np.ndarray) -> None:
    """Equal shape, dtype and layout, NaN in the same places and the same bits elsewhere (so -0.0
    and 0.0 differ)."""
    assert fast.dtype == slow.dtype == np.float32
    assert fast.shape == slow.shape and fast.ndim == 2
    assert fast.flags.c_contiguous and fast.flags.writeable
    nan = np.isnan(slow)
    np.testing.assert_array_equal(np.isnan(fast), nan)
    np.testing.assert_array_equal(fast[~nan].view(np.uint32), slow[~nan].view(np.uint32))


@pytest.fixture(params=["pandas", "numpy"])
def reader(request, monkeypatch):
    """Each test runs with pandas, then as on a machine without it (numpy's parser)."""
    if request.param == "numpy":
        monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    return request.param


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_files_are_read_by_the_library_as_the_hand_written_parser_reads_them(tmp_path, name,
                                                                                   reader):
    path = _write(tmp_path, name, PLAIN[name])
    slow = _parse_delimited(path, "tab")
    _assert_same(load_array(path, name="tab"), slow)
    fast = _read_plain_delimited(path)
    has_missing_words = name in {"empty_cells.csv", "table.tsv"}
    if reader == "numpy" and has_missing_words:
        assert fast is None  # numpy reads no empty cells or NA: the hand-written parser does
    else:
        assert fast is not None
        _assert_same(fast, slow)


@pytest.mark.parametrize("name", sorted(BY_HAND))
def test_files_that_are_not_plain_go_to_the_hand_written_parser(tmp_path, name, reader):
    path = _write(tmp_path, name, BY_HAND[name])
    assert _read_plain_delimited(path) is None
    _assert_same(load_array(path, name="tab"), _parse_delimited(path, "tab"))


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_keep_the_precise_message(tmp_path, name, reader):
    text, message = BAD[name]
    path = _write(tmp_path, name, text)
    with pytest.raises(DataError, match=rf"modality 'tab', file '.*{name}': {message}\..+"):
        load_array(path, name="tab")


def test_without_pandas_a_file_with_missing_values_still_loads(tmp_path, monkeypatch):
    path = _write(tmp_path, "t.csv", PLAIN["empty_cells.csv"])
    with_pandas = load_array(path, name="tab")
    monkeypatch.setitem(sys.modules, "pandas", None)
    _assert_same(load_array(path, name="tab"), with_pandas)


def _random_cells(rng: random.Random, count: int) -> list[str]:
    """Cells built from the characters a plain line may hold, plus long decimals that test the
    last bit of the parse."""
    alphabet = "0123456789+-.eE  infatyINFATYlLuU"
    words = ["inf", "Infinity", "nan", "NA", "null", "1", "12345678901234567890",
             "18446744073709551616", "e", "+", "-", "."]
    cells = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.4:
            cells.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))))
        elif kind < 0.6:
            cells.append("".join(rng.choice(words) for _ in range(rng.randint(1, 3))))
        else:
            digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25)))
            number = f"{digits[0]}.{digits[1:]}e{rng.randint(-50, 45):+d}"
            pad = rng.choice(["", " "])
            cells.append(f"{pad}{rng.choice(['', '-', '+'])}{number}{pad}")
    return cells


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # both parsers: beyond float32
def test_random_cells_give_the_same_array_or_the_same_error(tmp_path, reader):
    rng = random.Random(20)
    for i, cell in enumerate(_random_cells(rng, 150)):
        path = _write(tmp_path, f"r{i}.csv", f"a,b\n0,{cell}\n{cell},7\n")
        try:
            slow = _parse_delimited(path, "tab")
        except DataError as error:
            with pytest.raises(DataError) as info:
                load_array(path, name="tab")
            assert str(info.value) == str(error), cell
        else:
            _assert_same(load_array(path, name="tab"), slow)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_many_long_decimals_round_to_the_same_float32(tmp_path, reader):
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(2000):
        digits = "".join(map(str, rng.integers(0, 10, 3 * 17)))
        sign = "-" if rng.random() < 0.5 else ""
        rows.append(f"{sign}{digits[0]}.{digits[1:17]}e{rng.integers(-45, 39)},"
                    f"0.{digits[17:34]},{digits[34:]}")
    path = _write(tmp_path, "long.csv", "x,y,z\n" + "\n".join(rows) + "\n")
    fast = _read_plain_delimited(path)
    assert fast is not None
    _assert_same(fast, _parse_delimited(path, "tab"))
