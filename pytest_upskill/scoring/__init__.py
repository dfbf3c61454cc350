"""Scoring: the scorer, the built-in checks, the check pool, the sandbox (and its confinement) and the
validators of workspace trials."""
