#!/usr/bin/env bash
# Build explora's wheel and check that it installs and runs in a fresh virtual environment.
#
#   bash scripts/check_wheel.sh            # from the repository root; a few minutes
#
# 1. `python -m build --wheel` on a copy of the source tree (so no build/ or egg-info lands in
#    the checkout, and a stale egg-info cannot add or hide files);
# 2. every file under src/explora (but caches) must be in the wheel, and nothing else;
# 3. a fresh venv in a temp dir gets a CPU torch first ($TORCH_CPU_SPEC, default torch==2.13.0,
#    as scripts/install.sh), then the wheel with its dependencies;
# 4. from outside the checkout: `explora --version` must name the project's version, `import
#    explora` must come from the venv, and a tiny `explora train` on DeepSea-6 must write its
#    summary.
# Not part of the test suite (too slow); the temp dir is removed unless KEEP=1.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"   # must have `build` (pip install build)
torch_cpu="${TORCH_CPU_SPEC:-torch==2.13.0}"
torch_index="${TORCH_CPU_INDEX:-}"
tmp="$(mktemp -d /tmp/explora-wheel.XXXXXX)"
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$tmp"' EXIT; else echo "keeping $tmp"; fi
step() { printf '\n== %s\n' "$*"; }

step "build the wheel"
mkdir -p "$tmp/src"
(cd "$repo" && tar --exclude='__pycache__' --exclude='*.egg-info' --exclude='*.pyc' \
  -cf - pyproject.toml README.md src $(ls MANIFEST.in LICENSE* CHANGELOG.md 2>/dev/null)) \
  | tar -xf - -C "$tmp/src"
"$python" -m build --wheel --outdir "$tmp/dist" "$tmp/src" > "$tmp/build.log" 2>&1 \
  || { tail -30 "$tmp/build.log"; exit 1; }
wheel="$(ls "$tmp"/dist/explora-*.whl)"
echo "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) kB)"

step "the wheel holds every package file"
"$python" - "$wheel" "$tmp/src/src" <<'EOF'
import pathlib, sys, zipfile
wheel, src = sys.argv[1], pathlib.Path(sys.argv[2])
names = set(zipfile.ZipFile(wheel).namelist())
package = {p.relative_to(src).as_posix() for p in (src / "explora").rglob("*") if p.is_file()}
in_wheel = {n for n in names if n.startswith("explora/")}
missing, extra = sorted(package - in_wheel), sorted(in_wheel - package)
print(f"{len(package)} package files, {len(in_wheel)} in the wheel")
meta = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
assert meta and b"explora = explora.cli:main" in zipfile.ZipFile(wheel).read(meta[0]), meta
if missing or extra:
    sys.exit(f"missing from the wheel: {missing}\nnot in the source: {extra}")
EOF

step "fresh venv: CPU torch first ($torch_cpu), then the wheel"
base_python="$("$python" -c 'import sys; print(sys._base_executable)')"
"$base_python" -m venv "$tmp/venv"
pip=("$tmp/venv/bin/python" -m pip --disable-pip-version-check -q)
quiet_pip() { "${pip[@]}" "$@" 2> >(grep -v '^WARNING: Location' >&2); }  # a missing extra index
if [ -n "$torch_index" ]; then
  quiet_pip install "$torch_cpu" --index-url "$torch_index"
else
  quiet_pip install "$torch_cpu"
fi
torch_before="$("$tmp/venv/bin/python" -W ignore -c 'import torch; print(torch.__version__)')"
quiet_pip install "$wheel"
torch_after="$("$tmp/venv/bin/python" -c 'import torch; print(torch.__version__)')"
echo "torch $torch_before before the wheel, $torch_after after"
[ "$torch_before" = "$torch_after" ] || { echo "the wheel replaced torch"; exit 1; }

step "explora --version, import and a tiny run (from outside the checkout)"
cd "$tmp"
expected="$(cd "$repo" && "$python" -c \
  'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
got="$("$tmp/venv/bin/explora" --version)"
echo "$got"
[ "$got" = "explora $expected" ] || { echo "expected: explora $expected"; exit 1; }
where="$("$tmp/venv/bin/python" -c 'import explora; print(explora.__file__)')"
echo "import explora: $where"
case "$where" in "$tmp/venv/"*) ;; *) echo "explora not imported from the venv"; exit 1 ;; esac
"$tmp/venv/bin/explora" train --env DeepSea-6 --frames 2000 --out "$tmp/run" --no-progress
test -s "$tmp/run/summary.json" || { echo "no summary.json"; exit 1; }
"$tmp/venv/bin/python" -c "import json; s = json.load(open('$tmp/run/summary.json')); \
print({k: s[k] for k in ('frames', 'episodes', 'unique_states') if k in s})"
"$tmp/venv/bin/explora" list > /dev/null

step "wheel check passed: $(basename "$wheel")"
