"""Mininet testbed: topology, HTB shaping, fluctuation, accounting, teardown (see net.py)."""
