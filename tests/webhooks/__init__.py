"""Webhook tests: a real receiver on 127.0.0.1, the dispatcher, real Postgres."""
