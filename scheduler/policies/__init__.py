"""Every policy, registered by name on import. See base.py for the interface.

Each module of this package is imported here, so a new policy is one file with a class
decorated by `@register_policy("name")`: no list to edit.
"""

import importlib
import pkgutil

from scheduler.policies.base import (POLICIES, Decision, NoNodeError, Policy, create_policy,
                                     register_policy)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from scheduler.policies.cs_ucb import CsUcb, CsUcbConfig  # noqa: E402

__all__ = ["POLICIES", "CsUcb", "CsUcbConfig", "Decision", "NoNodeError", "Policy",
           "create_policy", "register_policy"]
