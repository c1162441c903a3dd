#!/bin/sh
# Installs what txfs needs to build and test on Debian 12 (run as root).
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
	build-essential autoconf automake pkg-config \
	libfuse3-dev fuse3 libsqlite3-dev libuv1-dev check \
	attr util-linux procps psmisc >/dev/null
