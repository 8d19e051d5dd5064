"""What the demo's run left in the store: its wallets, when the last was done, the summary."""

from __future__ import annotations

from collections import Counter
from typing import Any

from agents.core.records import Market
from agents.data.generate import Dataset
from agents.store import Connection, insert_markets

__all__ = ["accounted", "count", "last_accounted_at", "stage_data", "summarise"]


def count(conn: Connection, sql: str, *params: Any) -> int:
    return int(conn.execute(sql, params).fetchone()[0])


def stage_data(conn: Connection, dataset: Dataset) -> int:
    """Markets in; the demo's wallets in demo_wallets; their trades from an earlier run out."""
    insert_markets(conn, (Market.model_validate(m) for m in dataset.markets))
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS demo_wallets (proxy_wallet TEXT PRIMARY KEY)")
    conn.execute("DELETE FROM demo_wallets")
    conn.executemany("INSERT INTO demo_wallets VALUES (?)", ((w,) for w in dataset.wallets))
    # Stored again from the topic: else INSERT OR IGNORE keeps the old rows and the count of
    # stored trades is complete before anything is consumed.
    earlier = "FROM trades WHERE proxy_wallet IN (SELECT * FROM demo_wallets)"
    deleted = conn.execute(f"DELETE {earlier}").rowcount
    return max(deleted, 0)


_ACCOUNTED = """
    FROM wallets AS w JOIN demo_wallets USING (proxy_wallet)
    LEFT JOIN wallet_classifications AS c
           ON c.proxy_wallet = w.proxy_wallet AND c.feature_date = ?
    WHERE w.on_demand_at >= ?
      AND (w.on_demand_status = 'insufficient' OR c.classified_at >= ?)"""


def accounted(conn: Connection, since: float, date: str) -> int:
    """Demo wallets whose discovery finished: insufficient, or classified."""
    return count(conn, "SELECT COUNT(*)" + _ACCOUNTED, date, since, since)


def last_accounted_at(conn: Connection, since: float, date: str) -> float | None:
    """When the last of them was committed: the store keeps that time for discoveries."""
    row = conn.execute(
        # CASE, not the two-argument MAX: the same SQL on SQLite and PostgreSQL.
        "SELECT MAX(CASE WHEN c.classified_at > w.on_demand_at THEN c.classified_at"
        " ELSE w.on_demand_at END)" + _ACCOUNTED,
        (date, since, since),
    ).fetchone()
    return float(row[0]) if row and row[0] is not None else None


def summarise(conn: Connection, dataset: Dataset, date: str, since: float) -> dict[str, Any]:
    rows = conn.execute(
        """
        SELECT c.proxy_wallet, c.status, c.persona, c.reason FROM wallet_classifications AS c
        JOIN demo_wallets USING (proxy_wallet) WHERE c.feature_date = ?""",
        (date,),
    ).fetchall()
    by_wallet = {wallet: (status, persona, reason) for wallet, status, persona, reason in rows}
    outcomes = dict(
        conn.execute(
            """
        SELECT on_demand_status, COUNT(*) FROM wallets JOIN demo_wallets USING (proxy_wallet)
        WHERE on_demand_at >= ? GROUP BY on_demand_status""",
            (since,),
        ).fetchall()
    )
    # Planted wallets with too few settled trades get no on-demand row: the rebuild has them.
    classified = [label for label in dataset.labels if label.proxy_wallet in by_wallet]
    reproduced = sum(
        by_wallet[label.proxy_wallet] == (label.status, label.persona, label.reason)
        for label in classified
    )
    return {
        "by_status": dict(Counter(status for status, _, _ in by_wallet.values()).most_common()),
        "by_persona": dict(Counter(p for s, p, _ in by_wallet.values() if p).most_common()),
        "by_reason": dict(Counter(r for _, _, r in by_wallet.values() if r).most_common()),
        "on_demand": {"success": outcomes.get("success", 0),
                      "insufficient": outcomes.get("insufficient", 0)},
        "planted_labels_reproduced": f"{reproduced}/{len(classified)}",
        "planted_left_to_rebuild": len(dataset.labels) - len(classified),
        "feature_date": date,
    }  # fmt: skip
