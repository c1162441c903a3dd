#!/bin/sh
# Builds txfs and starts a demo mount (run from the source tree, as root).
set -eu
cd "$(dirname "$0")/.."
packaging/install-deps.sh
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure -q
make -j"$(nproc)" >/dev/null
demo=/tmp/txfs-demo
mkdir -p "$demo/src" "$demo/mnt"
if ! grep -q " $demo/mnt fuse.txfs " /proc/self/mountinfo; then
	echo "hello from txfs" >"$demo/src/hello.txt"
	./txfsd "$demo/src" "$demo/mnt"
fi
cat <<MSG
txfsd is serving $demo/src at $demo/mnt.  Try:
  ls -la $demo/mnt && cat $demo/mnt/hello.txt
  echo more >>$demo/mnt/hello.txt && cat $demo/src/hello.txt
  ./txctl/txctl -m $demo/mnt status
Stop it with: fusermount3 -u $demo/mnt
MSG
