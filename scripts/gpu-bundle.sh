#!/usr/bin/env bash
# Packs a built CUDA runtime for a GPU node that has the NVIDIA driver, the CUDA toolkit (cudart, cuBLAS) and NCCL
# but none of this repository's other dependencies (SimGrid, OpenMPI, OpenBLAS, Boost, ...), as container images
# for GPU clusters often are. The archive holds the GPU programs (moesys, moesys-cuda-worker, the CUDA tests,
# moesys-gpu-bench), every shared library they need except the C/C++ runtime and the GPU libraries (the node's own
# are used: they must match its driver), and OpenMPI's components. `scripts/gpu-check.sh --bundle FILE OUTDIR`
# runs the GPU check from it on such a node; a single GPU needs no mpirun (an isolated MPI singleton).
# Usage: scripts/gpu-bundle.sh BUILD_DIR OUT.tar.xz   (BUILD_DIR configured with -DMOESYS_CUDA=ON, targets built)
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: scripts/gpu-bundle.sh BUILD_DIR OUT.tar.xz" >&2
  exit 2
fi
build="$1"
out="$2"
programs=(moesys moesys-cuda-worker moesys-gpu-bench exec/cuda/moesys_cuda_tests exec/cuda/moesys_conformance_cuda)
for p in "${programs[@]}"; do
  [[ -x "$build/$p" ]] || { echo "gpu-bundle: $build/$p is missing (build it first)" >&2; exit 2; }
done
ompi_components="$( (ompi_info --path pkglibdir --parsable 2>/dev/null || true) | sed -n 's/^path:pkglibdir://p')"
[[ -d "$ompi_components" ]] || { echo "gpu-bundle: cannot find OpenMPI's components (ompi_info)" >&2; exit 2; }

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/ompi"
for p in "${programs[@]}"; do
  cp "$build/$p" "$stage/bin/"
  strip --strip-unneeded "$stage/bin/$(basename "$p")"
done
cp "$ompi_components"/*.so "$stage/ompi/"

# The node provides these: the C/C++ runtime, the dynamic loader, and the driver's and toolkit's GPU libraries.
node_provides='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libutil|libresolv|libgcc_s|libstdc\+\+'
node_provides+='|libcuda|libcudart|libcublas|libcublasLt|libnccl|libnvidia-[a-z-]+)\.so'
collect() {  # every shared library FILE needs, transitively (ldd resolves the closure), unless the node provides it
  (ldd "$1" 2>/dev/null || true) | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r name path; do
    if [[ "$name" =~ $node_provides ]]; then
      echo "$name" >>"$stage/node-libs.txt"
      continue
    fi
    [[ -e "$stage/lib/$name" ]] || cp -L "$path" "$stage/lib/$name"
  done
}
for f in "$stage"/bin/* "$stage"/ompi/*.so; do collect "$f"; done
# The GPU libraries the node must provide, by the names these programs were linked against (CUDA 12 or 13, ...).
{ grep -E '^(libcudart|libcublas|libcublasLt|libnccl)\.so' "$stage/node-libs.txt" || true; } | sort -u >"$stage/gpu-libs.txt"
rm "$stage/node-libs.txt"
# Libraries the components load themselves (pmix, hwloc plugins) are not needed by an isolated singleton.

tmp="$out.tmp"
tar -C "$stage" -cJf "$tmp" bin lib ompi gpu-libs.txt
mv "$tmp" "$out"
libs="$(find "$stage/lib" -type f | wc -l)"
components="$(find "$stage/ompi" -type f | wc -l)"
echo "gpu-bundle: $out ($(du -h "$out" | cut -f1); $libs libraries, $components MPI components)"
