"""Tests of runbase_web/catalog: loading, checks, input validation, pricing."""
