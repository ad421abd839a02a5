"""Presentation shared by the web, Playground and docs pages (never by services)."""
