"""Every policy, registered by name on import. See base.py for the interface."""

from scheduler.policies.base import POLICIES, Decision, NoNodeError, Policy, create_policy

__all__ = ["POLICIES", "Decision", "NoNodeError", "Policy", "create_policy"]
