#!/usr/bin/env bash
# The wheels bench/gpu.py's in-process mode needs on a bare GPU box, downloaded here from PyPI.
#
#   bash bench/gpu_wheels.sh [DEST] [--python-version 3.12] [--with-transformers]
#
# The box (see bench/gpu.py's docstring) has Python 3.12 with torch, transformers, accelerate,
# peft, safetensors, pyarrow and fsspec, and what those install (numpy, tokenizers,
# huggingface_hub, regex, pyyaml, tqdm, psutil, filelock, jinja2, packaging); no diffusers, ray,
# av or pydantic; no network; room for 64 MiB of extra files. bench/gpu.py without Ray imports,
# beyond those: diffusers (and what it imports at module level: importlib_metadata, Pillow,
# requests), av (ltx_ray's mux and inputs), pydantic (ltx_ray's schema), with their own
# dependencies. Exactly those are downloaded, at requirements.lock's versions, as binary wheels
# for manylinux x86_64 and the box's Python, without dependencies (--no-deps: the list is the
# closure), and their total is checked against 64 MiB.
#
# typing_extensions is on the box (torch needs it) but pydantic 2.14 needs >= 4.16, so it comes
# too. --with-transformers adds transformers itself, for a box whose transformers predates
# Gemma 4 (diffusers 0.42.1's LTX-2 pipeline imports Gemma4UnifiedForConditionalGeneration).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$REPO/.whl"
PYTHON_VERSION=3.12
WITH_TRANSFORMERS=0
LIMIT_MIB=64
while [[ $# -gt 0 ]]; do
  case "$1" in
    --python-version) PYTHON_VERSION="$2"; shift 2 ;;
    --with-transformers) WITH_TRANSFORMERS=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) DEST="$1"; shift ;;
  esac
done

PACKAGES=(
  diffusers importlib-metadata zipp lazy-importer pillow requests urllib3 charset-normalizer certifi idna
  av tenacity
  pydantic pydantic-core annotated-types typing-inspection typing-extensions
)
if [[ $WITH_TRANSFORMERS == 1 ]]; then
  PACKAGES+=(transformers)
fi

PINS=()
for package in "${PACKAGES[@]}"; do
  pin="$(grep -i "^${package}==" "$REPO/requirements.lock" | head -1 | cut -d' ' -f1 || true)"
  if [[ -z $pin ]]; then
    echo "gpu_wheels: $package is not in requirements.lock; pin it there first" >&2
    exit 1
  fi
  PINS+=("$pin")
done

rm -rf "$DEST"
mkdir -p "$DEST"
ABI="cp${PYTHON_VERSION/./}"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "$PYTHON_VERSION" --implementation cp --abi "$ABI" --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --dest "$DEST" "${PINS[@]}"

count="$(find "$DEST" -maxdepth 1 -type f -name '*.whl' | wc -l)"
if [[ $count -ne ${#PINS[@]} ]]; then
  echo "gpu_wheels: expected ${#PINS[@]} wheels in $DEST, found $count" >&2
  exit 1
fi
total=0
for wheel in "$DEST"/*.whl; do
  size="$(stat -c %s "$wheel")"
  total=$((total + size))
  printf '%10.2f MiB  %s\n' "$(echo "$size / 1048576" | bc -l)" "$(basename "$wheel")"
done
limit=$((LIMIT_MIB * 1048576))
printf '%10.2f MiB  total (%d wheels, Python %s), limit %d MiB\n' "$(echo "$total / 1048576" | bc -l)" "$count" \
  "$PYTHON_VERSION" "$LIMIT_MIB"
if [[ $total -gt $limit ]]; then
  echo "gpu_wheels: the wheels take $total bytes, over the box's $LIMIT_MIB MiB for extra files" >&2
  exit 1
fi
echo "gpu_wheels: ok; on the box: see the command at the top of bench/gpu.py"
