"""pytest-upskill: regression-test agent skills across models, with and without the skill.

PYTEST_DONT_REWRITE: the plugin has no test asserts to rewrite.
"""

from .checks import Check, CheckResult

__all__ = ["Check", "CheckResult"]
__version__ = "0.1.0"
