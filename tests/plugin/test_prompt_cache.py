"""Provider prompt caching: Anthropic's cache marks (the same in both arms) and its cache usage,
OpenAI's cached prompt tokens, and what the reports and the cost make of them. The loopback
servers cache prompt prefixes as the APIs do and count what they served from the cache: the
report must add up to the server's own figures."""

from __future__ import annotations

import json

import pytest

from pytest_upskill.testing import LoopbackServer, count_tokens

SKILL_BODY = "The alpha code is ZETA-42. " + "Answer with care and sign with ~alpha. " * 40
CASES = [
    {"id": f"c{i}", "input": f"Question {i}: what is the alpha code?", "expected": {"contains": "zeta-42"}}
    for i in range(4)
]


@pytest.fixture
def alpha(write_skill):
    return write_skill("alpha-facts", {"tests": CASES}, body=SKILL_BODY)


def run(pytester, model: str, *extra: str):
    return pytester.runpytest(
        "skills", "--upskill-models", model, "--upskill-cache", "off", "--upskill-report", "r.json", *extra
    )


def result_of(pytester) -> dict:
    (result,) = json.loads((pytester.path / "r.json").read_text())["results"]
    return result


def arm_totals(result: dict, arm: str) -> tuple[int, int, int]:
    trials = [t for case in result["cases"] for t in case["trials"] if t["arm"] == arm]
    return (
        sum(t["input_tokens"] for t in trials),
        sum(t["cache_read_tokens"] for t in trials),
        sum(t["cache_write_tokens"] for t in trials),
    )


def test_anthropic_marks_the_system_prompt_cacheable_in_both_arms_and_the_cached_share_adds_up(pytester, alpha):
    with LoopbackServer() as server:
        out = run(pytester, f"anthropic:c@{server.anthropic_base_url}", "--upskill-concurrency", "1")
        result = result_of(pytester)
    systems = [r.body["system"] for r in server.requests]
    assert all(
        isinstance(s, list) and len(s) == 1 and s[0]["cache_control"] == {"type": "ephemeral"} for s in systems
    ), "every request, in both arms, marks its one system block"
    # one request per arm writes the prefix; the other three read it
    skill_prefix = max(count_tokens(s[0]["text"]) for s in systems)
    base_prefix = min(count_tokens(s[0]["text"]) for s in systems)
    s, b = result["with_skill"], result["baseline"]
    assert s["prompt_cache"] == {
        "read_tokens": 3 * skill_prefix,
        "write_tokens": skill_prefix,
        "read_share": pytest.approx(3 * skill_prefix / s["input_tokens"]),
    }
    assert b["prompt_cache"]["read_tokens"] == 3 * base_prefix
    # the input tokens stay the whole prompts (what the skill costs in context), as the server counted them
    assert b["input_tokens"] + s["input_tokens"] == server.input_tokens
    assert s["prompt_cache"]["read_tokens"] + b["prompt_cache"]["read_tokens"] == server.cache_read_tokens
    assert s["prompt_cache"]["write_tokens"] + b["prompt_cache"]["write_tokens"] == server.cache_write_tokens
    assert arm_totals(result, "with_skill") == (s["input_tokens"], 3 * skill_prefix, skill_prefix)
    out.stdout.fnmatch_lines(
        [
            f"  cached in   {3 * base_prefix:,} → {3 * skill_prefix:,} of the input tokens read from the prompt "
            "cache (*%)*"
        ]
    )


def test_openai_cached_prompt_tokens_are_counted_within_the_prompt_tokens(pytester, alpha):
    with LoopbackServer() as server:
        run(pytester, f"openai:m@{server.openai_base_url}", "--upskill-concurrency", "1")
        result = result_of(pytester)
    s, b = result["with_skill"], result["baseline"]
    assert b["input_tokens"] + s["input_tokens"] == server.input_tokens
    assert s["prompt_cache"]["read_tokens"] + b["prompt_cache"]["read_tokens"] == server.cache_read_tokens > 0
    assert s["prompt_cache"]["write_tokens"] == 0  # OpenAI does not report writes
    assert arm_totals(result, "with_skill")[1] == s["prompt_cache"]["read_tokens"]


def test_prompt_cache_off_sends_a_plain_system_prompt_and_reports_no_cached_share(pytester, alpha):
    with LoopbackServer() as server:
        out = run(pytester, f"anthropic:c@{server.anthropic_base_url}", "--upskill-prompt-cache", "off")
        result = result_of(pytester)
    assert all(isinstance(r.body["system"], str) for r in server.requests)
    assert server.cache_read_tokens == server.cache_write_tokens == 0
    assert "prompt_cache" not in result["baseline"] and "prompt_cache" not in result["with_skill"]
    assert "cached in" not in out.stdout.str()


def test_a_bad_prompt_cache_setting_is_a_usage_error_naming_it(pytester, alpha):
    pytester.makeini("[pytest]\nupskill_prompt_cache = sometimes\n")
    out = run(pytester, "anthropic:c@http://127.0.0.1:9")
    assert out.ret == pytest.ExitCode.USAGE_ERROR
    out.stderr.fnmatch_lines(["*--upskill-prompt-cache / upskill_prompt_cache must be auto or off, not 'sometimes'*"])


def test_cost_bills_cached_input_at_the_aliases_cache_prices(pytester, alpha):
    with LoopbackServer() as server:
        pytester.makepyprojecttoml(
            "[tool.upskill.models.priced]\n"
            f'provider = "anthropic"\nmodel = "c"\nbase_url = "{server.anthropic_base_url}"\n'
            "input_price = 3.0\noutput_price = 15.0\ncache_read_price = 0.3\ncache_write_price = 3.75\n"
            "[tool.upskill.models.unpriced-cache]\n"
            f'provider = "anthropic"\nmodel = "d"\nbase_url = "{server.anthropic_base_url}"\n'
            "input_price = 3.0\noutput_price = 15.0\n"
        )
        out = run(pytester, "priced,unpriced-cache", "--upskill-concurrency", "1")
    results = json.loads((pytester.path / "r.json").read_text())["results"]
    for result, (read_price, write_price) in zip(results, [(0.3, 3.75), (3.0, 3.0)], strict=True):
        for arm in ("baseline", "with_skill"):
            figures = result[arm]
            read, written = figures["prompt_cache"]["read_tokens"], figures["prompt_cache"]["write_tokens"]
            fresh = figures["input_tokens"] - read - written
            expected = (fresh * 3.0 + read * read_price + written * write_price + figures["output_tokens"] * 15.0) / 1e6
            assert figures["cost"] == pytest.approx(expected)
    # the cached skill costs less with cache prices than the same tokens at the input price
    assert results[0]["with_skill"]["cost"] < results[1]["with_skill"]["cost"]
    out.stdout.fnmatch_lines(
        ["  cost        $* → $* (* USD with the skill; the alias's prices per million tokens; totals, no interval)"]
    )
