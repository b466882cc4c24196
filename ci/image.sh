#!/usr/bin/env bash
# Proves what ships: the static musl binary, the scratch image built from
# Dockerfile.scratch, that binary inside the image against a fake Hasura over
# HTTP and HTTPS, and the Kubernetes manifests in deploy/.
#
#   bash ci/image.sh
#
# Runs as root: it installs buildah, file, openssl, curl and friends with
# apt-get when they are missing, and kubernetes-validate from PyPI into
# target/ci-tools/. It expects the two builds below, as .ci/run does them,
# and runs them itself when their output is missing:
#
#   cargo build --release --target x86_64-unknown-linux-musl
#   cargo build --example fake-hasura
#
# Every check prints one line; the first failure stops the script with the
# logs that explain it. Containers, fakes and temporary files are removed on
# exit; the image stays tagged hasura-metadata-reloader:ci for inspection.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET=${TARGET:-x86_64-unknown-linux-musl}
BIN=target/$TARGET/release/hasura-metadata-reloader
FAKE=target/debug/examples/fake-hasura
IMAGE=hasura-metadata-reloader:ci
MAX_BINARY_BYTES=3145728 # 3 MiB
MAX_IMAGE_BYTES=3000000  # 3 MB
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
TOOLS=target/ci-tools

# Test credentials for the fake Hasura; none of them may show up in output.
SECRET=ci-admin-secret-5f0c1e
TOKEN=ci-auth-token-9b27d4

started=$SECONDS
passed=0
tmp=$(mktemp -d)
ctr=
fake_pids=()
server_pid=

# --- reporting ---------------------------------------------------------------

pass() {
    passed=$((passed + 1))
    printf 'ok    %s\n' "$*"
}

# fail MESSAGE [LOG...]: prints the logs that explain the failure, then stops.
fail() {
    local message=$1 log
    shift
    for log in "$@"; do
        [[ -s $log ]] || continue
        printf -- '--- %s\n' "${log#"$tmp"/}" >&2
        tail -n 40 "$log" >&2
    done
    printf 'FAIL  %s\n' "$message" >&2
    printf 'image.sh: %d passed, 1 failed\n' "$passed"
    exit 1
}

cleanup() {
    local pid
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    for pid in "${fake_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $ctr ]]; then
        bh rm "$ctr" >/dev/null 2>&1 || true
    fi
    rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools -------------------------------------------------------------------

apt_updated=

# need COMMAND PACKAGE: installs PACKAGE when COMMAND is missing.
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [[ $(id -u) != 0 ]]; then
        fail "$1 is missing: install $2, or run as root"
    fi
    if [[ -z $apt_updated ]]; then
        apt-get update -qq >"$tmp/apt.log" 2>&1 || fail "apt-get update" "$tmp/apt.log"
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" \
        >>"$tmp/apt.log" 2>&1 || fail "apt-get install $2" "$tmp/apt.log"
}

bh() {
    buildah --storage-driver vfs "$@"
}

# inimage [RUN-OPTION...] -- COMMAND...: runs COMMAND in the working
# container as the image's non-root user. Chroot isolation keeps the host's
# network namespace, so the fakes on 127.0.0.1 are reachable; --network host
# says so explicitly.
inimage() {
    local opts=()
    while [[ $1 != -- ]]; do
        opts+=("$1")
        shift
    done
    shift
    bh run --isolation chroot --network host --user 65532:65532 \
        "${opts[@]}" "$ctr" -- "$@"
}

# expect_exit CODE NAME [RUN-OPTION...] -- COMMAND...: runs COMMAND in the
# image, asserts its exit code and that no credential leaked into its output.
expect_exit() {
    local want=$1 name=$2 rc=0
    shift 2
    inimage "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || rc=$?
    if [[ $rc != "$want" ]]; then
        fail "$name: exit code $rc, expected $want" "$tmp/$name.out" "$tmp/$name.err"
    fi
    if grep -qF -e "$SECRET" -e "$TOKEN" "$tmp/$name.out" "$tmp/$name.err"; then
        fail "$name: a credential appears in the output" "$tmp/$name.err"
    fi
}

