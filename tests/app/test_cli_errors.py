"""A user's mistake raised inside a Prefect flow reaches the terminal as the CLI's one line, not as Prefect's
"Encountered exception" record with a traceback; a bug keeps its traceback."""

import logging
import sys

from datafactory.app.cli import not_a_user_error, quiet_libraries
from datafactory.factory.config import ConfigError
from datafactory.flows.lock import DirLocked
from datafactory.mixtures.methods import InfeasiblePlan


def record_of(error: Exception) -> logging.LogRecord:
    try:
        raise error
    except Exception:
        info = sys.exc_info()
    return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1,
                             "Encountered exception during execution: %r", (error,), info)


def test_user_errors_are_dropped_and_bugs_kept():
    for error in (ConfigError("config x.yaml: unknown key"), InfeasiblePlan("too few tokens"), DirLocked("busy")):
        assert not not_a_user_error(record_of(error))
    assert not_a_user_error(record_of(KeyError("a bug")))
    assert not_a_user_error(logging.LogRecord("prefect.flow_runs", logging.INFO, __file__, 1, "ok", (), None))


def test_the_cli_installs_the_filter_on_prefects_run_loggers():
    quiet_libraries()
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        assert not_a_user_error in logging.getLogger(name).filters
