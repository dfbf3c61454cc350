#!/usr/bin/env bash
# The README's picture of the HTML report: the example skills on the bundled SmolLM2, as the README's
# first command runs them (the response cache makes a second run quick), then a headless Chromium.
# Needs the set-up of the README's first command, and Chromium (Debian: apt-get install chromium).
#   docs/screenshot.sh            -> docs/report.html and docs/report.png
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "no Chromium on PATH: apt-get install chromium" >&2; exit 2; }

# The run exits 1 (SmolLM2 fails cases with the skill, as the README says); the report is written anyway.
"$python" -m pytest example_skills -q -p no:cacheprovider --upskill-html docs/report.html >/dev/null || true
[ -s docs/report.html ] || { echo "the run wrote no docs/report.html" >&2; exit 1; }

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run --user-data-dir="$profile" \
  --host-resolver-rules="MAP * ~NOTFOUND" --window-size=1280,1500 --screenshot=docs/report.png \
  "file://$PWD/docs/report.html#outcome=fixed&case=impact" 2>/dev/null
echo "wrote docs/report.html and docs/report.png"
