"""`benchmarks.queue_pg` on the session's PostgreSQL, small: two nodes route every item once,
the agents on the node that did not offer hear of it by notification, and the costs are
counted."""

from __future__ import annotations

from benchmarks.queue_pg import run as queue_pg

from tests.conftest import fresh_pg_database


async def test_two_nodes_route_every_item_once_and_the_database_costs_are_counted(
    pg_url: str, pg_template: str
) -> None:
    url = await fresh_pg_database(pg_url, pg_template)
    result = await queue_pg.run(url, items=6, agents=2, rate=50.0)
    assert result.ok, result
    assert (result.completed, result.double_accepts, result.overlapping_offers) == (6, 0, 0)
    assert set(result.statements) == {"n1", "n2"} and all(result.statements.values())
    assert result.statements_per_item > 0 and result.commits_per_item > 0
    assert result.pg_cpu_seconds > 0  # the server's processes were found and spent CPU
    assert sum(result.notifications.values()) > 0  # agents on n2 took n1's offers, and back
    assert "statements sent per item" in queue_pg.report(result)
