"""Connecting to Temporal and addressing plan workflows: shared by worker, bot, CLI and tests."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from temporal_converter import DATA_CONVERTER
from workflows import search_attributes as sa
from workflows.engagement_plan import (
    ENGAGEMENT_TASK_QUEUE,
    EngagementPlanWorkflow,
    initial_search_attributes,
)
from workflows.models import PlanInput, PlanSummary

PlanHandle = WorkflowHandle[EngagementPlanWorkflow, PlanSummary]


async def connect(
    address: str, namespace: str = "default", runtime: Runtime | None = None
) -> Client:
    """Every client uses our pydantic converter (`temporal_converter`)."""
    return await Client.connect(
        address, namespace=namespace, data_converter=DATA_CONVERTER, runtime=runtime
    )


def plan_workflow_id(lead_id: int) -> str:
    return f"lead-{lead_id}"


async def start_plan(client: Client, inp: PlanInput) -> PlanHandle:
    """Start the lead's plan, or return the one already running: never two open plans."""
    return await client.start_workflow(
        EngagementPlanWorkflow.run,
        inp,
        id=plan_workflow_id(inp.lead_id),
        task_queue=ENGAGEMENT_TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=initial_search_attributes(inp),
        static_summary=f"Engagement plan for lead {inp.lead_id}",
        static_details=(
            f"Owner {inp.telegram_id}; "
            + ("plan supplied" if inp.steps else "plan drafted by the planner")
            + f"; day = {inp.day_seconds}s"
        ),
    )


def plan_handle(client: Client, lead_id: int) -> PlanHandle:
    return client.get_workflow_handle_for(EngagementPlanWorkflow.run, plan_workflow_id(lead_id))


_INDEXED = {
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
}


async def register_search_attributes(client: Client) -> None:
    """Add our search attributes to the namespace if they are missing (idempotent)."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        known: set[str] = set(existing.custom_attributes)
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()  # the time-skipping test server can add but not list
    missing = {name: _INDEXED[kind] for name, kind in sa.ALL.items() if name not in known}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
