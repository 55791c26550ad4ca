"""The data converter every client, worker and replayer of ours uses.

It is the SDK's pydantic converter (models cross the wire intact), built once per
process. temporalio builds a payload converter for every workflow it loads and two for
every workflow activation; the pydantic one brings a fresh TypeAdapter cache and schema
serializer each time, so a plan paid for them on every task and kept its own copy while
cached. The converters are stateless apart from that cache, and the cache is
thread-safe, so one set serves all workflows.
"""

from __future__ import annotations

from typing import ClassVar

from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    EncodingPayloadConverter,
)


class SharedPydanticPayloadConverter(PydanticPayloadConverter):
    _shared: ClassVar[tuple[EncodingPayloadConverter, ...] | None] = None

    def __init__(self) -> None:
        shared = SharedPydanticPayloadConverter._shared
        if shared is None:
            super().__init__()
            SharedPydanticPayloadConverter._shared = tuple(self.converters.values())
        else:
            CompositePayloadConverter.__init__(self, *shared)


DATA_CONVERTER = DataConverter(payload_converter_class=SharedPydanticPayloadConverter)
