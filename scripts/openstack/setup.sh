#!/usr/bin/env bash
# Sets up a real Keystone + Barbican + Glance under $OSK (env.sh): a venv with
# the pinned services (kept between runs, rebuilt when requirements change),
# fresh configs, SQLite databases and a bootstrapped Keystone with the
# key-manager and image endpoints. Data of an earlier setup is wiped.
# Writes $OSK/admin.env with the admin's OS_* variables.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/common.sh
source "$HERE/../lib/common.sh"
# shellcheck source=scripts/openstack/env.sh
source "$HERE/env.sh"
bash "$HERE/stop.sh" >/dev/null 2>&1 || true
mkdir -p "$OSK"/{etc/keystone,etc/barbican,etc/glance,log,run,home}
chmod 700 "$OSK"

# ---- 1. the venv (uWSGI builds from source: gcc and the Python headers)
stamp="$OS_VENV/.imgseal-requirements.sha256"
want=$(cat "$HERE/requirements.txt" "$HERE/constraints.txt" | sha256sum | cut -d' ' -f1)
if [[ ! -x "$OS_VENV/bin/uwsgi" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    py=$(command -v python3) || die "python3 not found"
    "$py" -c 'import venv, ensurepip, sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' \
        || ensure_packages python3-venv python3-dev
    log "building the OpenStack venv (keystone, barbican, glance; ~1 min; output in $SETUP_LOG)"
    rm -rf "$OS_VENV"
    python3 -m venv "$OS_VENV"
    quietly "$SETUP_LOG" "$OS_VENV/bin/pip" install -q --upgrade pip setuptools wheel \
        || die "pip could not upgrade itself in $OS_VENV"
    quietly "$SETUP_LOG" "$OS_VENV/bin/pip" install -q -r "$HERE/requirements.txt" -c "$HERE/constraints.txt" \
        || die "pip could not install the OpenStack services"
    echo "$want" >"$stamp"
fi

rm -rf "$OSK/data"
mkdir -p "$OSK"/data/{images,staging,tasks}
admin_pass=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
service_pass=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')

# ---- 2. configs
cat >"$OSK/etc/keystone/keystone.conf" <<CONF
[DEFAULT]
log_file = $OSK/log/keystone.log
[database]
connection = sqlite:///$OSK/data/keystone.sqlite?timeout=60
[token]
provider = fernet
[fernet_tokens]
key_repository = $OSK/data/keystone-fernet
[fernet_receipts]
key_repository = $OSK/data/keystone-fernet
[credential]
key_repository = $OSK/data/keystone-credential
CONF

kek=$("$OS_VENV/bin/python" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')
cat >"$OSK/etc/barbican/barbican.conf" <<CONF
[DEFAULT]
host_href = http://127.0.0.1:$BB_PORT
log_file = $OSK/log/barbican.log
db_auto_create = False
[database]
connection = sqlite:///$OSK/data/barbican.sqlite?timeout=60
[secretstore]
enabled_secretstore_plugins = store_crypto
[crypto]
enabled_crypto_plugins = simple_crypto
[simple_crypto_plugin]
kek = $kek
[keystone_authtoken]
www_authenticate_uri = http://127.0.0.1:$KS_PORT/v3
auth_url = http://127.0.0.1:$KS_PORT/v3
auth_type = password
username = barbican
password = $service_pass
user_domain_name = Default
project_name = service
project_domain_name = Default
service_token_roles_required = true
CONF
# barbican.api.app hard-codes /etc/barbican/barbican-api-paste.ini and reads its
# config at import time from ~/.barbican/: our own wsgi file, and HOME=$OSK/home.
cp "$OS_VENV/etc/barbican/barbican-api-paste.ini" "$OSK/etc/barbican/"
sed -i "s#/etc/barbican/#$OSK/etc/barbican/#g" "$OSK/etc/barbican/barbican-api-paste.ini"
ln -sfn "$OSK/etc/barbican" "$OSK/home/.barbican"
cat >"$OSK/etc/barbican/wsgi.py" <<CONF
from paste import deploy
application = deploy.loadapp('config:$OSK/etc/barbican/barbican-api-paste.ini')
CONF

cat >"$OSK/etc/glance/glance-api.conf" <<CONF
[DEFAULT]
log_file = $OSK/log/glance.log
enabled_backends = fs:file
worker_self_reference_url = http://127.0.0.1:$GL_PORT
[database]
connection = sqlite:///$OSK/data/glance.sqlite?timeout=60
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $OSK/data/images/
[os_glance_staging_store]
filesystem_store_datadir = $OSK/data/staging/
[os_glance_tasks_store]
filesystem_store_datadir = $OSK/data/tasks/
[paste_deploy]
flavor = keystone
[keystone_authtoken]
www_authenticate_uri = http://127.0.0.1:$KS_PORT/v3
auth_url = http://127.0.0.1:$KS_PORT/v3
auth_type = password
username = glance
password = $service_pass
user_domain_name = Default
project_name = service
project_domain_name = Default
# castellan, inside Glance's signature check, reads certificates from Barbican
# with the user's token, re-scoped at this Keystone.
[key_manager]
backend = barbican
[barbican]
auth_endpoint = http://127.0.0.1:$KS_PORT/v3
barbican_endpoint = http://127.0.0.1:$BB_PORT
barbican_api_version = v1
CONF
cp "$OS_VENV/etc/glance/glance-api-paste.ini" "$OSK/etc/glance/"

# ---- 3. databases, Keystone bootstrap
ks=(--config-file "$OSK/etc/keystone/keystone.conf")
{
    "$OS_VENV/bin/keystone-manage" "${ks[@]}" db_sync
    "$OS_VENV/bin/keystone-manage" "${ks[@]}" fernet_setup --keystone-user root --keystone-group root
    "$OS_VENV/bin/keystone-manage" "${ks[@]}" credential_setup --keystone-user root --keystone-group root
    "$OS_VENV/bin/keystone-manage" "${ks[@]}" bootstrap --bootstrap-password "$admin_pass" \
        --bootstrap-region-id RegionOne \
        --bootstrap-public-url "http://127.0.0.1:$KS_PORT/v3" \
        --bootstrap-internal-url "http://127.0.0.1:$KS_PORT/v3" \
        --bootstrap-admin-url "http://127.0.0.1:$KS_PORT/v3"
    HOME=$OSK/home "$OS_VENV/bin/barbican-manage" db upgrade
    "$OS_VENV/bin/glance-manage" --config-file "$OSK/etc/glance/glance-api.conf" db_sync
    # Tests run in parallel: with SQLite's default rollback journal a reader
    # blocks a writer, and a write that waits 5 s fails ("database is locked",
    # a Barbican 500). WAL lets readers and one writer proceed together; the
    # ?timeout=60 above lets writers queue instead of failing.
    for db in keystone barbican glance; do
        "$OS_VENV/bin/python" -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' \
            "$OSK/data/$db.sqlite"
    done
} >"$OSK/log/setup.log" 2>&1 || die "setting up the databases failed (see $OSK/log/setup.log)"

# ---- TLS for one listener: Barbican also answers HTTPS on $BB_TLS_PORT with
# a certificate from a CA of this stack only (tests check OS_CACERT with it).
tls=$OSK/tls
rm -rf "$tls"
mkdir -p "$tls"
{
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=imgseal test stack CA" \
        -keyout "$tls/ca.key" -out "$tls/ca.pem"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$tls/server.key" -out "$tls/server.csr"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/san.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
        -days 30 -extfile "$tls/san.ext" -out "$tls/server.pem"
} >>"$OSK/log/setup.log" 2>&1 || die "making the stack's TLS certificates failed (see $OSK/log/setup.log)"

umask 077
cat >"$OS_STACK_ENV" <<CONF
export OS_AUTH_URL=http://127.0.0.1:$KS_PORT/v3
export OS_IDENTITY_API_VERSION=3
export OS_USERNAME=admin
export OS_PASSWORD=$admin_pass
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_REGION_NAME=RegionOne
export OS_INTERFACE=public
CONF

# ---- 4. service users, roles and the catalog (through the openstack CLI)
bash "$HERE/start.sh" keystone >/dev/null
(
    # shellcheck source=/dev/null
    source "$OS_STACK_ENV"
    os() { "$OS_VENV/bin/openstack" "$@" -f value -c id; }
    os project create --domain Default service
    for svc in barbican glance; do
        os user create --domain Default --password "$service_pass" "$svc"
        "$OS_VENV/bin/openstack" role add --project service --user "$svc" admin
        "$OS_VENV/bin/openstack" role add --project service --user "$svc" service
    done
    os role create creator
    os service create --name barbican key-manager
    os service create --name glance image
    for iface in public internal admin; do
        os endpoint create --region RegionOne key-manager "$iface" "http://127.0.0.1:$BB_PORT"
        os endpoint create --region RegionOne image "$iface" "http://127.0.0.1:$GL_PORT"
    done
) >>"$OSK/log/setup.log" 2>&1 || die "registering the services in Keystone failed (see $OSK/log/setup.log)"
bash "$HERE/stop.sh" >/dev/null
log "OpenStack stack set up under $OSK"
