#!/usr/bin/env bash
# The tests need PostgreSQL (127.0.0.1:5432) and NATS with JetStream (127.0.0.1:4222). This
# machine kind starts both before a session; if one is down, try to start it the way the
# machine does, then fail loudly if it still is not there.
set -uo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
nats_up() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }

if ! pg_up; then
    echo "PostgreSQL is not answering on 127.0.0.1:5432; trying to start it" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start 2>&1 || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if ! nats_up; then
    echo "NATS is not answering on 127.0.0.1:4222; trying to start it" >&2
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log 2>&1 || true
    for _ in $(seq 1 30); do nats_up && break; sleep 1; done
fi

ok=0
pg_up || { echo "ERROR: PostgreSQL is required at 127.0.0.1:5432 and is not running" >&2; ok=1; }
nats_up || { echo "ERROR: NATS (JetStream) is required at 127.0.0.1:4222 and is not running" >&2; ok=1; }
exit $ok
