"""``TelegramEmulator``: the parts of the package put together as one object."""

from __future__ import annotations

from emulators.telegram.api import BotApiMixin
from emulators.telegram.control import ControlMixin
from emulators.telegram.queries import QueriesMixin
from emulators.telegram.server import ServerMixin


class TelegramEmulator(ControlMixin, QueriesMixin, BotApiMixin, ServerMixin):
    """In-process Telegram Bot API server with recording, update injection and fault scripts.

    Constructor arguments: see ``EmulatorCore.__init__`` (emulators/telegram/state.py).
    """
