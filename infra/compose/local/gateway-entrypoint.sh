#!/bin/sh
# nginx of the local-image gateway (gateway.Containerfile), whose upstreams name compose
# services. nginx resolves those names once, when it loads its config: this waits until each
# resolves, starts nginx, and reloads it (SIGHUP, graceful) whenever a service's set of
# addresses changes (a replica scaled up, restarted with a new address, or removed).
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
    if [ "$current" != "$known" ] && all_resolve "$current"; then
        echo "upstreams changed: $(printf '%s' "$current" | tr '\n' ';'); reloading nginx"
        kill -HUP "$nginx_pid"
        known="$current"
    fi
done
wait "$nginx_pid"
