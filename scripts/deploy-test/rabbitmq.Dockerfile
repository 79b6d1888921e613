# RabbitMQ for `make deploy-test` (scripts/deploy-test.sh): Debian's rabbitmq-server package
# on the debootstrap base, in place of the public rabbitmq:3.13-management image that cannot
# be pulled there. It honours what docker-compose.yml asks of that image: the management
# plugin (15672), RABBITMQ_DEFAULT_USER/RABBITMQ_DEFAULT_PASS on first boot, conf.d files
# (90-inferq.conf is mounted), data in /var/lib/rabbitmq, `rabbitmq-diagnostics` for the
# health check. Debian bookworm ships RabbitMQ 3.10, the version the test suite uses.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends rabbitmq-server \
 && rm -rf /var/lib/apt/lists/* \
 && rabbitmq-plugins enable --offline rabbitmq_management \
 && mkdir -p /etc/rabbitmq/conf.d \
 && chown -R rabbitmq:rabbitmq /etc/rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
COPY --chmod=0755 scripts/deploy-test/rabbitmq-entrypoint.sh /usr/local/bin/rabbitmq-entrypoint
# Logs to the container's output; the node's home holds its Erlang cookie, which
# rabbitmq-diagnostics (the health check, run as the same user) reads.
ENV RABBITMQ_LOGS=- \
    HOME=/var/lib/rabbitmq
USER rabbitmq
EXPOSE 5672 15672
ENTRYPOINT ["/usr/local/bin/rabbitmq-entrypoint"]
# The server script itself: Debian's /usr/sbin wrapper would send the log to a file.
CMD ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
