"""The demo's mail catcher: an alert e-mailed through Apprise to ``alert_url`` is caught and shown."""

from __future__ import annotations

import apprise
from aiosmtpd.controller import Controller
from litestar.testing import TestClient

from _services import free_port
from refundwatch.demo_mail import RECIPIENT, Mailbox, alert_url, create_app


def test_an_alert_mailed_through_apprise_is_caught_and_shown() -> None:
    mailbox, port = Mailbox(), free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        notifier = apprise.Apprise()
        assert notifier.add(alert_url(port))
        assert notifier.notify(title="[CRITICAL] stripe-eu is down", body="health check failed <b>503</b>")
    finally:
        smtp.stop()
    (caught,) = mailbox.caught
    assert caught.subject == "[CRITICAL] stripe-eu is down"
    assert RECIPIENT in caught.to
    with TestClient(create_app(mailbox)) as client:
        page = client.get("/")
        listed = client.get("/mail.json").json()
    assert "[CRITICAL] stripe-eu is down" in page.text
    assert "<b>503</b>" not in page.text  # shown as text, never as markup
    assert listed["total"] == 1
    assert listed["mail"][0]["subject"] == caught.subject
