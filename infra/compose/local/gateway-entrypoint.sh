#!/bin/sh
# nginx of the local-image gateway (gateway.Containerfile), whose upstreams name compose
# services. nginx resolves those names once, when it loads its config: this waits until each
# resolves, starts nginx, and reloads it (SIGHUP, graceful) when a service gains an address
# nginx does not have (a replica scaled up, or restarted with a new address).
#
# An address that only disappears (a replica killed or stopped) causes no reload: nginx already
# skips a peer that fails (max_fails, and the next peer for reads), and a reload closes every
# idle client keep-alive connection, which a client sending on one at that moment sees as a
# dropped request. The stale address goes at the next reload.
set -eu

conf=/etc/cloudnet/nginx.conf
services="${CLOUDNET_GATEWAY_SERVICES:-query-api command-api}"
interval="${CLOUDNET_GATEWAY_RESOLVE_INTERVAL:-2}"

# One line per service: its sorted addresses, empty when it does not resolve.
addresses() {
    for service in $services; do
        printf '%s: %s\n' "$service" \
            "$(getent ahostsv4 "$service" | awk '{print $1}' | sort -u | tr '\n' ' ')"
    done
}

# "service address" pairs of $2 that $1 lacks.
gained() {
    printf '%s\n' "$2" | while read -r service rest; do
        for address in $rest; do
            printf '%s\n' "$1" | grep -q "^$service .*\b$address " || echo "$service $address"
        done
    done
}

all_resolve() {
    ! printf '%s\n' "$1" | grep -q ': $'
}

known="$(addresses)"
until all_resolve "$known"; do
    echo "waiting for the services to resolve: $(printf '%s' "$known" | tr '\n' ';')"
    sleep 1
    known="$(addresses)"
done
echo "upstreams: $(printf '%s' "$known" | tr '\n' ';')"

nginx -e stderr -c "$conf" &
nginx_pid=$!
trap 'kill -QUIT "$nginx_pid" 2>/dev/null; wait "$nginx_pid"; exit 0' TERM INT

while kill -0 "$nginx_pid" 2>/dev/null; do
    sleep "$interval" &
    wait $! || true
    current="$(addresses)"
    # A service with no address keeps the last config: nginx refuses one it cannot resolve.
    new="$(gained "$known" "$current")"
    if [ -n "$new" ] && all_resolve "$current"; then
        echo "upstreams gained $(printf '%s' "$new" | tr '\n' ';'); reloading nginx"
        kill -HUP "$nginx_pid"
        known="$current"
    fi
done
wait "$nginx_pid"
