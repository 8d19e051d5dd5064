"""Hypothesis properties of the core: invariants, order independence, one kernel for all paths."""

import random
from dataclasses import fields

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.core.explain import explain
from agents.core.features import (
    DAY,
    WINDOWS,
    Fill,
    WindowFeatures,
    many_wallet_features,
    sorted_fills,
    wallet_features,
    window_features,
)
from agents.core.records import build_feature_set, feature_set_metrics
from agents.core.rules import classify, classify_metrics
from config.thresholds import RuleThresholds

AS_OF = 100 * DAY
RATIOS = [
    "win_rate",
    "pnl_top1_share",
    "concentration_ratio",
    "buy_sell_balance",
    "mid_fill_ratio",
    "extreme_price_ratio",
    "burstiness_top_1h_ratio",
    "top_domain_ratio",
]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_fill_parts = st.tuples(
    st.sampled_from(["m1", "m2", "m3", "m4", "m5"]),
    st.sampled_from(["BUY", "BUY", "SELL"]),
    st.one_of(st.floats(0.001, 500.0), st.just(1.0), st.just(1e-10)),
    st.one_of(st.floats(0.001, 0.999), st.sampled_from([0.1, 0.45, 0.5, 0.55, 0.9])),
    # clustered timestamps produce ties and window-edge hits; some land after as_of
    st.one_of(
        st.integers(0, AS_OF + DAY),
        st.sampled_from([AS_OF, AS_OF - 7 * DAY, AS_OF - 30 * DAY, AS_OF - 90 * DAY, 5 * DAY]),
    ),
    st.sampled_from(["Sports", "Politics", "Crypto", "unknown"]),
)


@st.composite
def wallets_fills(draw: st.DrawFn, max_size: int = 60) -> list[Fill]:
    parts = draw(st.lists(_fill_parts, max_size=max_size))
    ids = draw(st.permutations(range(len(parts))))
    return [Fill(f"t{i:04d}", *p) for i, p in zip(ids, parts, strict=True)]


@FAST
@given(wallets_fills())
def test_invariants(fills: list[Fill]) -> None:
    windows, life = wallet_features(fills, AS_OF)
    for w in windows.values():
        assert w.win_count + w.loss_count == w.round_trips
        assert w.buy_count + w.sell_count == w.trade_count
        for name in RATIOS:
            assert 0.0 <= getattr(w, name) <= 1.0, name
        assert w.max_single_loss >= 0 and w.max_drawdown_pct >= 0
        assert w.open_positions <= w.unique_markets
    assert windows[7].trade_count <= windows[30].trade_count <= windows[90].trade_count
    assert life.total_trades >= windows[90].trade_count


@FAST
@given(wallets_fills(), st.randoms(use_true_random=False))
def test_input_order_never_changes_output(fills: list[Fill], rnd: random.Random) -> None:
    shuffled = fills[:]
    rnd.shuffle(shuffled)
    assert wallet_features(shuffled, AS_OF) == wallet_features(fills, AS_OF)
    assert window_features(shuffled, AS_OF, 30) == window_features(fills, AS_OF, 30)


@FAST
@given(wallets_fills(), st.randoms(use_true_random=False))
def test_the_canonical_order_is_time_then_trade_id_then_the_whole_fill(
    fills: list[Fill], rnd: random.Random
) -> None:
    # The kernel sorts by time alone unless two trades share a second (then by the whole key):
    # the order must be the same either way, ties and trades after as_of included.
    rnd.shuffle(fills)
    expected = sorted(
        (f for f in fills if f.timestamp <= AS_OF), key=lambda f: (f.timestamp, f.trade_id, f)
    )
    assert sorted_fills(fills, AS_OF) == expected
    assert sorted_fills(iter(fills), AS_OF) == expected


def _bits(w: WindowFeatures) -> tuple[object, ...]:
    # float.hex distinguishes 0.0 from -0.0 and every last bit
    return tuple(
        getattr(w, f.name).hex() if isinstance(getattr(w, f.name), float) else getattr(w, f.name)
        for f in fields(w)
    )


@FAST
@given(st.lists(wallets_fills(max_size=25), min_size=1, max_size=4))
def test_many_wallet_form_is_bit_equal_to_kernel(per_wallet: list[list[Fill]]) -> None:
    batch = [(f"w{i}", fills) for i, fills in enumerate(per_wallet)]
    for wallet, windows, life in many_wallet_features(batch, AS_OF):
        solo_windows, solo_life = wallet_features(dict(batch)[wallet], AS_OF)
        assert life == solo_life
        assert life.lifetime_roi.hex() == solo_life.lifetime_roi.hex()
        for w in WINDOWS:
            assert _bits(windows[w]) == _bits(solo_windows[w])
            assert _bits(windows[w]) == _bits(window_features(dict(batch)[wallet], AS_OF, w))


@FAST
@given(wallets_fills(max_size=25), wallets_fills(max_size=25))
def test_other_wallets_never_change_a_wallet(mine: list[Fill], other: list[Fill]) -> None:
    alone = list(many_wallet_features([("a", mine)], AS_OF))
    together = list(many_wallet_features([("b", other), ("a", mine), ("c", other)], AS_OF))
    assert [r for r in together if r[0] == "a"] == alone


@FAST
@given(
    wallets_fills(),
    st.sampled_from([frozenset(), frozenset({"0x" + "ab" * 20})]),
    st.floats(0.0, 0.2),
    st.integers(0, 60),
)
def test_explain_decides_as_classify(
    fills: list[Fill], bots: frozenset[str], low_roi: float, min_age: int
) -> None:
    windows, life = wallet_features(fills, AS_OF, (30,))
    rules = RuleThresholds(low_roi_min=low_roi, min_wallet_age_days=min_age)
    wallet = "0x" + "ab" * 20
    e = explain(wallet, windows[30], life, rules, bots)
    c = classify(wallet, windows[30], life, rules, bots)
    assert e.classification == c
    decided = [r.code for r in e.rules if r.decided]
    assert len(decided) <= 1
    if c.status in ("excluded", "pending"):
        assert decided == [c.reason]
    else:
        assert decided == [] and e.decided_by == c.persona
    if c.status == "followable":
        assert c.confidence == windows[30].win_rate


@FAST
@given(
    wallets_fills(),
    st.sampled_from([frozenset(), frozenset({"0x" + "AB" * 20})]),
    st.floats(0.0, 0.2),
    st.integers(0, 60),
)
def test_the_classifier_path_decides_as_classify(
    fills: list[Fill], bots: frozenset[str], low_roi: float, min_age: int
) -> None:
    """The classifier classifies a FeatureSet's own values, without splitting it into the
    core's dataclasses: the same decision, traits and reported values."""
    windows, life = wallet_features(fills, AS_OF, (30,))
    rules = RuleThresholds(low_roi_min=low_roi, min_wallet_age_days=min_age)
    wallet = "0x" + "ab" * 20
    features = build_feature_set(wallet, 30, AS_OF, "on_demand", windows[30], life, 0.0)
    metrics = feature_set_metrics(features)
    assert classify_metrics(wallet, metrics, rules, bots) == classify(
        wallet, windows[30], life, rules, bots
    )
