"""The pytest-upskill command: its subcommands (generate, cases, merge, runs, plan)."""
