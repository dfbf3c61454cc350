"""pytest-upskill: regression-test agent skills across models, with and without the skill.

The public names are the ones in ``__all__`` (a test pins them): the types a custom check returns,
the sandbox a check runs model output in, the root of the errors the plugin raises, and
``measure()``, which runs the plugin on skills and models and returns its typed ``Report``.
``pytest_upskill.testing`` (a loopback model server for your own tests) is a pytest plugin module of
its own: name it in ``pytest_plugins``.

PYTEST_DONT_REWRITE: the plugin has no test asserts to rewrite.
"""

from pytest_upskill.errors import ConfigError, MeasureError, SkillFileError, UpskillError
from pytest_upskill.results.report import Report
from pytest_upskill.scoring import sandbox
from pytest_upskill.scoring.checks import Check, CheckResult
from pytest_upskill.teach.students import measure

__all__ = [
    "Check",
    "CheckResult",
    "ConfigError",
    "MeasureError",
    "Report",
    "SkillFileError",
    "UpskillError",
    "measure",
    "sandbox",
    "__version__",
]
__version__ = "0.1.0"
