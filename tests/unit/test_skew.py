"""The skew report's pure part: the same trades give no difference, a trade the discovery did not
see is named by feature, and reports of several shards add up."""

from __future__ import annotations

from agents.compute.skew import EXAMPLES, Skew, compare, skew_of
from agents.core.features import DAY, Fill, wallet_features
from agents.core.records import FeatureSet, build_feature_set
from config.settings import load_settings

WALLET = "0x" + "a" * 40
AS_OF = 1_767_225_600
RULES = load_settings(env={}).rules


def round_trips(n: int) -> list[Fill]:
    fills = []
    for i in range(n):
        ts = AS_OF - (n - i) * DAY
        fills.append(Fill(f"b{i}", f"m{i}", "BUY", 10.0, 0.4, ts, "Sports"))
        fills.append(Fill(f"s{i}", f"m{i}", "SELL", 10.0, 0.6, ts + 3600, "Sports"))
    return fills


def published(fills: list[Fill]) -> FeatureSet:
    windows, lifetime = wallet_features(fills, AS_OF, (30,))
    return build_feature_set(WALLET, 30, AS_OF, "on_demand", windows[30], lifetime, 1.0)


def test_the_same_trades_give_no_skew() -> None:
    fills = round_trips(50)
    skew = skew_of([published(fills)], {WALLET: fills}, RULES)
    assert (skew.compared, skew.differing, skew.by_feature) == (1, 0, {})
    assert compare(published(fills), published(fills)) == []


def test_a_late_trade_is_named_by_feature_and_its_classification_change_counted() -> None:
    fills = round_trips(50)
    late = [Fill("lb", "late", "BUY", 500.0, 0.9, AS_OF - 7200, "Crypto"),
            Fill("ls", "late", "SELL", 500.0, 0.1, AS_OF - 3600, "Crypto")]  # fmt: skip
    skew = skew_of([published(fills)], {WALLET: fills + late}, RULES)
    assert skew.differing == 1
    assert {"trade_count", "realized_pnl", "total_trades", "lifetime_roi"} <= set(skew.by_feature)
    assert skew.classification_changed == 1
    assert skew.changes == [{"wallet": WALLET, "then": skew.changes[0]["then"],
                             "now": "excluded LIFETIME_LOSS"}]  # fmt: skip
    assert skew.line().startswith("1 of 1 wallets differ (wallets by feature: ")


def test_a_trade_after_the_discovery_is_not_in_its_window() -> None:
    fills = round_trips(50)
    after = [Fill("later", "m0", "BUY", 5.0, 0.5, AS_OF + 60, "Sports")]
    assert skew_of([published(fills)], {WALLET: fills + after}, RULES).differing == 0


def test_shard_reports_add_up_and_survive_their_json() -> None:
    one = Skew(2, 1, {"roi": 1}, 1, [{"wallet": "a"}] * EXAMPLES)
    two = Skew(3, 2, {"roi": 1, "sharpe": 2}, 0)
    one.add(Skew.from_dict(two.as_dict()))
    assert (one.compared, one.differing, one.by_feature) == (5, 3, {"roi": 2, "sharpe": 2})
    assert len(one.changes) == EXAMPLES
