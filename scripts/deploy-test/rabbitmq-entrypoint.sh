#!/bin/sh
# Entry point of the deploy-test RabbitMQ image (rabbitmq.Dockerfile): turns the variables
# the official image reads, RABBITMQ_DEFAULT_USER and RABBITMQ_DEFAULT_PASS, into a conf.d
# file, then runs the command. RabbitMQ creates that user only when its data directory is
# new, as the official image does.
set -eu
if [ -n "${RABBITMQ_DEFAULT_USER:-}" ]; then
    umask 077
    {
        echo "default_user = ${RABBITMQ_DEFAULT_USER}"
        echo "default_pass = ${RABBITMQ_DEFAULT_PASS:-}"
        # The demo user gets every permission on the default vhost, as in the official image.
        echo "default_permissions.configure = .*"
        echo "default_permissions.read = .*"
        echo "default_permissions.write = .*"
        echo "default_user_tags.administrator = true"
    } >/etc/rabbitmq/conf.d/10-default-user.conf
fi
exec "$@"
