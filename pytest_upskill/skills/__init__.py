"""Skills: reading SKILL.md and its test cases, finding skill folders, and what changed since a git ref."""
