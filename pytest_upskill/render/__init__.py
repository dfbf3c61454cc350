"""Rendering: every line printed in the terminal, and the HTML report."""
