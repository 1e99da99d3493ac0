#!/usr/bin/env bash
# Runs hivelog's whole test suite on a fresh machine: installs the test peers (moto, noida-db,
# the fluent-logger Python client, the rotel OpenTelemetry collector and the official
# opentelemetry-proto classes the OTLP test receiver decodes with) into .venv-peers, starts the servers on free 127.0.0.1 ports,
# runs `cargo test`, and stops the servers (by process group) whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-peers
if [ ! -x "$VENV/bin/moto_server" ] || [ ! -x "$VENV/bin/noida-db" ] || ! "$VENV/bin/python" -c 'import fluent, msgpack, boto3, rotel, grpc, opentelemetry.proto' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'moto[server]' boto3 noida-db fluent-logger msgpack rotel opentelemetry-proto grpcio
fi

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 150); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.2; done; echo "server at $1 did not start" >&2; return 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done; rm -rf "${ES_DATA:-}"; }
trap cleanup EXIT

MOTO_PORT=$(free_port)
setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >/tmp/hivelog-moto.log 2>&1 &
PIDS+=($!)
ES_PORT=$(free_port)
ES_DATA=$(mktemp -d)
setsid "$VENV/bin/noida-db" start --only elasticsearch --host 127.0.0.1 --elasticsearch-port "$ES_PORT" --data-dir "$ES_DATA" >/tmp/hivelog-es.log 2>&1 &
PIDS+=($!)

# The OTLP test receiver, and the rotel collector forwarding to it (gzip-compressed protobuf).
OTLP_PORT=$(free_port)
OTLP_GRPC_PORT=$(free_port)
setsid "$VENV/bin/python" tests/peers/otlp_receiver.py --port "$OTLP_PORT" --grpc-port "$OTLP_GRPC_PORT" >/tmp/hivelog-otlp-receiver.log 2>&1 &
PIDS+=($!)
ROTEL_HTTP_PORT=$(free_port)
ROTEL_GRPC_PORT=$(free_port)
ROTEL_AGENT=$("$VENV/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')
setsid "$ROTEL_AGENT" start --otlp-grpc-endpoint "127.0.0.1:$ROTEL_GRPC_PORT" --otlp-http-endpoint "127.0.0.1:$ROTEL_HTTP_PORT" \
  --exporter otlp --otlp-exporter-endpoint "http://127.0.0.1:$OTLP_PORT" --otlp-exporter-protocol http \
  --logs-batch-timeout 200ms >/tmp/hivelog-rotel.log 2>&1 &
PIDS+=($!)

export HIVELOG_TEST_OTLP_RECEIVER="http://127.0.0.1:$OTLP_PORT"
export HIVELOG_TEST_OTLP_RECEIVER_GRPC="http://127.0.0.1:$OTLP_GRPC_PORT"
export HIVELOG_TEST_ROTEL_HTTP="http://127.0.0.1:$ROTEL_HTTP_PORT"
export HIVELOG_TEST_ROTEL_GRPC="http://127.0.0.1:$ROTEL_GRPC_PORT"
export HIVELOG_TEST_MOTO="http://127.0.0.1:$MOTO_PORT"
export HIVELOG_TEST_ES="http://127.0.0.1:$ES_PORT"
export HIVELOG_TEST_PYTHON="$PWD/$VENV/bin/python"
export AWS_EC2_METADATA_DISABLED=true AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
wait_http "$HIVELOG_TEST_MOTO/moto-api/"
wait_http "$HIVELOG_TEST_ES/"
wait_http "$HIVELOG_TEST_OTLP_RECEIVER/requests"
# rotel answers 405 to a GET: wait for its port to accept connections.
for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/127.0.0.1/$ROTEL_HTTP_PORT") 2>/dev/null && break; sleep 0.2; done

# Extra arguments go to cargo test (`scripts/test.sh -p hivelog-elk`); none: the whole workspace.
if [ "$#" -gt 0 ]; then
  cargo test --all-features "$@"
else
  cargo test --workspace --all-features
fi
