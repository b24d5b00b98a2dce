"""chatserver: real-time chat (REST and websockets on Postgres, Redis fan-out, webhooks)."""

__version__ = "0.1.0"
