#!/bin/sh
# Installs the dependencies, builds txfs (in ./build) and starts a demo
# mount.  Run as root from the source tree.
set -eu
cd "$(dirname "$0")/.."
packaging/install-deps.sh
[ -x configure ] || autoreconf -fi
mkdir -p build
[ -f build/Makefile ] || (cd build && ../configure -q)
make -C build -j"$(nproc)" >/dev/null
demo=/tmp/txfs-demo
mkdir -p "$demo/src" "$demo/mnt"
if ! grep -q " $demo/mnt " /proc/self/mountinfo; then
	echo "hello from txfs" >"$demo/src/hello.txt"
	build/txfsd "$demo/src" "$demo/mnt"
fi
cat <<MSG
txfsd is serving $demo/src at $demo/mnt.  Try:
  ls -la $demo/mnt && cat $demo/mnt/hello.txt
  echo more >>$demo/mnt/hello.txt && cat $demo/src/hello.txt
  build/txctl/txctl -m $demo/mnt status
  build/txctl/txctl -m $demo/mnt run --abort-always -- \
      sh -c 'echo gone >$demo/mnt/hello.txt; cat $demo/mnt/hello.txt'
  cat $demo/mnt/hello.txt     # unchanged: the transaction was aborted
  build/txctl/txctl -m $demo/mnt run -- sh -c 'echo kept >$demo/mnt/hello.txt'
  cat $demo/src/hello.txt     # committed
Stop it with: fusermount3 -u $demo/mnt
MSG
