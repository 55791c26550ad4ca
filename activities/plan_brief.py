"""What a planner may know about a lead: the one input both planners share.

Built from a `lead_registry` row by the worker's loader. Besides the owner's notes it
carries the draft number the workflow asks for (or, from older runs, the mirrored plan
version), so the built-in planner can tell a regenerated draft from the first one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["LeadBrief", "LeadsLoader"]


class LeadBrief(BaseModel):
    """What the planner may know about a lead (built from a `lead_registry` row)."""

    model_config = ConfigDict(from_attributes=True, extra="ignore")

    prospect_name: str = ""
    prospect_company: str = ""
    prospect_title: str = ""
    original_context: str = ""
    # When set, a request from another owner is treated as a missing lead.
    telegram_id: int | None = None
    # A closed (won/lost) lead gets no plan until it is reopened.
    status: str = ""
    # The plan the mirror holds (its version and steps as displayed), if any: a new
    # draft replaces it, so the built-in planner takes a different angle.
    plan_version: int = 1
    engagement_plan: list[Any] | None = None
    # The draft the workflow asks for (GeneratePlanRequest.draft_number), when it says.
    requested_draft: int | None = None

    @field_validator(
        "prospect_name", "prospect_company", "prospect_title", "original_context", mode="before"
    )
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return "" if value is None else value

    @property
    def draft_number(self) -> int:
        """1 for a lead's first draft, then one more for each plan it already had.

        The mirror holds the version of the plan on screen (and its steps once drafted),
        so the draft now asked for is that version, or the next one when it has steps.
        """
        if self.requested_draft is not None:
            return max(1, self.requested_draft)
        return max(1, self.plan_version) + (1 if self.engagement_plan else 0)


LeadsLoader = Callable[[int], Awaitable[LeadBrief | None]]
