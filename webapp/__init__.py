"""The Telegram Mini App: sign-in by initData, a JSON API read under RLS, a static front end."""
