"""Reconciliation: refunds checked against the processors' own settlement data (issue 14).

This package starts with the settlement-data side: ``lines`` is the one normalised shape every processor's
rows become, ``parsing`` the interface and registry of the parsers, which live with their processor
(``gateways/<name>/settlement.py``). Storage, matching and breaks build on these.
"""
