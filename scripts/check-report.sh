#!/usr/bin/env bash
# Renders a study's report page (results/<name>/index.html) in headless Chromium and checks that every image on it
# decoded: the page's inline script sets <body data-images-loaded="all"> on load, or the number that failed.
# usage: scripts/check-report.sh results/<name>/index.html [screenshot.png]
# With a second argument, also writes a 1280-pixel-wide screenshot of the page there.
# Exit 0 when every image loaded, 1 with one line on stderr otherwise, 77 when no Chromium is installed (CTest's
# skip code for cli.report_page_renders).
set -euo pipefail

fail() {
  echo "check-report: $*" >&2
  exit 1
}

[ $# -ge 1 ] && [ $# -le 2 ] || fail "usage: scripts/check-report.sh results/<name>/index.html [screenshot.png]"
page=$1
shot=${2:-}
[ -f "$page" ] || fail "no report page $page"

browser=""
for candidate in chromium chromium-browser; do
  if command -v "$candidate" >/dev/null 2>&1; then
    browser=$candidate
    break
  fi
done
if [ -z "$browser" ]; then
  echo "check-report: chromium not found (neither chromium nor chromium-browser on PATH); skipped"
  exit 77
fi

# An absolute file:// URL, with the characters that would end or change a URL path escaped.
abs_page="$(cd "$(dirname "$page")" && pwd)/$(basename "$page")"
url=${abs_page//%/%25}
url=${url// /%20}
url=${url//#/%23}
url=${url//\?/%3F}
url="file://$url"

# A throwaway profile, so that runs neither share nor leave browser state.
profile=$(mktemp -d)
log="$profile.log"
trap 'rm -rf "$profile" "$log"' EXIT
flags=(--headless --no-sandbox --disable-gpu --virtual-time-budget=5000 --no-first-run --no-default-browser-check
       --user-data-dir="$profile")

dom=$(timeout 120 "$browser" "${flags[@]}" --dump-dom "$url" 2>"$log") ||
  fail "$browser could not render $page (exit $?; $(tail -n 1 "$log"))"
if ! grep -q 'data-images-loaded="all"' <<<"$dom"; then
  state=$(grep -o 'data-images-loaded="[^"]*"' <<<"$dom" | head -n 1 | cut -d'"' -f2 || true)
  [ -n "$state" ] || fail "$page: the page never finished loading (no data-images-loaded on <body>)"
  fail "$page: $state image(s) did not load"
fi

if [ -n "$shot" ]; then
  mkdir -p "$(dirname "$shot")"
  abs_shot="$(cd "$(dirname "$shot")" && pwd)/$(basename "$shot")"
  rm -f "$abs_shot"
  timeout 120 "$browser" "${flags[@]}" --hide-scrollbars --window-size=1280,2000 --screenshot="$abs_shot" "$url" \
    >/dev/null 2>"$log" || fail "$browser could not take a screenshot of $page (exit $?)"
  [ -s "$abs_shot" ] || fail "$browser wrote no screenshot to $shot"
fi
echo "check-report: $page: every image loaded${shot:+; screenshot in $shot}"
