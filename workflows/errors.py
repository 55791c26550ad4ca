"""Typed refusals of owner actions, shared by the workflow and its callers.

A validator (or an update handler) raises `rejected(Rejection.X, "…")`; the caller
gets `WorkflowUpdateFailedError` whose cause is an `ApplicationError` with
`type == Rejection.X.value`, and maps the type, never the message text, to what the
owner reads. `rejection_of(err)` does that mapping for any update failure.
"""

from __future__ import annotations

from enum import StrEnum

from temporalio.exceptions import ApplicationError


class Rejection(StrEnum):
    # A double tap or a stale button: the thing was already done (or replaced).
    ALREADY_HANDLED = "AlreadyHandled"
    # A step that is not the current one yet.
    NOT_DUE = "NotDue"
    # The plan has finished (completed or cancelled).
    PLAN_FINISHED = "PlanFinished"
    # The plan is waiting for approval, so step answers make no sense yet.
    NOT_STARTED = "NotStarted"
    # The action does not fit the plan's current status (pause a paused plan …).
    WRONG_STATUS = "WrongStatus"
    # A plan is being drafted; wait for it.
    BUSY = "Busy"
    # The lead is closed (won/lost): no plan may run for it until reopened.
    LEAD_CLOSED = "LeadClosed"
    # Bad arguments (a pause end in the past, an invalid plan …).
    INVALID = "Invalid"
    # The planner could not draft a plan.
    DRAFT_FAILED = "DraftFailed"


def rejected(kind: Rejection, message: str) -> ApplicationError:
    """The exception a validator or handler raises to refuse an action (never retried)."""
    return ApplicationError(message, type=kind.value, non_retryable=True)


def rejection_of(err: BaseException) -> Rejection | None:
    """The typed reason behind an update failure, if the workflow gave one."""
    cause = getattr(err, "cause", None)
    for candidate in (err, cause):
        if isinstance(candidate, ApplicationError) and candidate.type:
            try:
                return Rejection(candidate.type)
            except ValueError:
                return None
    return None
