# Redis for `make deploy-test` (scripts/deploy-test.sh): Debian's redis-server package on the
# debootstrap base, in place of the public redis:7.2-alpine image that cannot be pulled
# there. Like that image it runs `redis-server` with no configuration file as user redis in
# /data (the compose volume), so docker-compose.yml's command line is the whole configuration.
# Debian bookworm ships Redis 7.0, the version the test suite uses.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir /data \
 && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server"]
