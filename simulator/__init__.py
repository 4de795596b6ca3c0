"""Paper-scale discrete-event simulation of the edge-cloud testbed.

It drives the same policy objects as the gRPC scheduler (scheduler.policies) on a simulated
clock: links share their current rate among concurrent uploads, nodes serve a few services at
a time at their hardware profile's rates, and energy follows scheduler/reward.py.

Modules: engine (processor-sharing servers on SimPy), model (links, nodes), runner (one run of
one policy), world (a scenario spec turned into nodes, arrivals and rate changes), paper (the
paper's evaluation matrix), sweep, calibrate, compare, bench; `python -m simulator` is the CLI.
"""
