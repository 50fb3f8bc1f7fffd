"""Outgoing webhooks (issue 15 §1): refundwatch tells other systems what changed, to the Standard
Webhooks specification.

``events`` (the types) → ``outbox`` (a delivery per endpoint, written with the change) →
``dispatcher`` in the worker → ``delivery`` (claim, render with ``payload``, sign with ``signing``,
send with ``sending`` through ``lib.egress``, record, retry on ``schedule``) → ``notices`` (an
endpoint disabled). ``endpoints`` and ``history`` are what the API and the admin pages call.
"""
