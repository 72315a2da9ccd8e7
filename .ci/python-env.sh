# Sourced by the CI scripts that need Python tools from PyPI: each gets its
# own virtualenv under target/ with exact pins.
#
# Python 3.11's parser trips over Hypothesis's descriptions of lambdas deep
# in a recursive strategy ("AST constructor recursion depth mismatch", a
# schemathesis runtime error, not a finding): a newer interpreter is used
# where one is installed (on PATH, or under pyenv). FUZZ_PYTHON chooses one.
pick_python() {
  local v p
  for v in 3.13 3.12; do
    if command -v "python$v" >/dev/null 2>&1 && "python$v" -c '' >/dev/null 2>&1; then echo "python$v"; return; fi
    if command -v pyenv >/dev/null 2>&1; then
      for p in "$(pyenv root)/versions/$v".*/bin/python3; do
        if [ -x "$p" ]; then echo "$p"; return; fi
      done
    fi
  done
  echo python3
}
PYTHON="${FUZZ_PYTHON:-$(pick_python)}"
PYTHON_VERSION="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# ensure_venv DIR PIN...: a virtualenv at DIR holding exactly the pinned
# packages, made anew when the interpreter or a pin differs.
ensure_venv() {
  local dir="$1" have frozen pin
  shift
  have="$("$dir/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
  frozen="$("$dir/bin/pip" freeze 2>/dev/null || true)"
  if [ "$have" = "$PYTHON_VERSION" ]; then
    for pin in "$@"; do
      if ! grep -qx "$pin" <<<"$frozen"; then have=""; fi
    done
  fi
  if [ "$have" != "$PYTHON_VERSION" ]; then
    echo "--- installing $* into $dir (Python $PYTHON_VERSION)"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
  fi
}
