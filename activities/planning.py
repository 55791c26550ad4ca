"""The generate_plan activity: an LLM through any OpenAI-compatible endpoint, or the
built-in planner when none is configured.

The model only ever drafts; what becomes a plan is decided by `plan_repair`, and what
the model is told by `plan_prompt`. This module owns the clients and turns failures into
the owner's words. A draft has one overall deadline (60 s by default) counted from the
first attempt across all retries; each request gets at most 25 s of it and the SDK does
not retry on its own (Temporal does). A transient failure (timeout, connection, 5xx,
429, an answer that is not JSON) raises a retryable "PlannerUnavailable" with
`next_retry_delay`, or a non-retryable one once the deadline leaves no room for another
try. Answers that will not get better by asking again (a refusal, output that cannot be
repaired, a request the endpoint calls invalid or unauthorised) fail non-retryably as
"PlanRejected". Every message is meant for the owner; the provider's own text goes to
the worker log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import pydantic
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.builtin_planner import builtin_plan
from activities.plan_brief import LeadBrief, LeadsLoader
from activities.plan_prompt import (
    PROMPT_PATH,
    PlanDraft,
    PlanDraftStep,
    build_messages,
    system_prompt,
)
from activities.plan_repair import PlanGenerationError, repair_plan, truncate
from storage.models import CLOSED_LEAD_STATUSES
from workflows.models import GeneratePlanRequest, PlanStep

if TYPE_CHECKING:  # openai is imported when first used: it costs seconds of worker start-up
    import openai

# The names other modules and tests import from here, wherever they now live.
__all__ = [
    "BUSY",
    "FAILED",
    "GARBLED",
    "MISCONFIGURED",
    "NO_ANSWER",
    "PROMPT_PATH",
    "UNREACHABLE",
    "LeadBrief",
    "LeadsLoader",
    "PlanDraft",
    "PlanDraftStep",
    "PlanGenerationError",
    "PlanningActivities",
    "build_messages",
    "builtin_plan",
    "make_openai_client",
    "repair_plan",
    "system_prompt",
    "truncate",
]

OPENAI_TIMEOUT_SECONDS = 25.0
OPENAI_MAX_RETRIES = 0
DRAFT_DEADLINE_SECONDS = 60.0
RETRY_DELAY_SECONDS = 2.0
# A try with less time than this left is not worth starting.
MIN_TRY_SECONDS = 5.0
# Requests the endpoint calls invalid or unauthorised stay so until an operator acts.
_NON_RETRYABLE_STATUSES = frozenset({400, 401, 403, 404, 413, 422})

# What the owner reads (PlanState.last_error, the "could not draft" notice).
NO_ANSWER = "The planning service did not answer; try 🔄 Regenerate in a minute."
UNREACHABLE = "The planning service could not be reached; try 🔄 Regenerate in a minute."
FAILED = "The planning service had a problem; try 🔄 Regenerate in a minute."
BUSY = "The planning service is busy right now; try 🔄 Regenerate in a minute."
GARBLED = "The planning service answered with something that is not a plan; try 🔄 Regenerate in a minute."
MISCONFIGURED = (
    "The planning service turned the request down, so its settings need a look: ask whoever "
    "runs leadpilot to check the AI settings, or add the steps yourself."
)


def make_openai_client(
    api_key: str | None,
    base_url: str | None,
    *,
    timeout: float = OPENAI_TIMEOUT_SECONDS,
    max_retries: int = OPENAI_MAX_RETRIES,
) -> openai.AsyncOpenAI | None:
    """Client for the configured endpoint, or None to use the built-in planner.

    Local servers (Ollama, vLLM, llama.cpp) need only a base URL; the SDK insists on a
    key, so a placeholder is sent. Retries stay few because Temporal retries the activity.
    """
    api_key = (api_key or "").strip() or None
    base_url = (base_url or "").strip() or None
    if api_key is None and base_url is None:
        return None
    import openai

    return openai.AsyncOpenAI(
        api_key=api_key or "not-needed",
        base_url=base_url,
        timeout=timeout,
        max_retries=max_retries,
    )


def _rejected(message: str) -> ApplicationError:
    return ApplicationError(message, type="PlanRejected", non_retryable=True)


class _Deadline:
    """The draft's overall deadline, on the server's clock for earlier attempts (time from
    the first schedule to this attempt's start) and the local clock within this one."""

    def __init__(self, seconds: float, request_timeout: float) -> None:
        self.request_timeout = request_timeout
        info = activity.info()
        spent = max(0.0, (info.started_time - info.scheduled_time).total_seconds())
        self._ends = asyncio.get_running_loop().time() + seconds - spent

    def remaining(self) -> float:
        return self._ends - asyncio.get_running_loop().time()


def _unavailable(message: str, deadline: _Deadline, retry_delay: float) -> ApplicationError:
    """A transient failure: retry soon, or give up now if the deadline leaves no room."""
    last = deadline.remaining() < retry_delay + min(MIN_TRY_SECONDS, deadline.request_timeout)
    return ApplicationError(
        message,
        type="PlannerUnavailable",
        non_retryable=last,
        next_retry_delay=None if last else timedelta(seconds=retry_delay),
    )


def _raw_content(body: str) -> str | None:
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


class PlanningActivities:
    """Plan generation with its clients injected, so the worker owns their lifecycle."""

    def __init__(
        self,
        leads_loader: LeadsLoader,
        openai_client: openai.AsyncOpenAI | Callable[[], openai.AsyncOpenAI | None] | None,
        model: str,
        *,
        deadline: float = DRAFT_DEADLINE_SECONDS,
        request_timeout: float = OPENAI_TIMEOUT_SECONDS,
        retry_delay: float = RETRY_DELAY_SECONDS,
    ) -> None:
        self._load_lead = leads_loader
        # A factory defers building the client (and importing openai) to the first draft.
        self._client_or_factory = openai_client
        self._model = model
        self._deadline = deadline
        self._request_timeout = request_timeout
        self._retry_delay = retry_delay

    @activity.defn(name="generate_plan")
    async def generate_plan(self, req: GeneratePlanRequest) -> list[PlanStep]:
        """Draft a plan for a lead; never returns one that fails `check_steps`."""
        brief = await self._load_lead(req.lead_id)
        if brief is None or (
            brief.telegram_id is not None and brief.telegram_id != req.telegram_id
        ):
            raise ApplicationError(
                f"lead {req.lead_id} not found", type="LeadNotFound", non_retryable=True
            )
        if brief.status in CLOSED_LEAD_STATUSES:
            raise ApplicationError(
                f"lead {req.lead_id} is {brief.status}; reopen it to plan again",
                type="LeadClosed",
                non_retryable=True,
            )
        if req.draft_number is not None:
            brief = brief.model_copy(update={"requested_draft": req.draft_number})
        client = self._client()
        if client is None:
            return builtin_plan(brief)
        return await self._ask_model(client, brief)

    def _client(self) -> openai.AsyncOpenAI | None:
        if callable(self._client_or_factory):
            self._client_or_factory = self._client_or_factory()
        return self._client_or_factory

    async def _ask_model(self, client: openai.AsyncOpenAI, brief: LeadBrief) -> list[PlanStep]:
        import openai

        deadline = _Deadline(self._deadline, self._request_timeout)
        budget = min(self._request_timeout, deadline.remaining() - 1.0)
        if budget < 1.0:
            raise _unavailable(NO_ANSWER, deadline, self._retry_delay)
        try:
            # The raw-response wrapper sends exactly what `parse()` sends but keeps the body,
            # so output the SDK cannot parse can still be repaired.
            raw = await client.chat.completions.with_raw_response.parse(
                model=self._model,
                messages=build_messages(brief),
                response_format=PlanDraft,
                timeout=budget,
            )
        except openai.APIStatusError as exc:
            activity.logger.warning(
                "planner answered HTTP %s: %s", exc.status_code, truncate(str(exc), 500)
            )
            if exc.status_code in _NON_RETRYABLE_STATUSES:
                raise _rejected(MISCONFIGURED) from exc
            owner_text = BUSY if exc.status_code == 429 else FAILED
            raise _unavailable(owner_text, deadline, self._retry_delay) from exc
        except openai.APITimeoutError as exc:
            activity.logger.warning("planner did not answer within %.0fs", budget)
            raise _unavailable(NO_ANSWER, deadline, self._retry_delay) from exc
        except openai.APIConnectionError as exc:
            activity.logger.warning("planner unreachable: %s", exc.__cause__ or exc)
            raise _unavailable(UNREACHABLE, deadline, self._retry_delay) from exc
        try:
            completion = raw.parse()
        except (
            pydantic.ValidationError,
            openai.LengthFinishReasonError,
            openai.ContentFilterFinishReasonError,
        ) as exc:
            activity.logger.warning("plan output did not parse (%s); repairing", type(exc).__name__)
            return self._repair(_raw_content(raw.text))
        except (ValueError, AttributeError, TypeError, openai.APIResponseValidationError) as exc:
            activity.logger.warning("planner answer is not JSON: %s", truncate(raw.text, 300))
            raise _unavailable(GARBLED, deadline, self._retry_delay) from exc
        if not hasattr(completion, "choices"):  # a 200 that was not a completion at all
            activity.logger.warning(
                "planner answer is not a completion: %s", truncate(raw.text, 300)
            )
            raise _unavailable(GARBLED, deadline, self._retry_delay)
        if not completion.choices:
            raise _rejected("The AI planner returned no answer. Try Regenerate.")
        message = completion.choices[0].message
        if message.refusal:
            raise _rejected(f"The AI planner declined: {truncate(message.refusal.strip(), 500)}")
        if message.parsed is None:
            return self._repair(message.content)
        return self._repair(message.parsed)

    @staticmethod
    def _repair(raw: object) -> list[PlanStep]:
        if raw is None:
            raise _rejected("The AI planner returned an empty answer. Try Regenerate.")
        try:
            return repair_plan(raw)
        except PlanGenerationError as exc:
            raise _rejected(str(exc)) from exc
