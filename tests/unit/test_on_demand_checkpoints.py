"""On-demand features from the rebuild's checkpoints (issue 14), on both stores: the FeatureSets
of a whole-history read to the last bit, with a late trade sending its wallet back to a whole
read and a discovery older than its wallet's checkpoint read wholly too."""

from __future__ import annotations

import random
from contextlib import closing

from agents.compute.on_demand import Discovery, OnDemandJob, compute_discoveries
from agents.compute.rebuild import RebuildOptions, run_rebuild
from agents.core.features import DAY
from agents.store import connect, fills_by_wallet, transaction
from agents.store.checkpoints import checkpointed_fills
from tests.conftest import on_both_stores
from tests.unit.test_rebuild_checkpoints import DAY1, DAY2, WALLETS, _history, _insert, _setup

pytestmark = on_both_stores

WINDOW = 30


def _features(database_url: str, discoveries: list[Discovery]) -> list[bytes | None]:
    job = OnDemandJob(tuple(discoveries), WINDOW, 0, computed_at=1.0)
    with closing(connect(database_url)) as conn:
        outcomes = compute_discoveries(conn, job)
    assert all(o.error is None for o in outcomes), [o.error for o in outcomes]
    return [o.features for o in outcomes]


def _without_checkpoints(database_url: str, discoveries: list[Discovery]) -> list[bytes | None]:
    with closing(connect(database_url)) as conn, transaction(conn):
        conn.execute("DELETE FROM wallet_checkpoints")
    return _features(database_url, discoveries)


def test_on_demand_from_checkpoints_gives_the_whole_historys_bytes(database_url: str) -> None:
    _setup(database_url, _history())
    run_rebuild(database_url, RebuildOptions(DAY1, parallel=False, computed_at=1.0))
    # A late trade (before the checkpoint, stored after it): WALLETS[2] is read wholly again.
    _insert_late = ("late", WALLETS[2], "m1", "SELL", 2.5, 0.7, DAY1 - 20 * DAY)
    with closing(connect(database_url)) as conn:
        _insert(conn, [_insert_late])
    discoveries = [
        Discovery(WALLETS[0], DAY2 - 3_600),  # after its checkpoint: read from it
        Discovery(WALLETS[1], DAY1 - 5 * DAY),  # before its checkpoint: read wholly
        Discovery(WALLETS[2], DAY2),  # its checkpoint is no longer valid
        Discovery(WALLETS[0], DAY1),  # at its checkpoint's time
    ]
    with closing(connect(database_url)) as conn:
        needs = {WALLETS[0]: (DAY1, DAY1 - WINDOW * DAY), WALLETS[1]: (DAY1 - 5 * DAY, 0)}
        needs[WALLETS[2]] = (DAY2, DAY2 - WINDOW * DAY)
        checkpoints, fills = checkpointed_fills(conn, needs, DAY2)
        whole = dict(fills_by_wallet(conn, WALLETS, DAY2))
    assert set(checkpoints) == {WALLETS[0]}
    assert len(fills[WALLETS[0]]) < len(whole[WALLETS[0]])  # the read was cut short
    assert len(fills[WALLETS[2]]) == len(whole[WALLETS[2]])

    from_checkpoints = _features(database_url, discoveries)
    assert None not in from_checkpoints
    assert from_checkpoints == _without_checkpoints(database_url, discoveries)


def test_random_discovery_times_around_the_checkpoints_give_the_same_bytes(
    database_url: str,
) -> None:
    _setup(database_url, _history(seed=11))
    run_rebuild(database_url, RebuildOptions(DAY1, parallel=False, computed_at=1.0))
    rnd = random.Random(3)
    discoveries = [
        Discovery(rnd.choice(WALLETS), DAY1 + rnd.randrange(-3 * DAY, 3 * DAY)) for _ in range(30)
    ]
    from_checkpoints = _features(database_url, discoveries)
    assert from_checkpoints == _without_checkpoints(database_url, discoveries)
    for wallet in WALLETS:  # each wallet alone, so the ones after their checkpoint use it
        alone = [d for d in discoveries if d.wallet == wallet and d.as_of >= DAY1]
        assert alone
        run_rebuild(database_url, RebuildOptions(DAY1, parallel=False, computed_at=1.0))
        assert _features(database_url, alone) == _without_checkpoints(database_url, alone)
