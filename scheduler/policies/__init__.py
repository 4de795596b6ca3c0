"""Every policy, registered by name on import. See base.py for the interface."""

from scheduler.policies import baselines, cs_ucb  # noqa: F401  (registers the policies)
from scheduler.policies.base import (POLICIES, Decision, NoNodeError, Policy, create_policy,
                                     register_policy)
from scheduler.policies.cs_ucb import CsUcb, CsUcbConfig

__all__ = ["POLICIES", "CsUcb", "CsUcbConfig", "Decision", "NoNodeError", "Policy",
           "create_policy", "register_policy"]
