#!/bin/sh
# Installs the Debian packages whose commands the tests run, where a command is missing:
#   prometheus      promtool and the server (the alert-rule and scrape tests)
#   docker-compose  `docker-compose config -q` (the compose file test; no container runs)
# `make test` runs this first, so a fresh machine needs nothing by hand. It never fails the
# build: where it cannot install (not root, no apt-get, no network) the tests say why they skip,
# and under CI=true they fail instead.
set -u

missing=""
for pair in promtool:prometheus prometheus:prometheus docker-compose:docker-compose; do
    command=${pair%%:*} package=${pair#*:}
    if ! command -v "$command" >/dev/null 2>&1; then
        case " $missing " in *" $package "*) ;; *) missing="$missing $package" ;; esac
    fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-tools: cannot install$missing here (needs root and apt-get)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive

# The prometheus package starts its own server on :9090 where services may start; the tests run
# their own on a free loopback port. A policy-rc.d that refuses starts keeps it from starting
# during the install (one already there is left as it is).
policy=/usr/sbin/policy-rc.d
ours=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && ours=1
fi
echo "install-tools: apt-get install$missing (for the tests)" >&2
apt-get update -qq >/dev/null 2>&1
# shellcheck disable=SC2086 # one word per package
apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1
status=$?
[ -n "$ours" ] && rm -f "$policy"
if [ "$status" != 0 ]; then
    echo "install-tools: apt-get install$missing failed (status $status)" >&2
    exit 0
fi

# And prometheus does not start at boot either; stop it if it started anyway.
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
if [ -x /etc/init.d/prometheus ]; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    update-rc.d prometheus disable >/dev/null 2>&1 || true
fi
exit 0
