"""The engine: trials, prompts, the runner, the agent loop, transport, rate limits, cache, budget, redaction
and the providers. It turns a trial into a scored outcome; it knows nothing of pytest."""
