#!/bin/sh
# Regenerate deploy/constraints.txt from the environment the tests ran in: every installed
# distribution at its exact version, except allocbot itself. Run it in the CI/dev venv after
# `pip install -e '.[test,lint]'` and a green `pytest`, then commit the file.
set -eu
out="$(dirname "$0")/constraints.txt"
{
  echo "# The versions allocbot's tests ran with (pip freeze minus allocbot), used by the image build."
  echo "# Regenerate: sh deploy/freeze-constraints.sh (in the venv the tests ran in)."
  python -m pip freeze --exclude-editable | grep -iv '^allocbot[= @]'
} > "$out"
echo "wrote $out"
