"""Alerts to people (issue 15 §2): rules checked by the worker, alerts raised where things happen,
each sent once through the Apprise URLs of REFUNDWATCH_ALERT_URLS, with a recovery message when it
resolves. ``targets`` (where messages go), ``store`` (each alert's life, atomic in the database),
``rules`` (what is checked), ``sending`` (Apprise), ``pages`` (the admin history).

Code that sees something a person must hear about calls :func:`raise_alert` (and
:func:`resolve_alert` when it is over), or ``store.open_in`` inside its own transaction.
"""

from refundwatch.alerts.store import raise_alert, resolve_alert

__all__ = ["raise_alert", "resolve_alert"]
