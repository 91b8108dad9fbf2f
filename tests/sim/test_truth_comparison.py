"""The end-to-end comparison (tests/support/truth.py) catches what it must and allows what the
sketches may: counts and online values exact, people within 2 % from 1 000 on."""

from __future__ import annotations

import copy

import orjson
import pytest

from tests.support.recorded_session import TRUTH
from tests.support.truth import assert_block, assert_products, assert_rolling

RECORDED = orjson.loads(TRUTH.read_bytes())
WINDOW = max(RECORDED["windows"], key=lambda w: len(w["products"]))


def test_a_block_equals_itself() -> None:
    assert_block(WINDOW, WINDOW, ())
    assert_products(WINDOW["products"], WINDOW["products"], ())
    for blocks in RECORDED["rooms"].values():
        assert_rolling(blocks["rolling"], copy.deepcopy(blocks["rolling"]), ())
        assert_block(blocks["session"], blocks["session"], ())


@pytest.mark.parametrize("key", ["viewers", "buyers", "online_end", "online_peak", "gmv_cents"])
def test_one_off_is_caught(key: str) -> None:
    with pytest.raises(AssertionError):
        assert_block({**WINDOW, key: WINDOW[key] + 1}, WINDOW, ())


def test_a_product_off_or_missing_is_caught() -> None:
    off = copy.deepcopy(WINDOW["products"])
    off[-1]["product_clicks"] += 1
    with pytest.raises(AssertionError):
        assert_products(off, WINDOW["products"], ())
    with pytest.raises(AssertionError):
        assert_products(WINDOW["products"][:-1], WINDOW["products"], ())


def test_people_from_a_thousand_within_two_percent() -> None:
    want = {"viewers": 5_000, "impression_users": 10_000, "enter_rate_users": 0.5}
    estimated = {"viewers": 5_090, "impression_users": 9_900, "enter_rate_users": 5_090 / 9_900}
    assert_block(estimated, want, ())
    with pytest.raises(AssertionError):
        assert_block({**want, "viewers": 5_110, "enter_rate_users": 0.511}, want, ())
    with pytest.raises(AssertionError):  # below 1 000: exact
        assert_block({"viewers": 999}, {"viewers": 998}, ())