# start_fake NAME [FLAG...]: starts the fake Hasura on loopback and sets
# fake_url to the base URL it prints once ready.
start_fake() {
    local name=$1 pid
    shift
    "$FAKE" --bind 127.0.0.1 --port 0 "$@" >"$tmp/$name.url" 2>"$tmp/$name.log" &
    pid=$!
    fake_pids+=("$pid")
    for _ in $(seq 100); do
        if [[ $(wc -l <"$tmp/$name.url") -ge 1 ]]; then
            fake_url=$(head -n 1 "$tmp/$name.url")
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || fail "fake Hasura $name exited early" "$tmp/$name.log"
        sleep 0.1
    done
    fail "fake Hasura $name printed no URL within 10 s" "$tmp/$name.log"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mib() {
    awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'
}

# --- inputs ------------------------------------------------------------------

need file file
need readelf binutils
need openssl openssl
need curl curl
need ps procps
need unshare util-linux
need buildah buildah

version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
[[ -n $version ]] || fail "no version in Cargo.toml"

if [[ ! -x $BIN ]]; then
    echo "building $BIN"
    cargo build --release --target "$TARGET"
fi
if [[ ! -x $FAKE ]]; then
    echo "building $FAKE"
    cargo build --example fake-hasura
fi

# --- the binary --------------------------------------------------------------

check_static_binary() {
    local info ldd_out
    info=$(file -L -b "$BIN")
    case $info in
    *static-pie*linked* | *"statically linked"*) ;;
    *) fail "binary is not statically linked: $info" ;;
    esac
    case $info in
    *"not stripped"*) fail "binary is not stripped: $info" ;;
    *stripped*) ;;
    *) fail "file does not say whether the binary is stripped: $info" ;;
    esac

    # ldd exits non-zero on a static binary, or says so on a static-pie one.
    if ldd_out=$(ldd "$BIN" 2>&1); then
        case $ldd_out in
        *"statically linked"* | *"not a dynamic executable"*) ;;
        *) fail "ldd lists shared libraries: $ldd_out" ;;
        esac
    fi

    # The ELF headers settle it: no interpreter, no shared library needed.
    if readelf -lW "$BIN" | grep -q 'program interpreter'; then
        fail "binary requests a program interpreter"
    fi
    if readelf -dW "$BIN" | grep -q '(NEEDED)'; then
        fail "binary needs shared libraries: $(readelf -dW "$BIN" | grep '(NEEDED)')"
    fi
    pass "static binary: ${info%%,*}, $(grep -o 'static-pie linked\|statically linked' <<<"$info"), stripped, no interpreter"
}

check_binary_size() {
    local bytes
    bytes=$(stat -c %s "$BIN")
    if ((bytes > MAX_BINARY_BYTES)); then
        fail "binary size: $(mib "$bytes") ($bytes bytes), over 3 MiB ($MAX_BINARY_BYTES bytes)"
    fi
    pass "binary size: $(mib "$bytes") ($bytes bytes), limit $MAX_BINARY_BYTES"
}

# --- the image ---------------------------------------------------------------

