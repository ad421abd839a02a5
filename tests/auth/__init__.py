"""Tests of sign-in hardening: Google sign-in, rate limits, password hashing, cookies."""
