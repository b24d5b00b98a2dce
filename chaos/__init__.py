"""Fault scenarios on real processes: `python -m chaos [--short] [scenario ...]`.

Each scenario starts `chatserver serve` instances (the Procfile's `web:` command) on an embedded
Postgres and a real Redis, drives websocket and REST publishers, subscribers and a webhook
receiver, breaks something (kill -9, Redis down, Postgres down, SIGTERM), and prints one summary
line: sent / acknowledged / delivered / lost. The exit status is 0 only if every scenario held.

    processes.py   Postgres, Redis and server instances
    clients.py     subscribers, publishers and the webhook receiver
    stack.py       one scenario's world, and the delivery check
    scenarios.py   the four scenarios
    run.py         the command line
"""
