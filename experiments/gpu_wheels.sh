#!/usr/bin/env bash
# Wheels of what a lent GPU's image lacks (Python 3.12 there), into .whl/ (ignored by git), at the
# versions installed here. The image already has jax (CUDA), flax, optax, chex, orbax, absl,
# tqdm, matplotlib, pillow. warp-lang (149 MB) is left out: it is over the 64 MiB a device call
# may carry, so the check's drq_warp stage reports it missing there.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
version() { python3 -m pip show "$1" 2>/dev/null | awk '/^Version:/{print $2}'; }
specs=()
for name in mujoco mujoco-core mujoco-mjx brax playground ml-collections tensorboardX trimesh \
            mediapy jaxopt glfw pyopengl; do
  v=$(version "$name"); specs+=("${name}${v:+==$v}")
done
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "${specs[@]}"
du -ch .whl/*.whl | tail -1
echo "carry .whl; start the device command with:"
echo "  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:\$PWD"
