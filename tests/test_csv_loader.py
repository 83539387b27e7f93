"""`load_prices_csv` on the files a user meets in their first hour: downloads with several
price columns, newest-first files, wrong encodings, oversized fields, prices the working
precision cannot hold, and files that are not price CSVs at all. Every refusal is a
`ValueError` naming the file and the line, and echoes at most a short excerpt of one field."""

from __future__ import annotations

import numpy as np
import pytest

from hedgejax._models.historical import Bootstrap, HistoricalPaths, load_prices_csv

YAHOO_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"


def write(tmp_path, text: str | bytes, name: str = "prices.csv"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def refusal(path, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        load_prices_csv(path, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# Malformed files: the csv module's and the decoder's errors name the file and the line.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("quoted", [False, True])
def test_a_field_beyond_the_csv_field_limit_names_file_and_line(tmp_path, quoted):
    field = "9" * 200_000
    path = write(tmp_path, "date,close\n2021-01-04,1\n2021-01-05,"
                 + (f'"{field}"' if quoted else field) + "\n2021-01-06,2\n")
    message = refusal(path)
    assert message.startswith(f"{path}, line 3: ")
    assert "field larger than field limit" in message
    assert "99999999" not in message and len(message) < len(str(path)) + 120


def test_a_byte_that_is_not_utf8_names_file_and_line(tmp_path):
    path = write(tmp_path, b"date,close\n2021-01-04,1\n# caf\xe9 prices\n2021-01-05,2\xff\n")
    message = refusal(path)
    # the comment on line 3 is not UTF-8 either: comments are text too
    assert message.startswith(f"{path}, line 3: not UTF-8 text: byte 0xe9")
    path = write(tmp_path, b"date,close\n2021-01-04,1\n2021-01-05,2\xff\n")
    assert refusal(path).startswith(f"{path}, line 3: not UTF-8 text: byte 0xff at character 13")


def test_a_file_without_line_breaks_is_refused_without_reading_it_all(tmp_path):
    path = write(tmp_path, b"\0" * (3 << 20), name="zeros.bin")
    assert refusal(path).startswith(f"{path}, line 1: line longer than")


# ---------------------------------------------------------------------------------------------
# Files that are not price CSVs are never echoed.
# ---------------------------------------------------------------------------------------------


def test_a_file_that_is_not_a_price_csv_is_not_echoed(tmp_path):
    secret = "root:x:0:0:root:/root:/bin/bash"
    path = write(tmp_path, f"{secret}\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
                 name="passwd")
    message = refusal(path)
    assert message == (f"{path}, line 1: missing column 'date' (date_column): no header field "
                       "has that name")
    reason = message[len(str(path)):]
    assert "root" not in reason and "daemon" not in reason and "bin" not in reason


def test_column_names_are_listed_short_when_the_date_column_is_there(tmp_path):
    long_name = "x" * 300
    path = write(tmp_path, f"date,open,{long_name},volume\n2021-01-04,1,2,3\n")
    message = refusal(path)
    assert message.startswith(f"{path}, line 1: 3 columns besides the date and none is named "
                              "'Adj Close' or 'Close': pass price_column=")
    assert "'date', 'open', " in message and "'volume'" in message
    assert "x" * 41 not in message and "(300 characters)" in message
    message = refusal(path, price_column="adj")
    assert message.startswith(f"{path}, line 1: missing column 'adj' (price_column); the header "
                              "has ['date', 'open', ")


def test_a_bad_field_is_described_not_shown(tmp_path):
    """A field that is not a number or a date may come from a file that is no price file at
    all (a password file): the message gives its length, never its text."""
    path = write(tmp_path, "date,close\n2021-01-04,1\n2021-01-05,daemon:x:1:1\n")
    message = refusal(path)
    assert message == (f"{path}, line 3: non-numeric value (12 characters) in column 'close'")
    path = write(tmp_path, "date,close\n" + "z" * 5000 + ",1\n")
    message = refusal(path)
    assert message.startswith(f"{path}, line 2: date (5,000 characters) in column 'date' is "
                              "not an ISO date") and "z" not in message.replace(str(path), "")


# ---------------------------------------------------------------------------------------------
# Prices must survive the working precision (float32 unless jax_enable_x64).
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("price", ["1e300", "1e-320", "1e-30", "1e30"])
def test_prices_the_working_precision_cannot_hold_name_the_line(tmp_path, price):
    path = write(tmp_path, f"date,close\n2021-01-04,100\n2021-01-05,{price}\n2021-01-06,101\n")
    message = refusal(path)
    assert message.startswith(f"{path}, line 3: price '{price}' in column 'close' is outside "
                              "[1.08e-19, 1.84e+19], where float32 holds a price and its square")
    # the same values reach the models as arrays: refused there by index
    prices = [100.0, float(price), 101.0]
    with pytest.raises(ValueError, match=r"prices must lie in .*float32.*got prices\[1\]="):
        HistoricalPaths(prices)
    with pytest.raises(ValueError, match=r"prices must lie in .*float32.*got prices\[1\]="):
        Bootstrap.from_prices(prices, block=1)


def test_float64_holds_what_float32_cannot(tmp_path, x64):
    path = write(tmp_path, "date,close\n2021-01-04,100\n2021-01-05,1e-30\n2021-01-06,1e30\n")
    _, prices = load_prices_csv(path)
    np.testing.assert_array_equal(prices, [100.0, 1e-30, 1e30])
    assert np.all(np.isfinite(np.diff(np.log(np.asarray(HistoricalPaths(prices).prices)))))
    path = write(tmp_path, "date,close\n2021-01-04,100\n2021-01-05,1e300\n")
    assert "where float64 holds a price" in refusal(path)


def test_a_ratio_of_consecutive_prices_that_vanishes_names_both_lines(tmp_path):
    # both prices are within float32's range, but 1.1e-19 / 1.8e19 is below its normal range
    path = write(tmp_path, "date,close\n2021-01-04,1.8e19\n2021-01-05,1.1e-19\n")
    assert refusal(path).startswith(
        f"{path}, line 3: the ratio of this price to the one before it (line 2) is 6.11e-39")
    # after sorting by date, the consecutive pair is the one in date order
    path = write(tmp_path, "date,close\n2021-01-05,1.1e-19\n2021-01-03,1\n2021-01-04,1.8e19\n")
    assert refusal(path).startswith(f"{path}, line 2: the ratio of this price to the one "
                                    "before it (line 4)")


# ---------------------------------------------------------------------------------------------
# Choosing the price column.
# ---------------------------------------------------------------------------------------------


def test_yahoo_download_uses_the_adjusted_close(tmp_path):
    path = write(tmp_path, YAHOO_HEADER + "2021-01-04,9,10,8,9.5,9.4,2000\n"
                 "2021-01-05,10,11,9,10.5,10.4,1000\n")
    for date_column in ("Date", "date"):  # the one column named so in another case
        dates, prices = load_prices_csv(path, date_column=date_column)
        np.testing.assert_array_equal(prices, [9.4, 10.4])
        assert [str(d) for d in dates] == ["2021-01-04", "2021-01-05"]
    _, opens = load_prices_csv(path, date_column="Date", price_column="open")
    np.testing.assert_array_equal(opens, [9.0, 10.0])


@pytest.mark.parametrize(("header", "expected"), [
    ("date,open,close,volume", [3.0, 13.0]),          # no adjusted close: the close
    ("date,open,CLOSE,adj_close", [4.0, 14.0]),       # adj_close over CLOSE
    ("date,ADJ CLOSE,close,volume", [2.0, 12.0]),
    ("date,price", [2.0, 12.0]),                      # the only other column
    ("price,date", [1.0, 11.0]),
])
def test_price_column_by_name_then_by_being_the_only_one(tmp_path, header, expected):
    width = header.count(",") + 1
    rows = ["2021-01-04," + ",".join(str(k) for k in range(2, width + 1)),
            "2021-01-05," + ",".join(str(k + 10) for k in range(2, width + 1))]
    if header.startswith("price"):
        rows = ["1,2021-01-04", "11,2021-01-05"]
    path = write(tmp_path, header + "\n" + "\n".join(rows) + "\n")
    np.testing.assert_array_equal(load_prices_csv(path)[1], expected)


# ---------------------------------------------------------------------------------------------
# Row order: sorted by date.
# ---------------------------------------------------------------------------------------------


def test_newest_first_and_mixed_files_are_sorted_by_date(tmp_path):
    newest_first = "date,close\n2021-01-06,3\n2021-01-05,2\n2021-01-04,1\n"
    mixed = "date,close\n2021-01-05,2\n# a comment\n2021-01-06,3\n\n2021-01-04,1\n"
    for text in (newest_first, mixed):
        dates, prices = load_prices_csv(write(tmp_path, text))
        assert dates.dtype == np.dtype("datetime64[D]")
        assert [str(d) for d in dates] == ["2021-01-04", "2021-01-05", "2021-01-06"]
        np.testing.assert_array_equal(prices, [1.0, 2.0, 3.0])
    # text dates cannot be ordered reliably: file order is kept
    dates, prices = load_prices_csv(write(tmp_path, newest_first), parse_dates=False)
    assert dates == ["2021-01-06", "2021-01-05", "2021-01-04"]
    np.testing.assert_array_equal(prices, [3.0, 2.0, 1.0])


def test_duplicate_dates_name_both_lines(tmp_path):
    path = write(tmp_path, "date,close\n2021-01-06,3\n2021-01-05,2\n\n2021-01-06,1\n")
    assert refusal(path).startswith(
        f"{path}, line 5: duplicate date 2021-01-06 (first on line 2)")


def test_bom_comments_and_blank_lines_still_work(tmp_path):
    path = write(tmp_path, "\ufeff# source: synthetic\n\nDate,Close\n2021-01-05,2\n\n"
                 "# mid\n2021-01-04,1\n")
    dates, prices = load_prices_csv(path)
    assert [str(d) for d in dates] == ["2021-01-04", "2021-01-05"]
    np.testing.assert_array_equal(prices, [1.0, 2.0])


@pytest.mark.parametrize("price", ["1_100", "1_0.5"])
def test_python_only_number_syntax_is_refused(tmp_path, price):
    path = tmp_path / "p.csv"
    path.write_text(f"date,close\n2021-01-04,100\n2021-01-05,{price}\n")
    with pytest.raises(ValueError, match=r"p\.csv, line 3: non-numeric value"):
        load_prices_csv(path)


def test_duplicate_column_names_are_refused(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("date,close,close\n2021-01-04,100,1\n2021-01-05,101,2\n")
    with pytest.raises(ValueError, match=r"p\.csv, line 1: duplicate column names.*close"):
        load_prices_csv(path)
