#!/usr/bin/env bash
# A throw-away RabbitMQ node with a TLS listener, for the `amqps://` tests
# (tests/tests/amqp_tls.rs):
#
#   scripts/tls-broker.sh up     make a CA, server and client certificates, start rabbit-tls@localhost
#                                (TLS on 127.0.0.1:5671, plain AMQP on 5676), wait until it answers
#   scripts/tls-broker.sh url    print the amqps:// URL for EVENTING_TEST_TLS_URL
#   scripts/tls-broker.sh env    print `export` lines for the tests: EVENTING_TEST_TLS_URL,
#                                EVENTING_TEST_TLS_DIR, and EVENTING_AMQP_CA_FILE (the CA, for buses
#                                built from the URL; `amqp://` URLs ignore it)
#   scripts/tls-broker.sh down   stop the node and delete everything it and `up` wrote
#
# Files in the certificate directory (EVENTING_TEST_TLS_DIR): ca.pem (the CA that signed the
# server and client certificates), server.pem/key (CN and SAN localhost, 127.0.0.1),
# client.pem/key (CN eventing-tls-client), client.p12 (the same, PKCS#12, password
# `eventing`), wrong-ca.pem (a CA that signed nothing here).
#
# The node verifies client certificates when given (`verify_peer`) but does not require one
# (`fail_if_no_peer_cert = false`). The machine's own node (rabbit@localhost, 5672) is left
# alone: this one has its own name, ports and directories, and shares only the Erlang
# cookie, so `rabbitmqctl -n rabbit-tls@localhost ...` works on it. Needs root (the node runs
# as the `rabbitmq` user, with its cookie), like scripts/cluster.sh.
set -euo pipefail

DIR="${EVENTING_TLS_BROKER_DIR:-/tmp/eventing-tls-broker}"
NODE=rabbit-tls
TLS_PORT=5671
AMQP_PORT=5676
DIST_PORT=25676
USER_NAME=rabbitmq
COOKIE_HOME=/var/lib/rabbitmq
CERTS="$DIR/certs"

as_rabbitmq() { runuser -u "$USER_NAME" -- env HOME="$COOKIE_HOME" "$@"; }
ctl() { as_rabbitmq /usr/lib/rabbitmq/bin/rabbitmqctl -n "$NODE@localhost" "$@"; }

# A CA, and certificates it signs. EC P-256 keys: generated in milliseconds. Keys are PKCS#8
# PEM (`BEGIN PRIVATE KEY`), which every TLS feature of eventing-amqp reads.
make_certificates() {
    mkdir -p "$CERTS"
    cd "$CERTS"
    local key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${key[@]}" -keyout ca.key -out ca.pem -days 2 -subj "/CN=eventing test CA" 2>/dev/null
    openssl req -x509 "${key[@]}" -keyout wrong-ca.key -out wrong-ca.pem -days 2 -subj "/CN=eventing wrong CA" 2>/dev/null
    openssl req "${key[@]}" -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext \
        -out server.pem 2>/dev/null
    openssl req "${key[@]}" -keyout client.key -out client.csr -subj "/CN=eventing-tls-client" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext \
        -out client.pem 2>/dev/null
    openssl pkcs12 -export -in client.pem -inkey client.key -certfile ca.pem -passout pass:eventing -out client.p12
    rm -f ./*.csr ./*.ext ./*.srl ca.key wrong-ca.key
    chmod 0644 ./*
    cd - >/dev/null
}

node_env() {
    echo "RABBITMQ_NODENAME=$NODE@localhost"
    echo "RABBITMQ_NODE_PORT=$AMQP_PORT"
    echo "RABBITMQ_DIST_PORT=$DIST_PORT"
    echo "RABBITMQ_CONF_ENV_FILE=$DIR/rabbitmq-env.conf"
    echo "RABBITMQ_CONFIG_FILE=$DIR/rabbitmq.conf"
    echo "RABBITMQ_ADVANCED_CONFIG_FILE=$DIR/advanced.config"
    echo "RABBITMQ_MNESIA_BASE=$DIR/mnesia"
    echo "RABBITMQ_LOG_BASE=$DIR/log"
    echo "RABBITMQ_PID_FILE=$DIR/node.pid"
    echo "RABBITMQ_FEATURE_FLAGS_FILE=$DIR/feature_flags"
    echo "RABBITMQ_PLUGINS_EXPAND_DIR=$DIR/plugins-expand"
    echo "RABBITMQ_ENABLED_PLUGINS_FILE=$DIR/enabled_plugins"
    echo "ERL_EPMD_ADDRESS=127.0.0.1"
}

url() {
    echo "amqps://guest:guest@localhost:$TLS_PORT/%2f"
}

env_lines() {
    echo "export EVENTING_TEST_TLS_URL=$(url)"
    echo "export EVENTING_TEST_TLS_DIR=$CERTS"
    echo "export EVENTING_AMQP_CA_FILE=$CERTS/ca.pem"
}

up() {
    if [ "$(id -u)" != 0 ]; then echo "tls-broker.sh: run as root (the node runs as the rabbitmq user)" >&2; exit 1; fi
    rm -rf "$DIR"
    mkdir -p "$DIR/log" "$DIR/mnesia"
    make_certificates
    cat >"$DIR/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
listeners.ssl.default = 127.0.0.1:$TLS_PORT
ssl_options.cacertfile = $CERTS/ca.pem
ssl_options.certfile = $CERTS/server.pem
ssl_options.keyfile = $CERTS/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
loopback_users = none
disk_free_limit.absolute = 50MB
vm_memory_high_watermark.relative = 0.2
EOF
    echo "[]." >"$DIR/enabled_plugins"
    echo "[]." >"$DIR/advanced.config"
    # Not the system file (it pins NODENAME=rabbit@localhost).
    echo "ERL_EPMD_ADDRESS=127.0.0.1" >"$DIR/rabbitmq-env.conf"
    chown -R "$USER_NAME:$USER_NAME" "$DIR"
    # shellcheck disable=SC2046
    as_rabbitmq env $(node_env) \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none" \
        ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        /usr/lib/rabbitmq/bin/rabbitmq-server >"$DIR/log/console.log" 2>&1 &
    # RabbitMQ opens its listeners last in its boot: an open TLS port means the node is up.
    # (Polling the port, not `rabbitmqctl await_startup`: each rabbitmqctl call boots an
    # Erlang VM of its own, seconds on a busy machine.)
    for _ in $(seq 1 240); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$TLS_PORT") 2>/dev/null; then
            echo "TLS broker up: $(url) (certificates in $CERTS)"
            return 0
        fi
        sleep 0.25
    done
    echo "tls-broker.sh: $NODE@localhost did not start or does not listen on $TLS_PORT; see $DIR/log" >&2
    return 1
}

down() {
    ctl stop >/dev/null 2>&1 || true
    # A node that did not answer `stop` is killed by its pid file, if that pid is still this
    # node's VM (never a process that reused the number).
    if [ -f "$DIR/node.pid" ]; then
        pid=$(cat "$DIR/node.pid")
        if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "RABBITMQ_NODENAME=$NODE@localhost"; then
            kill -9 "$pid" >/dev/null 2>&1 || true
        fi
    fi
    rm -rf "$DIR"
    echo "TLS broker down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    url) url ;;
    env) env_lines ;;
    *) echo "usage: $0 up|down|url|env" >&2; exit 2 ;;
esac
