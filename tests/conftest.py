"""Shared test configuration: root-only tests skip with a reason when not root."""

import os
import shutil

import pytest


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0 and shutil.which("mnexec"):
        return
    reason = ("needs root" if os.geteuid() != 0
              else "needs Mininet (run 'make setup')")
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
