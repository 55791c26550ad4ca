"""Search attribute keys of plan workflows: ids, status and next due time, never personal data."""

from temporalio.common import SearchAttributeKey

LEAD_ID = SearchAttributeKey.for_int("LeadId")
TELEGRAM_ID = SearchAttributeKey.for_int("TelegramId")
PLAN_STATUS = SearchAttributeKey.for_keyword("PlanStatus")
NEXT_DUE_AT = SearchAttributeKey.for_datetime("NextDueAt")

# Name → CLI type, for `temporal server start-dev --search-attribute` and the operator API.
ALL = {"LeadId": "Int", "TelegramId": "Int", "PlanStatus": "Keyword", "NextDueAt": "Datetime"}
