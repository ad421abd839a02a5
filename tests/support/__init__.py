"""Shared test infrastructure: a throwaway PostgreSQL server, a network guard and a headless browser launcher."""
