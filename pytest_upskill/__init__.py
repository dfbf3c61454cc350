"""pytest-upskill: regression-test agent skills across models, with and without the skill.

The public names are the ones in ``__all__`` (a test pins them): the types a custom check returns,
the sandbox a check runs model output in, and the root of the errors the plugin raises.
``pytest_upskill.testing`` (a loopback model server for your own tests) is a pytest plugin module of
its own: name it in ``pytest_plugins``.

PYTEST_DONT_REWRITE: the plugin has no test asserts to rewrite.
"""

from pytest_upskill.errors import ConfigError, SkillFileError, UpskillError
from pytest_upskill.scoring import sandbox
from pytest_upskill.scoring.checks import Check, CheckResult

__all__ = ["Check", "CheckResult", "ConfigError", "SkillFileError", "UpskillError", "sandbox", "__version__"]
__version__ = "0.1.0"
