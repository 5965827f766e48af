"""Completion webhooks: the dispatcher that sends the outbox's deliveries,
signed per Standard Webhooks, with the SSRF guard on the addresses it
connects to."""
