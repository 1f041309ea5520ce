#!/bin/sh
# Writes the default user and console logging as a conf.d file (rabbitmq.Containerfile), then
# runs the broker in the foreground. Reference: https://www.rabbitmq.com/docs/configure
set -eu

cat >/etc/rabbitmq/conf.d/10-cloudnet.conf <<CONF
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
loopback_users = none
log.console = true
log.console.level = info
log.file = false
CONF

exec /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
