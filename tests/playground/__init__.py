"""Tests of the Playground blueprint (runbase_web/playground): the page, forms, price,
run cards, restoring forms, several models at once; test client and Chromium."""
