# shellcheck shell=bash
# Test servers for ./scripts/test: installs what is missing, starts what is
# not running, exports where the tests find them, and stops what it started.
#
# Sourced, then:   servers_start     (registers servers_stop on EXIT)
#
# Exports for `cargo test`:
#   SESSION_REDIS_URL            redis://127.0.0.1:PORT/ (standalone)
#   SESSION_REDIS_CLUSTER_NODES  redis://127.0.0.1:P1/,... (6-node cluster)
#   SESSION_MONGO_URL            mongodb://127.0.0.1:PORT/ (SecantusDB)
#   SESSION_POSTGRES_URL         postgres://postgres@127.0.0.1:PORT/test (trust auth)
#   SESSION_MYSQL_URL            mysql://root@127.0.0.1:PORT/test (MariaDB)
#   SESSION_WEBDRIVER_URL        http://127.0.0.1:PORT (chromedriver, which
#                                starts Debian's chromium for the browser test)
#   SESSION_MONGO_SERVER_BIN     SecantusDB's secantusd-py in .venv-test, for
#                                the MongoDB fault tests' private servers
#
# Respected from the environment:
#   SESSION_REDIS_URL, SESSION_REDIS_CLUSTER_NODES, SESSION_MONGO_URL,
#   SESSION_WEBDRIVER_URL
#       already set: that server is used as is, nothing is started for it;
#   SESSION_SKIP_REDIS=1, SESSION_SKIP_REDIS_CLUSTER=1, SESSION_SKIP_MONGO=1,
#   SESSION_SKIP_BROWSER=1
#       opt out: nothing is installed or started, the tests skip;
#   SESSION_MONGO_SERVER_BIN, SESSION_SKIP_MONGO_FAULTS=1: the program the
#       MongoDB fault tests start (and kill), or opt out of those tests only;
#   SESSION_POSTGRES_URL, SESSION_SKIP_POSTGRES=1: the same for PostgreSQL;
#   SESSION_POSTGRES_REUSE_PORT (default 5432)
#       a PostgreSQL there that lets user postgres into database test without
#       a password is reused (the tests use their own schema and tables);
#       else Debian's postgresql is installed if missing and a private
#       cluster started (initdb as the `postgres` user, in a temp dir).
#   SESSION_REDIS_REUSE_PORT (default 6379)
#       a Redis answering PING there is reused for the standalone tests (it is
#       never flushed: the tests use unique key prefixes). Point it at a port
#       with nothing on it to force a private server.
#   SESSION_SKIP_MYSQL=1, SESSION_MYSQL_URL, SESSION_MYSQL_REUSE_PORT (default
#       3306): the same for MySQL/MariaDB (a server that greets with the MySQL
#       protocol there is reused, with root and no password, database `test`;
#       the tests only create and drop their own tables).
#
# Everything it starts lives under .test-servers/run-<pid>/ and is stopped
# on exit, also when tests fail or the run is interrupted. A run that died
# without cleaning up is cleaned up by the next one.

SERVERS_ROOT="${SERVERS_ROOT:-$PWD/.test-servers}"
SERVERS_VENV="${SERVERS_VENV:-$PWD/.venv-test}"
SERVERS_SECANTUS_VERSION="0.7.0b3"
SERVERS_RUN=""

servers_log() { printf '    [servers] %s\n' "$*" >&2 || true; }

# servers__ping PORT: does a Redis answer PING on 127.0.0.1:PORT? Pure bash,
# so it works before redis-cli is installed.
servers__ping() (
    reply=""
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'PING\r\n' >&3
    IFS= read -r -t 2 reply <&3 || true
    [[ "$reply" == "+PONG"* ]]
) 2>/dev/null

# servers__listening PORT: does anything accept connections there?
servers__listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# servers__free_port: a loopback port that is free, and whose +10000
# (Redis Cluster bus port) is free too.
servers__free_port() {
    local p i
    for i in $(seq 1 500); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 25000))
        if ! servers__listening "$p" && ! servers__listening $((p + 10000)); then
            echo "$p"
            return 0
        fi
    done
    servers_log "no free loopback port found"
    return 1
}

# servers__track PID: remember a process this run started.
servers__track() { echo "$1" >>"$SERVERS_RUN/pids"; }

