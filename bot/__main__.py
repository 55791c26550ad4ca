"""`python -m bot`: run the Telegram bot (long polling, or webhook with BOT_MODE=webhook)."""

from bot.app import main

main()
