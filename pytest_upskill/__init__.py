"""pytest-upskill: regression-test agent skills across models, with and without the skill."""

from .checks import Check, CheckResult

__all__ = ["Check", "CheckResult"]
__version__ = "0.1.0"
