"""The PayPal simulator: Orders/Payments v2 refunds, OAuth tokens, certificate-signed webhooks."""
