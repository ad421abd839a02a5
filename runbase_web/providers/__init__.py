"""Adapters that turn a model request into generated media."""
