"""The price table: a model is priced by the longest entry its name begins with, else as
its kind's default model; shell is free; cached input is priced apart from fresh input;
`SWARM_PRICES` replaces or extends entries and names what is wrong with a bad value."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm_common.prices import (
    KIND_DEFAULT_MODEL,
    PRICES,
    PRICES_AS_OF,
    Price,
    PriceTable,
    parse_prices,
    prices_from_env,
)

TABLE = PriceTable()


def test_a_model_is_priced_by_the_longest_entry_it_begins_with() -> None:
    assert TABLE.entry("claude", "claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert TABLE.entry("codex", "gpt-5-mini-2025-08-07") == "gpt-5-mini"  # not gpt-5
    assert TABLE.entry("codex", "gpt-5.5") == "gpt-5"
    assert TABLE.entry("gemini", "Gemini-2.5-Flash-Lite") == "gemini-2.5-flash-lite"


def test_an_unknown_or_unnamed_model_is_priced_as_its_kinds_default() -> None:
    for kind, default in KIND_DEFAULT_MODEL.items():
        assert TABLE.entry(kind, None) == default
        assert TABLE.entry(kind, "some-model-nobody-lists") == default
        assert TABLE.cost(kind, "", {"input": 10}).priced_as == default


def test_shell_costs_nothing_whatever_its_usage() -> None:
    cost = TABLE.cost("shell", "claude-opus-4", {"input": 10**9, "output": 10**9})
    assert (cost.usd, cost.priced_as) == (Decimal(0), None)


def test_cached_input_is_priced_apart_from_fresh_input() -> None:
    # claude-sonnet-4-5: $3 input, $0.30 cached input, $15 output per million tokens.
    cost = TABLE.cost(
        "claude", "claude-sonnet-4-5", {"input": 1_200_000, "cached_input": 200_000, "output": 1000}
    )
    assert cost.usd == Decimal("3.075000")  # 1M x 3 + 0.2M x 0.3 + 1000 x 15 / 1M
    none = TABLE.cost("claude", "claude-sonnet-4-5", {})
    assert none.usd == 0 and TABLE.cost("codex", None, None).usd == 0


def test_usage_that_is_no_count_counts_as_nothing() -> None:
    odd = {"input": -5, "cached_input": True, "output": "300"}
    assert TABLE.cost("codex", "gpt-5", odd).usd == 0
    # More cached than input: the cached part is capped at the input.
    capped = TABLE.cost("codex", "gpt-5", {"input": 100, "cached_input": 1000})
    assert capped.usd == (Decimal(100) * Decimal("0.125") / 1_000_000).quantize(Decimal("1e-6"))


@given(
    fresh=st.integers(0, 10**9),
    cached=st.integers(0, 10**9),
    output=st.integers(0, 10**9),
    model=st.sampled_from(sorted(PRICES)),
)
def test_a_cost_is_the_sum_of_its_parts(fresh: int, cached: int, output: int, model: str) -> None:
    price = PRICES[model]
    usage = {"input": fresh + cached, "cached_input": cached, "output": output}
    exact = (fresh * price.input + cached * price.cached_input + output * price.output) / Decimal(
        1_000_000
    )
    cost = TABLE.cost("codex", model, usage)
    assert cost.priced_as == model
    assert abs(cost.usd - exact) <= Decimal("0.0000005")


def test_overrides_replace_and_extend_the_table() -> None:
    overrides = parse_prices(
        '{"claude-sonnet-4-5": {"input": 2, "cached_input": 0.2, "output": 10},'
        ' "my-local-model": {"input": 0, "output": 0}}'
    )
    assert overrides["my-local-model"] == Price.of(0, 0, 0)  # cached input defaults to input
    table = PriceTable(overrides)
    assert table.cost("claude", "claude-sonnet-4-5-x", {"output": 1_000_000}).usd == 10
    assert table.entry("codex", "my-local-model-7b") == "my-local-model"
    assert table.as_dict()["as_of"] == PRICES_AS_OF
    assert table.as_dict()["models"]["my-local-model"] == {
        "input": 0.0,
        "cached_input": 0.0,
        "output": 0.0,
    }
    env = prices_from_env({"SWARM_PRICES": '{"o3": {"input": 1, "output": 2}}'})
    assert env.prices["o3"] == Price.of(1, 1, 2)
    assert prices_from_env({}).prices == PRICES


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"m": 3}', "SWARM_PRICES['m'] must be an object"),
        ('{"m": {"input": -1, "output": 1}}', "SWARM_PRICES['m'].input must be a number >= 0"),
        ('{"m": {"input": 1}}', "SWARM_PRICES['m'].output"),
        ('{"m": {"input": 1, "output": "2"}}', "SWARM_PRICES['m'].output"),
        ('{"m": {"input": true, "output": 1}}', "SWARM_PRICES['m'].input"),
        ('{"": {"input": 1, "output": 1}}', "must be an object of prices"),
    ],
)
def test_a_bad_value_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        parse_prices(text)
    assert says in str(caught.value)


def test_an_empty_value_overrides_nothing() -> None:
    assert parse_prices("") == {} and parse_prices("  ") == {}