build_image() {
    local isolate=() how="network available" short

    # An empty network namespace proves the build needs no network.
    if unshare --net true 2>/dev/null; then
        isolate=(unshare --net)
        how="no network"
    fi
    "${isolate[@]}" buildah --storage-driver vfs bud --isolation chroot \
        --build-arg "TARGET=$TARGET" --build-arg "VERSION=$version" \
        --iidfile "$tmp/iid" -f Dockerfile.scratch -t "$IMAGE" . \
        >"$tmp/bud.log" 2>&1 || fail "image build" "$tmp/bud.log"
    image_id=$(<"$tmp/iid")

    # Drop the images that earlier runs left untagged.
    bh rmi --prune >/dev/null 2>&1 || true
    short=${image_id#sha256:}
    pass "image build: buildah bud -f Dockerfile.scratch ($how), $IMAGE, id ${short:0:12}"
}

check_image_size() {
    local manifest bytes layers shown
    manifest=$(bh inspect --type image --format '{{.Manifest}}' "$image_id")

    # The manifest gives the config and every layer in bytes; their sum is
    # what the image stores, uncompressed.
    bytes=$(grep -o '"size":[0-9]*' <<<"$manifest" | awk -F: '{ s += $2 } END { print s + 0 }')
    layers=$(grep -o '"layers":\[[^]]*\]' <<<"$manifest" | grep -o '"digest"' | wc -l)
    shown=$(bh images --format '{{.Size}}' "$image_id" | head -n 1)
    if ((bytes == 0)); then
        fail "image size: no sizes in the manifest: $manifest"
    fi
    if ((bytes > MAX_IMAGE_BYTES)); then
        fail "image size: $bytes bytes ($shown), over $MAX_IMAGE_BYTES"
    fi
    [[ $layers == 1 ]] || fail "image has $layers layers, expected 1"
    pass "image size: $bytes bytes ($shown, 1 layer), limit $MAX_IMAGE_BYTES"
}

check_image_config() {
    local got want label
    got=$(bh inspect --type image --format \
        'user={{.OCIv1.Config.User}} entrypoint={{.OCIv1.Config.Entrypoint}} cmd={{.OCIv1.Config.Cmd}} env={{.OCIv1.Config.Env}} ports={{.OCIv1.Config.ExposedPorts}}' \
        "$image_id")
    want='user=65532:65532 entrypoint=[] cmd=[hasura-metadata-reloader server] env=[PATH=/usr/local/bin] ports=map[8080/tcp:{}]'
    [[ $got == "$want" ]] || fail "image config: got '$got', expected '$want'"
    for label in source description licenses version; do
        got=$(bh inspect --type image --format \
            "{{index .OCIv1.Config.Labels \"org.opencontainers.image.$label\"}}" "$image_id")
        [[ -n $got ]] || fail "image label org.opencontainers.image.$label is missing"
    done
    got=$(bh inspect --type image --format \
        '{{index .OCIv1.Config.Labels "org.opencontainers.image.licenses"}} {{index .OCIv1.Config.Labels "org.opencontainers.image.version"}}' \
        "$image_id")
    [[ $got == "MIT $version" ]] || fail "image labels: licenses and version are '$got', expected 'MIT $version'"
    pass "image config: user 65532:65532, CMD server without ENTRYPOINT, PATH, port 8080, OCI labels"
}

# --- the binary in the image -------------------------------------------------

check_version() {
    local out
    expect_exit 0 version -- hasura-metadata-reloader version
    out=$(<"$tmp/version.out")
    [[ $out == "hasura-metadata-reloader $version" ]] ||
        fail "version: printed '$out', expected 'hasura-metadata-reloader $version'"
    expect_exit 0 dash-version -- hasura-metadata-reloader --version
    out=$(<"$tmp/dash-version.out")
    [[ $out == "hasura-metadata-reloader $version" ]] ||
        fail "--version: printed '$out', expected 'hasura-metadata-reloader $version'"
    pass "version in image: $out"
}

check_reload_http() {
    start_fake http --admin-secret "$SECRET"
    local url=$fake_url

    # The original tool's documented invocation, unchanged.
    expect_exit 0 reload-http -- \
        hasura-metadata-reloader reload --hasura-endpoint="$url" --hasura-admin-secret "$SECRET"
    grep -q '"is_consistent":true' "$tmp/reload-http.err" ||
        fail "reload over http: no consistent outcome logged" "$tmp/reload-http.err"

    expect_exit 3 reload-denied -- \
        hasura-metadata-reloader reload --hasura-endpoint="$url" --hasura-admin-secret wrong --retries 0
    pass "reload over http in image: exit 0 at $url; wrong admin secret: exit 3"
}

check_reload_inconsistent() {
    start_fake inconsistent --inconsistent-reloads always
    expect_exit 1 reload-inconsistent -- \
        hasura-metadata-reloader reload --hasura-endpoint "$fake_url" --retries 0
    grep -q '"inconsistent_objects":\[' "$tmp/reload-inconsistent.err" ||
        fail "inconsistent reload: inconsistent_objects not logged as an array" \
            "$tmp/reload-inconsistent.err"
    pass "reload against inconsistent Hasura in image: exit 1, objects logged"
}

make_certs() {
    local d=$tmp/tls
    mkdir -p "$d"
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -days 2 -subj "/CN=hasura-metadata-reloader CI CA" \
        -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign \
        -keyout "$d/ca.key" -out "$d/ca.pem" >"$d/openssl.log" 2>&1 ||
        fail "openssl: CA" "$d/openssl.log"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=localhost" -keyout "$d/server.key" -out "$d/server.csr" \
        >>"$d/openssl.log" 2>&1 || fail "openssl: server key" "$d/openssl.log"
    printf '%s\n' \
        'basicConstraints=critical,CA:FALSE' \
        'keyUsage=critical,digitalSignature' \
        'extendedKeyUsage=serverAuth' \
        'subjectAltName=IP:127.0.0.1,DNS:localhost' >"$d/server.ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
        -CAcreateserial -days 2 -extfile "$d/server.ext" -out "$d/server.pem" \
        >>"$d/openssl.log" 2>&1 || fail "openssl: server certificate" "$d/openssl.log"

    # The container user is not root; the CA file must be readable to it.
    chmod 0644 "$d/ca.pem"
}

check_reload_https() {
    make_certs
    start_fake https --admin-secret "$SECRET" \
        --tls-cert "$tmp/tls/server.pem" --tls-key "$tmp/tls/server.key"
    local url=$fake_url
    [[ $url == https://* ]] || fail "fake Hasura with TLS printed '$url'" "$tmp/https.log"

    # Mounted read-only, as a Kubernetes Secret or ConfigMap would be.
    expect_exit 0 reload-https -v "$tmp/tls/ca.pem:/etc/hasura-ca/ca.pem:ro" -- \
        hasura-metadata-reloader reload --hasura-endpoint "$url" \
        --hasura-admin-secret "$SECRET" --ca-cert /etc/hasura-ca/ca.pem

    # Without the CA the built-in roots must reject the certificate.
    expect_exit 3 reload-https-untrusted -- \
        hasura-metadata-reloader reload --hasura-endpoint "$url" \
        --hasura-admin-secret "$SECRET" --retries 0
    pass "reload over https in image: --ca-cert exit 0, built-in roots only exit 3"
}

# --- the manifests -----------------------------------------------------------

check_manifest_schemas() {
    local venv=$TOOLS/venv
    if [[ ! -x $venv/bin/kubernetes-validate ]]; then
        mkdir -p "$TOOLS"
        python3 -m venv "$venv" >"$tmp/venv.log" 2>&1 || fail "python3 -m venv" "$tmp/venv.log"
        "$venv/bin/pip" install -q "$KUBERNETES_VALIDATE" >>"$tmp/venv.log" 2>&1 ||
            fail "pip install $KUBERNETES_VALIDATE" "$tmp/venv.log"
    fi
    "$venv/bin/kubernetes-validate" --strict deploy/*.yaml >"$tmp/validate.log" 2>&1 ||
        fail "deploy/*.yaml against the Kubernetes schemas" "$tmp/validate.log"
    pass "manifests: deploy/*.yaml valid against Kubernetes ${KUBERNETES_VALIDATE#*==} schemas (strict)"
}

# manifest_container FILE: prints the reloader container of FILE, one item a
# line: "arg VALUE", "env NAME=VALUE", "secret NAME" or "optional NAME".
manifest_container() {
    "$TOOLS/venv/bin/python" - "$1" <<'EOF'
import sys
import yaml

def pod_spec(doc):
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return spec["template"]["spec"]

found = 0
with open(sys.argv[1]) as f:
    for doc in yaml.safe_load_all(f):
        if not doc or doc["kind"] not in ("CronJob", "Deployment"):
            continue
        for c in pod_spec(doc)["containers"]:
            if "/hasura-metadata-reloader:" not in c["image"]:
                continue
            found += 1
            print("image", c["image"])
            for arg in c.get("command", []) + c.get("args", []):
                print("arg", arg)
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    print("env", "%s=%s" % (e["name"], e.get("value", "")))
                elif ref.get("optional"):
                    print("optional", e["name"])
                else:
                    print("secret", e["name"])
if found != 1:
    sys.exit("expected one reloader container, found %d" % found)
EOF
}

# load_manifest FILE: sets m_image, m_cmd, m_env (buildah run -e options) and
# m_names (every variable set) from the reloader container of FILE, with the endpoint pointing at the fake
# and required Secrets filled with the test credentials. Optional Secrets stay
# unset, as when their key is absent.
load_manifest() {
    local kind rest
    m_image=
    m_cmd=()
    m_env=()
    m_names=()
    manifest_container "$1" >"$tmp/manifest.txt" 2>&1 ||
        fail "$1: reading the reloader container" "$tmp/manifest.txt"
    while read -r kind rest; do
        case $kind in
        env | secret | optional) m_names+=("${rest%%=*}") ;;&
        image) m_image=$rest ;;
        arg) m_cmd+=("$rest") ;;
        env)
            case $rest in
            HASURA_ENDPOINT=*) m_env+=(-e "HASURA_ENDPOINT=$fake_url") ;;
            *) m_env+=(-e "$rest") ;;
            esac
            ;;
        secret)
            case $rest in
            HASURA_GRAPHQL_ADMIN_SECRET | HASURA_ADMIN_SECRET) m_env+=(-e "$rest=$SECRET") ;;
            RELOADER_AUTH_TOKEN) m_env+=(-e "$rest=$TOKEN") ;;
            *) fail "$1: no test value for the required Secret variable $rest" ;;
            esac
            ;;
        optional) ;;
        esac
    done <"$tmp/manifest.txt"
    [[ ${m_image##*:} == "$version" ]] ||
        fail "$1: image tag ${m_image##*:} differs from the Cargo.toml version $version"
}

# check_env_names FILE: every variable the manifest sets is one the binary
# reads, as the command's --help names them; a typo would pass silently.
check_env_names() {
    local name
    expect_exit 0 help -- "${m_cmd[0]}" "${m_cmd[1]}" --help
    for name in "${m_names[@]}"; do
        grep -qw -- "$name" "$tmp/help.out" ||
            fail "$1: $name is not a variable of '${m_cmd[1]}' (see its --help)" "$tmp/help.out"
    done
}

check_cronjob_manifest() {
    start_fake cronjob --admin-secret "$SECRET"
    load_manifest deploy/cronjob.yaml
    check_env_names deploy/cronjob.yaml
    expect_exit 0 cronjob "${m_env[@]}" -- "${m_cmd[@]}"
    grep -q 'reload skipped' "$tmp/cronjob.err" ||
        fail "cronjob: consistent Hasura was not skipped" "$tmp/cronjob.err"
    pass "cronjob manifest in image: '${m_cmd[*]}', ${#m_names[@]} variables known, exit 0, reload skipped"
}

# http_status METHOD PATH [CURL-OPTION...]: prints the status code and saves
# the body to $tmp/body.
http_status() {
    local method=$1 path=$2
    shift 2
    curl -s -o "$tmp/body" -w '%{http_code}' -X "$method" "$@" \
        "http://127.0.0.1:$port$path" || true
}

# leaf_pid PID: the deepest first descendant of PID; under buildah's chroot
# isolation that is the command itself.
leaf_pid() {
    local pid=$1 child
    while child=$(ps -o pid= --ppid "$pid" | head -n 1 | tr -d ' ') && [[ -n $child ]]; do
        pid=$child
    done
    echo "$pid"
}

# wait_exit PID SECONDS: waits for PID to end and sets exit_rc and exit_ms.
wait_exit() {
    local pid=$1 limit=$2 start
    start=$(date +%s%N)
    for _ in $(seq $((limit * 20))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    exit_ms=$((($(date +%s%N) - start) / 1000000))
    kill -0 "$pid" 2>/dev/null && return 1
    exit_rc=0
    wait "$pid" || exit_rc=$?
}

check_sidecar_manifest() {
    local status leaf
    start_fake sidecar --admin-secret "$SECRET"
    load_manifest deploy/sidecar.yaml
    check_env_names deploy/sidecar.yaml
    port=$(free_port)

    # The manifest keeps the default port; PORT moves it off any port in use.
    inimage "${m_env[@]}" -e "PORT=$port" -- "${m_cmd[@]}" \
        >"$tmp/server.out" 2>"$tmp/server.err" &
    server_pid=$!
    for _ in $(seq 100); do
        status=$(http_status GET /healthz)
        [[ $status == 200 ]] && break
        kill -0 "$server_pid" 2>/dev/null || fail "sidecar: server exited" "$tmp/server.err"
        sleep 0.1
    done
    [[ $status == 200 ]] || fail "sidecar: /healthz answered $status" "$tmp/server.err"
    grep -q '"status":"ok"' "$tmp/body" || fail "sidecar: /healthz body $(<"$tmp/body")"

    status=$(http_status POST /reload_metadata)
    [[ $status == 401 ]] || fail "sidecar: /reload_metadata without token answered $status" "$tmp/server.err"
    status=$(http_status POST /reload_metadata -H "Authorization: Bearer $TOKEN")
    [[ $status == 200 ]] || fail "sidecar: /reload_metadata answered $status: $(<"$tmp/body")" "$tmp/server.err"
    grep -q '"is_consistent":true' "$tmp/body" || fail "sidecar: /reload_metadata body $(<"$tmp/body")"
    status=$(http_status GET /metrics)
    [[ $status == 200 ]] || fail "sidecar: /metrics answered $status" "$tmp/server.err"
    grep -q '^hasura_metadata_reloads_total{outcome="consistent"} [1-9]' "$tmp/body" ||
        fail "sidecar: /metrics does not count the reload" "$tmp/body"

    # buildah run kills its command on SIGTERM instead of passing it on, so
    # the signal goes to the server process itself.
    leaf=$(leaf_pid "$server_pid")
    [[ $(cat "/proc/$leaf/comm" 2>/dev/null) == hasura-metadat* ]] ||
        fail "sidecar: cannot find the server process under buildah ($leaf)"
    kill -TERM "$leaf"
    wait_exit "$server_pid" 5 || fail "sidecar: server still running 5 s after SIGTERM" "$tmp/server.err"
    server_pid=
    [[ $exit_rc == 0 ]] || fail "sidecar: exit code $exit_rc after SIGTERM" "$tmp/server.err"
    if grep -qF -e "$SECRET" -e "$TOKEN" "$tmp/server.out" "$tmp/server.err"; then
        fail "sidecar: a credential appears in the output" "$tmp/server.err"
    fi
    pass "sidecar manifest in image: '${m_cmd[*]}', ${#m_names[@]} variables known, /healthz, auth, /reload_metadata, /metrics; SIGTERM exit 0 in ${exit_ms} ms"
}

# As PID 1 of its own namespace the kernel drops signals that have no
# handler, which is how a container runtime starts the binary.
check_pid1_sigterm() {
    port=$(free_port)
    unshare --pid --fork --kill-child "$BIN" server --bind 127.0.0.1 --port "$port" \
        --hasura-endpoint "$fake_url" >"$tmp/pid1.out" 2>"$tmp/pid1.err" &
    server_pid=$!
    local status leaf
    for _ in $(seq 100); do
        status=$(http_status GET /healthz)
        [[ $status == 200 ]] && break
        kill -0 "$server_pid" 2>/dev/null || fail "pid 1: server exited" "$tmp/pid1.err"
        sleep 0.1
    done
    [[ $status == 200 ]] || fail "pid 1: /healthz answered $status" "$tmp/pid1.err"
    leaf=$(leaf_pid "$server_pid")
    grep -q '^NSpid:.*[[:space:]]1$' "/proc/$leaf/status" 2>/dev/null ||
        fail "pid 1: the server is not pid 1 of its namespace ($leaf)"
    kill -TERM "$leaf"
    wait_exit "$server_pid" 5 || fail "pid 1: server still running 5 s after SIGTERM" "$tmp/pid1.err"
    server_pid=
    [[ $exit_rc == 0 ]] || fail "pid 1: exit code $exit_rc after SIGTERM" "$tmp/pid1.err"
    pass "server as pid 1: idle SIGTERM exit 0 in ${exit_ms} ms"
}

# --- run ---------------------------------------------------------------------

check_static_binary
check_binary_size
build_image
check_image_size
check_image_config

ctr=$(bh from "$image_id")
check_version
check_reload_http
check_reload_inconsistent
check_reload_https
check_manifest_schemas
check_cronjob_manifest
check_sidecar_manifest
check_pid1_sigterm

echo "image.sh: took $((SECONDS - started)) s"
printf 'image.sh: %d passed, 0 failed\n' "$passed"
