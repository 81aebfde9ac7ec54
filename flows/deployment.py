"""The ``cityscapes`` deployment of ``al-cycle``: nightly, never two rounds at once."""

from __future__ import annotations

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from flows.al_cycle import al_cycle

DEPLOYMENT_NAME = "cityscapes"
NIGHTLY_CRON = "0 2 * * *"


def build_deployment(repo: str, *, cron: str | None = NIGHTLY_CRON, paused: bool = False):
    """The deployment object; a second trigger waits for the running round (ENQUEUE)."""
    return al_cycle.to_deployment(
        name=DEPLOYMENT_NAME,
        cron=cron,
        paused=paused,
        parameters={"repo": repo},
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
        ),
        description="One active-learning round per run: DVC stages driven by Prefect.",
        tags=["alseg"],
    )
