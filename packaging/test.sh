#!/bin/sh
# Installs the dependencies, builds txfs with -Werror and runs the whole
# test suite (unit suites and integration scenarios on real FUSE mounts).
# Run as root from the source tree; builds in ./build.
set -eu
cd "$(dirname "$0")/.."
packaging/install-deps.sh
autoreconf -fi
mkdir -p build
cd build
../configure -q --enable-werror
make -j"$(nproc)"
make -j"$(nproc)" check || {
	cat test-suite.log
	exit 1
}
