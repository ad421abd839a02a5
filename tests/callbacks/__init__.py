"""Tests of the /callbacks endpoints: signature checks, replay protection, and handing a
callback to the worker, against runs put in each state by hand."""
