"""Fake provider servers that speak each provider's wire format over HTTP on 127.0.0.1."""
