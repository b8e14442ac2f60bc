#!/bin/sh
# The man_page test (cmake/manpage.cmake): tinysse.1, written at build time
# by `tinysse --man`, is what the binary writes now, renders without a
# warning (groff -ww, man -l, mandoc -Tlint: whichever are installed), and
# documents every option `tinysse --help` lists, with its value's name.
# Usage: man_page.sh TINYSSE_BINARY TINYSSE_1. Exits 77 (ctest: skipped)
# when nothing here can render roff; 1 with the reasons on any failure.
set -eu
bin=$1
page=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
export LC_ALL=C.UTF-8

if [ ! -s "$page" ]; then
  echo "FAIL: $page is missing or empty (the tinysse_man target writes it)"
  exit 1
fi

# 1. The built page is the binary's (the .TH line holds the date).
"$bin" --man >"$tmp/now.1"
grep -v '^\.TH ' "$page" >"$tmp/built"
grep -v '^\.TH ' "$tmp/now.1" >"$tmp/now"
if ! cmp -s "$tmp/built" "$tmp/now"; then
  echo "FAIL: $page differs from what $bin --man writes now:"
  diff -u "$tmp/built" "$tmp/now" | head -40
  fail=1
fi
head -n 3 "$page" | grep -q '^\.TH TINYSSE 1 "[0-9-]*" "tinysse ' ||
  { echo "FAIL: no .TH TINYSSE 1 line at the top"; fail=1; }

# 2. It renders without a warning.
renderers=""
if command -v groff >/dev/null 2>&1; then
  renderers="$renderers groff"
  groff -man -Tutf8 -ww -z "$page" >"$tmp/groff.err" 2>&1 || echo "groff exited $?" >>"$tmp/groff.err"
  if [ -s "$tmp/groff.err" ]; then
    echo "FAIL: groff -man -Tutf8 -ww warns:"
    cat "$tmp/groff.err"
    fail=1
  fi
  # the text a reader sees, for step 3 (minus signs and hyphens as '-')
  groff -man -Tutf8 -P-cbou "$page" 2>/dev/null | sed 's/\xe2\x88\x92/-/g; s/\xe2\x80\x90/-/g' >"$tmp/text"
fi
if command -v man >/dev/null 2>&1; then
  renderers="$renderers man"
  MANWIDTH=80 man --warnings -l "$page" >"$tmp/man.out" 2>"$tmp/man.err" || echo "man exited $?" >>"$tmp/man.err"
  if [ -s "$tmp/man.err" ] || [ ! -s "$tmp/man.out" ]; then
    echo "FAIL: man --warnings -l $page:"
    cat "$tmp/man.err"
    fail=1
  fi
fi
if command -v mandoc >/dev/null 2>&1; then
  renderers="$renderers mandoc"
  if ! mandoc -Tlint -W warning "$page" >"$tmp/mandoc.err" 2>&1 || [ -s "$tmp/mandoc.err" ]; then
    echo "FAIL: mandoc -Tlint -W warning:"
    cat "$tmp/mandoc.err"
    fail=1
  fi
fi
if [ -z "$renderers" ]; then
  echo "SKIP: none of groff, man, mandoc is installed"
  exit 77
fi

# 3. Every option of --help has its entry (".TP", then "--name VALUE"), and
#    the rendered text names it; the hidden --man is in neither.
"$bin" --help | awk '/^  --/ {
  v = ""
  if (match($0, /^  --[a-z0-9-]+ [^ ]/)) v = $2
  print substr($1, 3), v
}' >"$tmp/options"
n=0
while read -r name value; do
  n=$((n + 1))
  want="\\fB$(printf '%s' "--$name" | sed 's/-/\\-/g')\\fR"
  [ -n "$value" ] && want="$want \\fI$(printf '%s' "$value" | sed 's/-/\\-/g')\\fR"
  if ! grep -Fxq -- "$want" "$page"; then
    printf 'FAIL: --%s (from --help) has no entry "%s" in %s\n' "$name${value:+ $value}" "$want" "$page"
    fail=1
  fi
  if [ -s "$tmp/text" ] && ! grep -Eq -- "(^|[^a-z0-9-])--$name([^a-z0-9-]|\$)" "$tmp/text"; then
    echo "FAIL: --$name is not in the rendered page"
    fail=1
  fi
done <"$tmp/options"
if [ "$n" -lt 20 ]; then
  echo "FAIL: only $n options read from --help"
  fail=1
fi
if awk '$1 == "man" { found = 1 } END { exit !found }' "$tmp/options" ||
  grep -Fxq '\fB\-\-man\fR' "$page"; then
  echo "FAIL: the hidden --man is listed"
  fail=1
fi

[ "$fail" -eq 0 ] && echo "ok: $n options, rendered by$renderers without a warning"
exit "$fail"
