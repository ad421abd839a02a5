"""Domain services: plain functions over a session. They never touch `request` and never commit."""
