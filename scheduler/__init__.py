"""The scheduler: cluster state, policies (CS-UCB and baselines), the energy/reward model and
the gRPC SchedulerService.

Policies are plain objects with no I/O so the gRPC service, the emulated scenarios and the
simulator all drive the same code. This package never imports Mininet, a backend or torch.
"""
