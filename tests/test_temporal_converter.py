"""The data converter: the pydantic wire format, with one set of converters per process."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from temporalio.contrib.pydantic import pydantic_data_converter

from temporal_converter import DATA_CONVERTER
from tests.rig import ANYTIME, STEPS
from workflows.models import PlanInput, PlanState, PlanStatus, StepState


def _json_converter(dc: object) -> object:
    converters = dc.payload_converter._inner_payload_converter.converters  # type: ignore[attr-defined]
    return converters[b"json/plain"]


def test_payloads_are_the_pydantic_converters_byte_for_byte() -> None:
    """Histories written before (and by other clients) decode unchanged."""
    state = PlanState(
        lead_id=7, telegram_id=42, plan_version=2, schedule=ANYTIME,
        status=PlanStatus.PAUSED, paused_until=datetime(2026, 12, 1, 9, tzinfo=UTC),
        steps=[StepState.from_step(s) for s in STEPS],
    )  # fmt: skip
    inp = PlanInput(lead_id=7, telegram_id=42, steps=STEPS, schedule=ANYTIME)
    ours = DATA_CONVERTER.payload_converter.to_payloads([state, inp])
    theirs = pydantic_data_converter.payload_converter.to_payloads([state, inp])
    assert ours == theirs
    assert DATA_CONVERTER.payload_converter.from_payloads(theirs, [PlanState, PlanInput]) == [
        state,
        inp,
    ]


def test_every_converter_the_sdk_builds_shares_one_type_adapter_cache() -> None:
    """temporalio builds a converter per loaded plan and per activation (a DataConverter
    copy runs `__post_init__` again): all of them must reuse the process's converters."""
    copy = dataclasses.replace(DATA_CONVERTER)
    assert copy.payload_converter is not DATA_CONVERTER.payload_converter
    assert _json_converter(copy) is _json_converter(DATA_CONVERTER)
    plain = dataclasses.replace(pydantic_data_converter)
    assert _json_converter(plain) is not _json_converter(pydantic_data_converter)  # what we avoid
