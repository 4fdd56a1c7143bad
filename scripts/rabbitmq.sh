#!/bin/sh
# Builds (once) and caches a Debian root holding another RabbitMQ than the machine's own,
# for warren's private nodes (WARREN_RABBITMQ_ROOT) and the tests' version leg:
#
#   scripts/rabbitmq.sh 4.0        # Debian 13 (trixie): RabbitMQ 4.0.5 on Erlang 27
#
# It prints the variable to export. Needs root (debootstrap and chroot), Debian's mirror,
# and about 400 MB under $WARREN_RABBITMQ_ROOTS (default /var/cache/warren). Safe to run
# again: a finished root is kept (it holds a `.warren-rabbitmq` file naming its version),
# an unfinished one is built again from scratch.
set -eu

usage() {
    echo "usage: scripts/rabbitmq.sh VERSION   (VERSION: 4.0)" >&2
    exit 2
}
[ $# -eq 1 ] || usage
case "$1" in
    4.0) suite=trixie ;;
    *) echo "rabbitmq.sh: no recipe for RabbitMQ $1; known: 4.0 (Debian 13's 4.0.5)" >&2; exit 2 ;;
esac
version="$1"
if [ "$(id -u)" -ne 0 ]; then
    echo "rabbitmq.sh: needs root (debootstrap and chroot); try: sudo scripts/rabbitmq.sh $version" >&2
    exit 3
fi

roots="${WARREN_RABBITMQ_ROOTS:-/var/cache/warren}"
root="$roots/rabbitmq-$version-$suite"
marker="$root/.warren-rabbitmq"
if [ -f "$marker" ]; then
    echo "rabbitmq.sh: $root holds RabbitMQ $(cat "$marker")" >&2
    echo "export WARREN_RABBITMQ_ROOT=$root"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "rabbitmq.sh: installing debootstrap" >&2
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2
fi

partial="$root.partial"
rm -rf "$partial"
mkdir -p "$roots"
echo "rabbitmq.sh: building a Debian $suite root in $partial (about two minutes)" >&2
debootstrap --variant=minbase "$suite" "$partial" http://deb.debian.org/debian >&2
# No service may start inside the root while packages install.
printf '#!/bin/sh\nexit 101\n' > "$partial/usr/sbin/policy-rc.d"
chmod 0755 "$partial/usr/sbin/policy-rc.d"
chroot "$partial" apt-get update -q >&2
chroot "$partial" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends rabbitmq-server >&2
chroot "$partial" apt-get clean >&2
installed="$(chroot "$partial" dpkg-query -W -f '${Version}' rabbitmq-server)"
case "$installed" in
    "$version".*) ;;
    *) echo "rabbitmq.sh: Debian $suite installed rabbitmq-server $installed, not $version.x" >&2; exit 3 ;;
esac
# warren binds each broker's folder into the root at the path it has outside (under /tmp
# unless TMPDIR says otherwise), making the folders for it; /tmp is as on any system.
chmod 1777 "$partial/tmp"
echo "$installed" > "$partial/.warren-rabbitmq"
rm -rf "$root"
mv "$partial" "$root"
echo "rabbitmq.sh: $root holds RabbitMQ $installed" >&2
echo "export WARREN_RABBITMQ_ROOT=$root"
