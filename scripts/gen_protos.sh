#!/usr/bin/env bash
# Regenerates generated/ from proto/lrod. Only our own protos are generated:
# the google messages come from googleapis-common-protos at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf generated/lrod
mkdir -p generated
mapfile -t protos < <(find proto/lrod -name '*.proto' | LC_ALL=C sort)
"$PY" -m grpc_tools.protoc -Iproto \
  --python_out=generated --pyi_out=generated --grpc_python_out=generated \
  "${protos[@]}"
# Sub-packages need an __init__.py; generated/lrod itself must not have one,
# so that src/lrod (a regular package) extends its path over it.
find generated/lrod -mindepth 1 -type d -exec touch {}/__init__.py \;
