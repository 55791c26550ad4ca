"""Plan services shared by the bot and the Mini App: both steer plans the same way."""
