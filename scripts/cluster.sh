#!/usr/bin/env bash
# A throw-away three-node RabbitMQ cluster on this machine, for the cluster fault tests
# (tests/tests/amqp_cluster.rs):
#
#   scripts/cluster.sh up       start rabbit2/3/4@localhost on AMQP ports 5673/5674/5675, cluster them
#   scripts/cluster.sh status   show the cluster
#   scripts/cluster.sh url      print the cluster URL for EVENTING_TEST_CLUSTER_URL
#   scripts/cluster.sh down     stop the three nodes and delete everything they wrote
#
# The machine's own node (rabbit@localhost, 5672) is left alone: the extra nodes form a
# cluster of their own (they join rabbit2, not rabbit@localhost), so tests on the cluster
# never touch the broker other tests use. They share its Erlang cookie, so the usual
# `rabbitmqctl -n rabbit3@localhost ...` works on them.
#
# Needs root (the nodes run as the `rabbitmq` user, with its cookie). The nodes are kept
# light: no plugins, one scheduler each, no busy-waiting.
set -euo pipefail

DIR="${EVENTING_CLUSTER_DIR:-/tmp/eventing-cluster}"
NODES=(rabbit2 rabbit3 rabbit4)
AMQP_PORTS=(5673 5674 5675)
DIST_PORTS=(25673 25674 25675)
USER_NAME=rabbitmq
COOKIE_HOME=/var/lib/rabbitmq

as_rabbitmq() { runuser -u "$USER_NAME" -- env HOME="$COOKIE_HOME" "$@"; }
ctl() { as_rabbitmq /usr/lib/rabbitmq/bin/rabbitmqctl "$@"; }

node_env() {
    local i=$1 node=${NODES[$1]}
    echo "RABBITMQ_NODENAME=$node@localhost"
    echo "RABBITMQ_NODE_PORT=${AMQP_PORTS[$i]}"
    echo "RABBITMQ_DIST_PORT=${DIST_PORTS[$i]}"
    echo "RABBITMQ_CONF_ENV_FILE=$DIR/$node/rabbitmq-env.conf"
    echo "RABBITMQ_CONFIG_FILE=$DIR/$node/rabbitmq.conf"
    echo "RABBITMQ_ADVANCED_CONFIG_FILE=$DIR/$node/advanced.config"
    echo "RABBITMQ_MNESIA_BASE=$DIR/$node/mnesia"
    echo "RABBITMQ_LOG_BASE=$DIR/$node/log"
    echo "RABBITMQ_PID_FILE=$DIR/$node/node.pid"
    echo "RABBITMQ_FEATURE_FLAGS_FILE=$DIR/$node/feature_flags"
    echo "RABBITMQ_PLUGINS_EXPAND_DIR=$DIR/$node/plugins-expand"
    echo "RABBITMQ_ENABLED_PLUGINS_FILE=$DIR/$node/enabled_plugins"
    echo "ERL_EPMD_ADDRESS=127.0.0.1"
}

start_node() {
    local i=$1 node=${NODES[$1]}
    mkdir -p "$DIR/$node/log" "$DIR/$node/mnesia"
    cat >"$DIR/$node/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:${AMQP_PORTS[$i]}
loopback_users = none
disk_free_limit.absolute = 50MB
vm_memory_high_watermark.relative = 0.2
cluster_partition_handling = pause_minority
EOF
    echo "[]." >"$DIR/$node/enabled_plugins"
    echo "[]." >"$DIR/$node/advanced.config"
    # Not the system file (it pins NODENAME=rabbit@localhost).
    cat >"$DIR/$node/rabbitmq-env.conf" <<EOF
ERL_EPMD_ADDRESS=127.0.0.1
EOF
    chown -R "$USER_NAME:$USER_NAME" "$DIR"
    # shellcheck disable=SC2046
    as_rabbitmq env $(node_env "$i") \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none" \
        ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        /usr/lib/rabbitmq/bin/rabbitmq-server >"$DIR/$node/log/console.log" 2>&1 &
}

# Waits until `node` runs (it registers with epmd a moment after its VM starts).
await_node() {
    local node=$1
    for _ in $(seq 1 60); do
        if ctl -n "$node" await_startup --timeout 120 >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    echo "cluster.sh: $node did not start; see $DIR/${node%@*}/log" >&2
    return 1
}

url() {
    local hosts=""
    for port in "${AMQP_PORTS[@]}"; do hosts="${hosts:+$hosts,}127.0.0.1:$port"; done
    echo "amqp://guest:guest@$hosts/%2f"
}

up() {
    if [ "$(id -u)" != 0 ]; then echo "cluster.sh: run as root (the nodes run as the rabbitmq user)" >&2; exit 1; fi
    mkdir -p "$DIR"
    chown "$USER_NAME:$USER_NAME" "$DIR"
    for i in "${!NODES[@]}"; do start_node "$i"; done
    for node in "${NODES[@]}"; do
        await_node "$node@localhost"
    done
    for node in "${NODES[@]:1}"; do
        ctl -n "$node@localhost" stop_app >/dev/null
        ctl -n "$node@localhost" reset >/dev/null
        ctl -n "$node@localhost" join_cluster "${NODES[0]}@localhost" >/dev/null
        ctl -n "$node@localhost" start_app >/dev/null
    done
    for node in "${NODES[@]}"; do
        await_node "$node@localhost"
    done
    echo "cluster up: $(url)"
}

# Starts one node again after a test killed its VM (the data directory is kept).
restart() {
    local target=$1
    for i in "${!NODES[@]}"; do
        if [ "${NODES[$i]}" = "${target%@*}" ]; then
            start_node "$i"
            await_node "${NODES[$i]}@localhost"
            return 0
        fi
    done
    echo "cluster.sh: no node $target" >&2
    exit 1
}

down() {
    for node in "${NODES[@]}"; do
        ctl -n "$node@localhost" stop >/dev/null 2>&1 || true
    done
    # A node that did not answer `stop` is killed by its pid file, if that pid is still
    # this node's VM (never a process that reused the number).
    for node in "${NODES[@]}"; do
        if [ -f "$DIR/$node/node.pid" ]; then
            pid=$(cat "$DIR/$node/node.pid")
            if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "RABBITMQ_NODENAME=$node@localhost"; then
                kill -9 "$pid" >/dev/null 2>&1 || true
            fi
        fi
    done
    rm -rf "$DIR"
    echo "cluster down"
}

status() {
    ctl -n "${NODES[0]}@localhost" cluster_status
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    url) url ;;
    restart) restart "${2:?node name}" ;;
    *) echo "usage: $0 up|down|status|url|restart <node>" >&2; exit 2 ;;
esac
