"""The teacher: drafting skills and cases with a teacher model, measured on students by the plugin's engine."""