# servers__kill_tracked DIR: stop the processes recorded in DIR/pids that
# are still ours (their working directory or command line is inside DIR).
servers__kill_tracked() {
    local dir="$1" pid cwd cmd alive=()
    [[ -f "$dir/pids" ]] || return 0
    while read -r pid; do
        [[ "$pid" =~ ^[0-9]+$ ]] || continue
        kill -0 "$pid" 2>/dev/null || continue
        cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null || true)"
        cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
        if [[ "$cwd" == "$dir" || "$cwd" == "$dir/"* || "$cmd" == *"$dir/"* ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            alive+=("$pid")
        fi
    done <"$dir/pids"
    local i
    for i in $(seq 1 50); do
        local still=()
        for pid in "${alive[@]}"; do
            kill -0 "$pid" 2>/dev/null && still+=("$pid")
        done
        alive=("${still[@]}")
        [[ ${#alive[@]} -eq 0 ]] && return 0
        sleep 0.1
    done
    for pid in "${alive[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

# servers__identity PID: the process's start time (field 22 of
# /proc/PID/stat), empty if it is gone or a zombie. PID plus start time
# names a process even after its PID is reused.
servers__identity() {
    local stat rest
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    rest="${stat##*) }" # fields after the command name, from field 3 on
    # shellcheck disable=SC2086
    set -- $rest
    [[ "$1" == Z || "$1" == X ]] && return 0
    echo "${20}"
}

# servers__clean_stale: remove what earlier runs left behind when they died.
servers__clean_stale() {
    local dir owner
    [[ -d "$SERVERS_ROOT" ]] || return 0
    for dir in "$SERVERS_ROOT"/run-*; do
        [[ -d "$dir" ]] || continue
        owner="$(cat "$dir/owner" 2>/dev/null || true)" # "PID STARTTIME"
        if [[ "$owner" =~ ^([0-9]+)\ ([0-9]+)$ ]] &&
            [[ "$(servers__identity "${BASH_REMATCH[1]}")" == "${BASH_REMATCH[2]}" ]]; then
            continue # another run of the test command is still going
        fi
        servers_log "cleaning up after an earlier run: $dir"
        servers__postgres_stop "$dir"
        servers__kill_tracked "$dir"
        servers__kill_within "$dir"
        rm -rf "$dir"
    done
}

# servers__kill_within DIR: stop what still runs with its working directory
# inside DIR: children our servers started themselves (the browsers that
# chromedriver launched), which DIR/pids does not list.
servers__kill_within() {
    local dir="$1" proc pid cwd
    for proc in /proc/[0-9]*; do
        pid="${proc#/proc/}"
        cwd="$(readlink "$proc/cwd" 2>/dev/null || true)"
        if [[ "$cwd" == "$dir" || "$cwd" == "$dir/"* ]]; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

servers_stop() {
    local status=$?
    # Stopping must finish even if nobody reads our output any more.
    trap '' PIPE HUP INT TERM
    if [[ -n "$SERVERS_RUN" && -d "$SERVERS_RUN" ]]; then
        servers_log "stopping test servers"
        servers__postgres_stop "$SERVERS_RUN"
        servers__kill_tracked "$SERVERS_RUN"
        servers__kill_within "$SERVERS_RUN"
        rm -rf "$SERVERS_RUN"
        rmdir "$SERVERS_ROOT" 2>/dev/null || true
    fi
    SERVERS_RUN=""
    return "$status"
}

servers__apt_install() {
    if [[ "$(id -u)" != 0 ]]; then
        servers_log "missing $*: install it (apt-get install $*) or run as root"
        return 1
    fi
    servers_log "installing $* (apt-get)"
    if [[ -z "${SERVERS_APT_UPDATED:-}" ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        SERVERS_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

servers__ensure_redis() {
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        return 0
    fi
    servers__apt_install redis-server redis-tools
}

# servers__launch NAME READY LOG CMD...: run CMD in $SERVERS_RUN/NAME on a
# free port, with {PORT} and {DIR} in its arguments replaced, until
# `READY PORT` succeeds (10 s a try, 5 tries on fresh ports); prints the
# port. LOG is the file (in that folder) to show when a try fails.
servers__launch() {
    local name="$1" ready="$2" log="$3" dir port attempt pid i arg args
    shift 3
    dir="$SERVERS_RUN/$name"
    mkdir -p "$dir"
    for attempt in 1 2 3 4 5; do
        port="$(servers__free_port)" || return 1
        args=()
        for arg in "$@"; do
            arg="${arg//\{PORT\}/$port}"
            args+=("${arg//\{DIR\}/$dir}")
        done
        (cd "$dir" && exec "${args[@]}") >"$dir/out.log" 2>&1 &
        pid=$!
        servers__track "$pid"
        for i in $(seq 1 100); do
            if "$ready" "$port"; then
                echo "$port"
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -TERM "$pid" 2>/dev/null || true
        servers_log "$name did not come up on port $port (attempt $attempt)"
        tail -n 5 "$dir/$log" >&2 2>/dev/null || true
    done
    return 1
}

# servers__start_redis NAME [ARGS...]: start one redis-server on a free
# port in its own directory; prints the port.
servers__start_redis() {
    local name="$1"
    shift
    servers__launch "$name" servers__ping redis.log \
        redis-server --bind 127.0.0.1 --port '{PORT}' --dir '{DIR}' --save "" \
        --appendonly no --daemonize no --logfile '{DIR}/redis.log' "$@"
}

servers__redis_standalone() {
    if [[ "${SESSION_SKIP_REDIS:-}" == 1 ]]; then
        servers_log "Redis: skipped (SESSION_SKIP_REDIS=1)"
        return 0
    fi
    # Installed even when a running Redis is reused: the fault and Sentinel
    # tests of store-redis start private redis-servers of their own.
    servers__ensure_redis
    if [[ -n "${SESSION_REDIS_URL:-}" ]]; then
        servers_log "Redis: using SESSION_REDIS_URL as given"
        return 0
    fi
    local reuse="${SESSION_REDIS_REUSE_PORT:-6379}" port
    if servers__ping "$reuse"; then
        servers_log "Redis: reusing the server on 127.0.0.1:$reuse"
        export SESSION_REDIS_URL="redis://127.0.0.1:$reuse/"
        return 0
    fi
    port="$(servers__start_redis standalone)"
    servers_log "Redis: started on 127.0.0.1:$port"
    export SESSION_REDIS_URL="redis://127.0.0.1:$port/"
}

servers__redis_cluster() {
    if [[ "${SESSION_SKIP_REDIS:-}" == 1 || "${SESSION_SKIP_REDIS_CLUSTER:-}" == 1 ]]; then
        servers_log "Redis Cluster: skipped (opted out)"
        return 0
    fi
    if [[ -n "${SESSION_REDIS_CLUSTER_NODES:-}" ]]; then
        servers_log "Redis Cluster: using SESSION_REDIS_CLUSTER_NODES as given"
        return 0
    fi
    servers__ensure_redis
    local ports=() port i n addrs=() urls=() info ok
    for i in 1 2 3 4 5 6; do
        port="$(servers__start_redis "cluster-$i" --cluster-enabled yes \
            --cluster-config-file nodes.conf --cluster-node-timeout 5000)"
        ports+=("$port")
        addrs+=("127.0.0.1:$port")
        urls+=("redis://127.0.0.1:$port/")
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
        >"$SERVERS_RUN/cluster-create.log" 2>&1 || {
        cat "$SERVERS_RUN/cluster-create.log" >&2
        return 1
    }
    for i in $(seq 1 300); do
        ok=0
        for port in "${ports[@]}"; do
            info="$(redis-cli -p "$port" cluster info 2>/dev/null | tr -d '\r')" || true
            if [[ "$info" == *"cluster_state:ok"* && "$info" == *"cluster_slots_ok:16384"* &&
                "$info" == *"cluster_known_nodes:6"* ]]; then
                ok=$((ok + 1))
            fi
        done
        [[ $ok -eq 6 ]] && break
        sleep 0.2
    done
    if [[ $ok -ne 6 ]]; then
        servers_log "Redis Cluster: not ok after 60 s"
        for port in "${ports[@]}"; do redis-cli -p "$port" cluster info >&2 || true; done
        return 1
    fi
    n="$(IFS=,; echo "${urls[*]}")"
    servers_log "Redis Cluster: 6 nodes (3 primaries, 3 replicas) on ${ports[*]}"
    export SESSION_REDIS_CLUSTER_NODES="$n"
}

servers__ensure_secantus() {
    local bin="$SERVERS_VENV/bin/secantusd-py" installed
    if [[ -x "$bin" ]]; then
        installed="$("$SERVERS_VENV/bin/python" -m pip show SecantusDB 2>/dev/null |
            sed -n 's/^Version: //p')" || true
        [[ "$installed" == "$SERVERS_SECANTUS_VERSION" ]] && return 0
    fi
    if ! command -v python3 >/dev/null; then
        servers__apt_install python3 python3-venv python3-pip
    fi
    if [[ ! -x "$SERVERS_VENV/bin/python" ]]; then
        rm -rf "$SERVERS_VENV"
        if ! python3 -m venv "$SERVERS_VENV" >&2; then
            rm -rf "$SERVERS_VENV"
            servers__apt_install python3-venv
            python3 -m venv "$SERVERS_VENV" >&2
        fi
    fi
    servers_log "installing SecantusDB==$SERVERS_SECANTUS_VERSION into $SERVERS_VENV (pip)"
    "$SERVERS_VENV/bin/python" -m pip install -q --disable-pip-version-check \
        "SecantusDB==$SERVERS_SECANTUS_VERSION" >&2
}

servers__mongo() {
    if [[ "${SESSION_SKIP_MONGO:-}" == 1 ]]; then
        servers_log "MongoDB: skipped (SESSION_SKIP_MONGO=1)"
        return 0
    fi
    if [[ "${SESSION_SKIP_MONGO_FAULTS:-}" != 1 && -z "${SESSION_MONGO_SERVER_BIN:-}" ]]; then
        # The fault tests start (and kill) private servers of their own.
        servers__ensure_secantus
        export SESSION_MONGO_SERVER_BIN="$SERVERS_VENV/bin/secantusd-py"
    fi
    if [[ -n "${SESSION_MONGO_URL:-}" ]]; then
        servers_log "MongoDB: using SESSION_MONGO_URL as given"
        return 0
    fi
    servers__ensure_secantus
    local dir="$SERVERS_RUN/mongo" pid port="" i
    mkdir -p "$dir/data"
    # Started from its own directory, so that no ./secantusd.toml is picked up.
    (cd "$dir" && exec "$SERVERS_VENV/bin/secantusd-py" --host 127.0.0.1 --port 0 \
        --storage-path "$dir/data" --standalone --log-level INFO) >"$dir/log" 2>&1 &
    pid=$!
    servers__track "$pid"
    for i in $(seq 1 300); do
        port="$(sed -n 's/.*secantus listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$dir/log" |
            head -n 1)"
        [[ -n "$port" ]] && servers__listening "$port" && break
        port=""
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z "$port" ]]; then
        servers_log "MongoDB (SecantusDB) did not start:"
        tail -n 20 "$dir/log" >&2 || true
        return 1
    fi
    servers_log "MongoDB: SecantusDB started on 127.0.0.1:$port"
    export SESSION_MONGO_URL="mongodb://127.0.0.1:$port/"
}

# servers__pg_answers PORT: does a PostgreSQL answer on 127.0.0.1:PORT? Sends
# an SSLRequest and expects 'S' or 'N' (pure bash: no client needed).
servers__pg_answers() (
    reply=""
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf '\x00\x00\x00\x08\x04\xd2\x16\x2f' >&3
    IFS= read -r -N 1 -t 2 reply <&3 || true
    [[ "$reply" == S || "$reply" == N ]]
) 2>/dev/null

# servers__pg_bindir: the directory with initdb and postgres (PATH first,
# then the newest /usr/lib/postgresql/*/bin), empty if none.
servers__pg_bindir() {
    local initdb dir
    if initdb="$(command -v initdb 2>/dev/null)"; then
        dir="$(dirname "$(readlink -f "$initdb")")"
        [[ -x "$dir/postgres" ]] && { echo "$dir"; return 0; }
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [[ -x "$dir/initdb" && -x "$dir/postgres" ]] && { echo "$dir"; return 0; }
    done
    return 0
}

# servers__as_pg CMD...: run CMD as the `postgres` user when we are root
# (initdb and postgres refuse to run as root), else as ourselves.
servers__as_pg() {
    if [[ "$(id -u)" == 0 ]]; then
        setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
    else
        "$@"
    fi
}

# servers__postgres_kill DIR: stop the postmaster recorded in DIR/postgres
# ("PID TMPDIR"), if that PID is still a postgres of that temp dir.
servers__postgres_kill() {
    local pid tmp i
    [[ -f "$1/postgres" ]] || return 0
    read -r pid tmp <"$1/postgres" || true
    if [[ "$pid" =~ ^[0-9]+$ && "$pid" != 0 && -n "$tmp" ]] &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$tmp/"; then
        kill -INT "$pid" 2>/dev/null || true # fast shutdown
        for i in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

# servers__postgres_stop DIR: stop the private cluster recorded in DIR and
# remove its temp dir.
servers__postgres_stop() {
    local pid tmp
    [[ -f "$1/postgres" ]] || return 0
    servers__postgres_kill "$1"
    read -r pid tmp <"$1/postgres" || true
    [[ "$tmp" == "${TMPDIR:-/tmp}"/session-pg.* ]] && rm -rf "$tmp"
    rm -f "$1/postgres"
}

servers__postgres() {
    if [[ "${SESSION_SKIP_POSTGRES:-}" == 1 ]]; then
        servers_log "PostgreSQL: skipped (SESSION_SKIP_POSTGRES=1)"
        return 0
    fi
    if [[ -n "${SESSION_POSTGRES_URL:-}" ]]; then
        servers_log "PostgreSQL: using SESSION_POSTGRES_URL as given"
        return 0
    fi
    local reuse="${SESSION_POSTGRES_REUSE_PORT:-5432}" bindir tmp port pid attempt i
    if servers__pg_answers "$reuse"; then
        if ! command -v psql >/dev/null ||
            psql -h 127.0.0.1 -p "$reuse" -U postgres -d test -w -Atqc 'SELECT 1' >/dev/null 2>&1; then
            servers_log "PostgreSQL: reusing the server on 127.0.0.1:$reuse"
            export SESSION_POSTGRES_URL="postgres://postgres@127.0.0.1:$reuse/test"
            return 0
        fi
        servers_log "PostgreSQL on 127.0.0.1:$reuse refuses postgres@test without a password: starting a private one"
    fi
    bindir="$(servers__pg_bindir)"
    if [[ -z "$bindir" ]]; then
        servers__apt_install postgresql
        bindir="$(servers__pg_bindir)"
        [[ -n "$bindir" ]] || { servers_log "PostgreSQL: no initdb after installing"; return 1; }
    fi
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/session-pg.XXXXXX")"
    [[ "$(id -u)" == 0 ]] && chown postgres:postgres "$tmp"
    servers__as_pg "$bindir/initdb" -D "$tmp/data" -U postgres --auth=trust \
        --no-sync -E UTF8 --locale=C >"$SERVERS_RUN/postgres-initdb.log" 2>&1 || {
        servers_log "PostgreSQL: initdb failed"
        tail -n 20 "$SERVERS_RUN/postgres-initdb.log" >&2
        rm -rf "$tmp"
        return 1
    }
    for attempt in 1 2 3 4 5; do
        port="$(servers__free_port)" || return 1
        servers__as_pg "$bindir/postgres" -D "$tmp/data" -p "$port" -k "$tmp" \
            -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 \
            >"$tmp/postgres.log" 2>&1 &
        pid=$!
        echo "0 $tmp" >"$SERVERS_RUN/postgres"
        for i in $(seq 1 100); do
            servers__pg_answers "$port" && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        # The postmaster's own PID (the one stopped at the end).
        [[ -f "$tmp/data/postmaster.pid" ]] &&
            echo "$(head -n 1 "$tmp/data/postmaster.pid") $tmp" >"$SERVERS_RUN/postgres"
        if servers__pg_answers "$port" &&
            "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc \
                'CREATE DATABASE test' >&2; then
            servers_log "PostgreSQL: private cluster ($("$bindir/postgres" --version)) on 127.0.0.1:$port"
            export SESSION_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/test"
            return 0
        fi
        servers_log "PostgreSQL did not come up on port $port (attempt $attempt)"
        tail -n 5 "$tmp/postgres.log" >&2 || true
        servers__postgres_kill "$SERVERS_RUN"
        kill -INT "$pid" 2>/dev/null || true
    done
    servers__postgres_stop "$SERVERS_RUN"
    return 1
}

# servers__mysql_greets PORT: does a MySQL/MariaDB server greet on
# 127.0.0.1:PORT (a protocol-10 handshake packet)? Pure bash and coreutils.
servers__mysql_greets() (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    greeting="$(timeout 2 head -c 5 <&3 | od -An -tx1 | tr -d ' \n')"
    [[ "${greeting:8:2}" == 0a ]]
) 2>/dev/null

# servers__mysql_bin NAME: the path of a MariaDB program (the server lives in
# /usr/sbin, often not on PATH).
servers__mysql_bin() {
    local p
    for p in "$(command -v "$1" 2>/dev/null)" "/usr/sbin/$1" "/usr/bin/$1"; do
        [[ -n "$p" && -x "$p" ]] && { echo "$p"; return 0; }
    done
    return 1
}

servers__mysql() {
    if [[ "${SESSION_SKIP_MYSQL:-}" == 1 ]]; then
        servers_log "MySQL: skipped (SESSION_SKIP_MYSQL=1)"
        return 0
    fi
    if [[ -n "${SESSION_MYSQL_URL:-}" ]]; then
        servers_log "MySQL: using SESSION_MYSQL_URL as given"
        return 0
    fi
    local reuse="${SESSION_MYSQL_REUSE_PORT:-3306}" port dir user server install client
    if servers__mysql_greets "$reuse"; then
        servers_log "MySQL: reusing the server on 127.0.0.1:$reuse"
        export SESSION_MYSQL_URL="mysql://root@127.0.0.1:$reuse/test"
        return 0
    fi
    if ! servers__mysql_bin mariadbd >/dev/null || ! servers__mysql_bin mariadb-install-db >/dev/null ||
        ! servers__mysql_bin mariadb >/dev/null; then
        servers__apt_install mariadb-server mariadb-client
    fi
    server="$(servers__mysql_bin mariadbd)"
    install="$(servers__mysql_bin mariadb-install-db)"
    client="$(servers__mysql_bin mariadb)"
    user="$(id -un)"
    dir="$SERVERS_RUN/mysql"
    mkdir -p "$dir"
    # A private data directory: root without a password (over TCP too), no
    # system config files read (--no-defaults), never the system's server.
    if ! "$install" --no-defaults --auth-root-authentication-method=normal \
        --datadir="$dir/data" --user="$user" --skip-test-db \
        >"$dir/install.log" 2>&1; then
        servers_log "MySQL: mariadb-install-db failed:"
        tail -n 20 "$dir/install.log" >&2 || true
        return 1
    fi
    port="$(servers__launch mysql servers__mysql_greets error.log \
        "$server" --no-defaults --datadir="$dir/data" --user="$user" \
        --bind-address=127.0.0.1 '--port={PORT}' '--socket={DIR}/mysqld.sock' \
        '--pid-file={DIR}/mysqld.pid' '--log-error={DIR}/error.log' \
        --innodb-buffer-pool-size=128M --skip-log-bin)" || return 1
    if ! "$client" --no-defaults --protocol=TCP -h 127.0.0.1 -P "$port" -u root \
        -e 'CREATE DATABASE IF NOT EXISTS test' >>"$dir/install.log" 2>&1; then
        servers_log "MySQL: cannot create the database test:"
        tail -n 20 "$dir/install.log" >&2 || true
        return 1
    fi
    servers_log "MySQL: MariaDB $("$server" --version 2>/dev/null | sed -n 's/.*Ver \([^ ]*\).*/\1/p') started on 127.0.0.1:$port"
    export SESSION_MYSQL_URL="mysql://root@127.0.0.1:$port/test"
}

# The browser test's WebDriver: Debian's chromedriver, which starts Debian's
# chromium (headless, with a fresh profile: the test passes the flags).
servers__browser() {
    if [[ "${SESSION_SKIP_BROWSER:-}" == 1 ]]; then
        servers_log "browser: skipped (SESSION_SKIP_BROWSER=1)"
        return 0
    fi
    if [[ -n "${SESSION_WEBDRIVER_URL:-}" ]]; then
        servers_log "browser: using SESSION_WEBDRIVER_URL as given"
        return 0
    fi
    if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
        servers__apt_install chromium chromium-driver
    fi
    local port
    port="$(servers__launch chromedriver servers__listening chromedriver.log \
        chromedriver '--port={PORT}' '--log-path={DIR}/chromedriver.log')" || return 1
    servers_log "browser: chromedriver on 127.0.0.1:$port ($(chromium --version 2>/dev/null))"
    export SESSION_WEBDRIVER_URL="http://127.0.0.1:$port"
}

servers_start() {
    mkdir -p "$SERVERS_ROOT"
    servers__clean_stale
    SERVERS_RUN="$SERVERS_ROOT/run-$$"
    rm -rf "$SERVERS_RUN"
    mkdir -p "$SERVERS_RUN"
    echo "$$ $(servers__identity $$)" >"$SERVERS_RUN/owner"
    : >"$SERVERS_RUN/pids"
    trap servers_stop EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 141' PIPE
    trap 'exit 143' TERM
    servers__redis_standalone
    servers__redis_cluster
    servers__mongo
    servers__postgres
    servers__mysql
    servers__browser
}
