"""The terminal role: the report header and the summary a run prints, from what the controller
gathered (pytest-xdist keeps its terminal reporting apart from the session in the same way)."""

from __future__ import annotations

from typing import Any

from .config import NO_MODEL
from .report import audit_lines, reliability_lines, terminal_lines


class TerminalSummary:
    """Registered beside the run's state (plugin.UpskillState, not imported: the plugin imports
    this module); pytest calls its hooks."""

    def __init__(self, state: Any):
        self.state = state

    def pytest_report_header(self) -> str | None:
        """The models under test; nothing where none is named (a project that tests no skill)."""
        state = self.state
        return f"upskill: models {', '.join(s.name for s in state.specs)}" if state.specs else None

    def pytest_terminal_summary(self, terminalreporter) -> None:
        state = self.state
        results = state.aggregator.results()
        write = terminalreporter.write_line
        unseen = state.unseen.line()
        if not state.specs and state.ledger.expected:
            terminalreporter.write_sep("=", "upskill: no trial ran", yellow=True)
            write(
                f"upskill: {NO_MODEL}; the {len(state.ledger.expected)} case(s) found were skipped, and nothing was "
                "measured"
            )
        if unseen:
            write(unseen)
        if not results and not state.report.get("missing"):
            return
        terminalreporter.write_sep("=", "upskill: lift per skill × model")
        for line in terminal_lines(results, {s.name: (s.input_price, s.output_price) for s in state.specs}):
            write(line)
        write(
            f"{state.aggregator.cached} of {state.aggregator.trials} trial(s) came from the cache ({state.cache.root})"
            if state.cache_mode != "off"
            else "cache off"
        )
        for spec in state.specs:
            if spec.note:
                write(f"note: {spec.note}")
        for line in audit_lines(results):
            write(f"audit: {line}")
        for problem in state.ledger.cache_problems:
            write(f"cache warning: {problem} (ignored and fetched again)")
        for line in reliability_lines(state.report, state.error_limit):
            write(line)
        budget = state.report.get("budget")
        if budget and budget["not_sent"]:
            write(
                f"budget: stopped sending at ${budget['spent']:.4f} spent of ${budget['limit']:g}; "
                f"{budget['not_sent']} trial(s) not sent "
                "(errors of kind over_budget); finished trials are kept"
            )
        if state.evaluation and (state.evaluation.verdicts or state.evaluation.regressions):
            terminalreporter.write_sep("=", "upskill: gates")
            for line in state.evaluation.lines():
                write(line)
            if state.evaluation.gated:
                write(
                    "exit status follows these verdicts: PASS passes, FAIL fails, INCONCLUSIVE "
                    + (
                        "fails (--upskill-strict)"
                        if state.config.getoption("upskill_strict")
                        else "is decided on the point estimate (fails below the threshold; --upskill-strict fails "
                        "every one)"
                    )
                )
        path = state.config.getoption("upskill_report")
        if path and not any(p.startswith(f"could not write the JSON report {path}:") for p in state.write_problems):
            write(f"JSON report written to {path}")
        for problem in state.write_problems:
            write(f"upskill: {problem} (exit status 1)")
