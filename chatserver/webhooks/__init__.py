"""Webhooks: the outbox rows written with each message, their signed delivery, and the log.

    events.py       every event type, and how an endpoint's event_types filter matches
    outbox.py       queue an event for its endpoints in the change's own transaction
    endpoints.py    the per-conversation endpoint and its secret (create, rotate, enable)
    ssrf.py         which addresses a callback URL may reach
    signing.py      Standard Webhooks signatures
    sender.py       one HTTP attempt (no redirects, bounded time and body)
    schedule.py     what happens after an attempt: done, retry when, give up, endpoint gone
    dispatcher.py   the loop that claims due deliveries and sends them
    context.py      wiring into the app (cleanup context) and `chatserver worker`

The API's operations on them (log, redeliver, test, rotate, enable) are
`chatserver.services.webhooks`.
"""
