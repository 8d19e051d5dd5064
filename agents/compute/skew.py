"""Online/offline skew: what the on-demand path published against the same window recomputed.

For the wallets discovered on a rebuilt day, the on-demand row stored for that feature_date
holds the window as of the discovery. Recomputed at that same as_of from the trades stored now,
with the same kernel (`wallet_features`), it can only differ through trades that arrived after
the discovery. It must be read before the rebuild's batch rows replace those on-demand rows.

`compare` and `Skew` are pure; `measure_skew` reads (one query for the day's on-demand rows of
a sorted wallet range, one for their trades).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.core.features import Fill, wallet_features
from agents.core.records import FeatureSet, build_feature_set, feature_set_metrics
from agents.core.rules import classify_metrics
from agents.store import Connection, fills_by_wallet
from agents.store.schema import FEATURE_NAMES, FEATURE_ROW_KEYS
from config.settings import RuleSettings

__all__ = ["EXAMPLES", "Skew", "compare", "measure_skew", "on_demand_rows", "skew_of"]

#: Wallets whose classification changed named in a report, at most (the counts are complete).
EXAMPLES = 10
#: Features named in the one-line report (`Skew.line`); `as_dict` has them all.
LINE_FEATURES = 5

ON_DEMAND_ROWS_SQL = f"""
SELECT {", ".join(FEATURE_ROW_KEYS)} FROM wallet_features
WHERE feature_date = ? AND window_days = ? AND source = 'on_demand'
  AND proxy_wallet BETWEEN ? AND ?
ORDER BY proxy_wallet"""


@dataclass
class Skew:
    """How the on-demand rows of a rebuilt day compare with their recomputation."""

    compared: int = 0
    differing: int = 0
    #: wallets that differ in each feature (only features that differ somewhere)
    by_feature: dict[str, int] = field(default_factory=dict)
    classification_changed: int = 0
    #: up to `EXAMPLES` wallets whose classification changed: wallet, status/persona then, now
    changes: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: Skew) -> None:
        """Fold another report (another shard's) into this one."""
        self.compared += other.compared
        self.differing += other.differing
        for name, n in other.by_feature.items():
            self.by_feature[name] = self.by_feature.get(name, 0) + n
        self.classification_changed += other.classification_changed
        self.changes = (self.changes + other.changes)[:EXAMPLES]

    def as_dict(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "differing": self.differing,
            "by_feature": dict(sorted(self.by_feature.items())),
            "classification_changed": self.classification_changed,
            "changes": self.changes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Skew:
        return cls(
            int(data.get("compared", 0)), int(data.get("differing", 0)),
            {str(k): int(v) for k, v in dict(data.get("by_feature", {})).items()},
            int(data.get("classification_changed", 0)), list(data.get("changes", [])),
        )  # fmt: skip

    def line(self) -> str:
        """One line for the log and the CLI: the features differing most often named first."""
        ranked = sorted(self.by_feature.items(), key=lambda item: (-item[1], item[0]))
        named = ", ".join(f"{name} {n}" for name, n in ranked[:LINE_FEATURES])
        if len(ranked) > LINE_FEATURES:
            named += f", {len(ranked) - LINE_FEATURES} more features"
        return (
            f"{self.differing} of {self.compared} wallets differ"
            + (f" (wallets by feature: {named})" if named else "")
            + f"; classification changed for {self.classification_changed}"
        )


def compare(published: FeatureSet, recomputed: FeatureSet) -> list[str]:
    """The features (SPEC §5 and lifetime) whose values differ, in column order."""
    then, now = published.__dict__, recomputed.__dict__
    return [name for name in FEATURE_NAMES if then[name] != now[name]]


def _decision(features: FeatureSet, rules: RuleSettings) -> tuple[str, str | None, str | None]:
    metrics = feature_set_metrics(features)
    result = classify_metrics(features.proxy_wallet, metrics, rules, frozenset(rules.known_bots))
    return result.status, result.persona, result.reason


def skew_of(
    published: Iterable[FeatureSet],
    fills: Mapping[str, Sequence[Fill]],
    rules: RuleSettings,
) -> Skew:
    """Each published FeatureSet against its window recomputed at its own as_of from `fills`."""
    skew = Skew()
    for then in published:
        windows, lifetime = wallet_features(
            fills.get(then.proxy_wallet, ()), then.as_of, (then.window_days,)
        )
        now = build_feature_set(
            then.proxy_wallet, then.window_days, then.as_of, then.source,
            windows[then.window_days], lifetime, then.computed_at,
        )  # fmt: skip
        skew.compared += 1
        differing = compare(then, now)
        if differing:
            skew.differing += 1
            for name in differing:
                skew.by_feature[name] = skew.by_feature.get(name, 0) + 1
        before, after = _decision(then, rules), _decision(now, rules)
        if before != after:
            skew.classification_changed += 1
            if len(skew.changes) < EXAMPLES:
                skew.changes.append({
                    "wallet": then.proxy_wallet, "then": _label(before), "now": _label(after),
                })  # fmt: skip
    return skew


def _label(decision: tuple[str, str | None, str | None]) -> str:
    status, persona, reason = decision
    return f"{status} {persona or reason or ''}".strip()


def on_demand_rows(
    conn: Connection, wallets: Sequence[str], feature_date: str, window_days: int
) -> list[FeatureSet]:
    """The on-demand rows of `feature_date` and window of `wallets` (sorted), as FeatureSets."""
    if not wallets:
        return []
    wanted = set(wallets)
    rows = conn.execute(ON_DEMAND_ROWS_SQL, (feature_date, window_days, wallets[0], wallets[-1]))
    return [
        FeatureSet.model_construct(**dict(zip(FEATURE_ROW_KEYS, row, strict=True)))
        for row in rows
        if row[0] in wanted
    ]


def measure_skew(
    conn: Connection,
    wallets: Sequence[str],
    feature_date: str,
    window_days: int,
    rules: RuleSettings,
) -> Skew:
    """The skew of the day's on-demand rows among `wallets` (sorted); read before the batch
    rows replace them."""
    published = on_demand_rows(conn, wallets, feature_date, window_days)
    if not published:
        return Skew()
    latest = max(features.as_of for features in published)
    fills = dict(fills_by_wallet(conn, [f.proxy_wallet for f in published], latest))
    return skew_of(published, fills, rules)
