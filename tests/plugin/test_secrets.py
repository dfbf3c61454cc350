"""Secrets: a canary key in every variable a provider reads reaches the servers and nothing else,
not even when a server echoes it in an error or a reply."""

from __future__ import annotations

import json

import pytest

from pytest_upskill.testing import Fault, LoopbackServer, default_reply

CANARY = "sk-canary-5f3a9c7e1d0b"
KEY_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "GLM_API_KEY")
CASES = [
    {"id": f"c{i}", "input": f"Question {i}: the alpha code?", "expected": {"contains": "zeta-42"}} for i in range(3)
]


@pytest.fixture
def canary_env(monkeypatch):
    for var in KEY_VARS:
        monkeypatch.setenv(var, CANARY)
    monkeypatch.setenv("OPENAI_LOG", "debug")  # the SDK's own debug logging, to stderr
    monkeypatch.setenv("ANTHROPIC_LOG", "debug")


def echoing_reply(system: str, user: str) -> str:
    """A model that repeats the key it was somehow given."""
    return default_reply(system, user) + f" By the way, the key is {CANARY}."


def echo_key_in_errors(n: int, body: dict) -> Fault | None:
    """The real APIs echo a wrong key in their 401 body; this server does it for one case in three."""
    if "Question 1" in json.dumps(body):
        return Fault(
            401,
            json.dumps({"error": {"message": f"Incorrect API key provided: {CANARY}."}}).encode(),
            {"content-type": "application/json"},
        )
    if "Question 2" in json.dumps(body):
        return Fault(500, f"upstream said: bad key {CANARY}".encode(), {"content-type": "text/plain"})
    return None


def every_text(pytester, result) -> dict[str, str]:
    texts = {"stdout": result.stdout.str(), "stderr": result.stderr.str()}
    for path in pytester.path.rglob("*"):
        if path.is_file():
            texts[str(path.relative_to(pytester.path))] = path.read_bytes().decode("utf-8", "replace")
    return texts


@pytest.mark.parametrize("verbosity", ["-v", "-vv"])
def test_a_canary_key_reaches_the_servers_and_no_output_file_log_or_error(
    pytester, write_skill, canary_env, verbosity, monkeypatch
):
    write_skill("alpha-facts", {"tests": CASES}, body="The alpha code is ZETA-42.")
    summary = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    with (
        LoopbackServer(reply=echoing_reply, fault=echo_key_in_errors) as openai_server,
        LoopbackServer(reply=echoing_reply) as anthropic_server,
    ):
        pytester.makepyprojecttoml(f"""
            [tool.upskill.models.glm]
            provider = "openai"
            model = "glm-4"
            base_url = "{openai_server.openai_base_url}"
            api_key_env = "GLM_API_KEY"
        """)
        models = f"openai:m@{openai_server.openai_base_url},anthropic:c@{anthropic_server.anthropic_base_url},glm"
        result = pytester.runpytest(
            "skills",
            "--upskill-models",
            models,
            verbosity,
            "-rA",
            "--log-level=DEBUG",
            "--log-file=run.log",
            "--log-file-level=DEBUG",
            "--tb=long",
            "--showlocals",
            "--junitxml=out.xml",
            "--upskill-report",
            "r.json",
            "--upskill-markdown",
            "pr.md",
            "--upskill-retries",
            "1",
            "-o",
            "upskill_backoff=0.01",
        )
        sent = {
            (r.body.get("model"), CANARY in json.dumps(r.headers))
            for s in (openai_server, anthropic_server)
            for r in s.requests
        }
    # the key was really used (glm names its variable), so its absence below means something; the
    # self-hosted base URLs that name no variable get no hosted key (issue 27)
    assert sent == {("glm-4", True), ("m", False), ("c", False)}
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["errors_by_model"][f"openai:m@{openai_server.openai_base_url}"] == {"auth": 2, "server_error": 2}
    assert "Incorrect API key provided: [REDACTED]." in result.stdout.str()
    texts = every_text(pytester, result)
    assert {"out.xml", "r.json", "pr.md", "step-summary.md", "run.log"} <= set(texts)
    cached = [text for name, text in texts.items() if name.startswith(".upskill-cache/")]
    assert cached and all(
        "the key is [REDACTED]." in text for text in cached if "ZETA" in text
    )  # the echoing model, masked
    assert "DEBUG" in texts["run.log"] and "HTTP Request: POST" in texts["run.log"]  # the SDK's logs were captured
    leaks = sorted(name for name, text in texts.items() if CANARY in text)
    assert leaks == []
