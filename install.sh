#!/usr/bin/env bash
# Set up carto-installer in ./.venv and start it.
#
#   ./install.sh [ARGS...]              install (first run) and start `carto-installer ARGS`
#   ./install.sh --download-wheels DIR  save every wheel needed, ours included, into DIR
#   ./install.sh --offline DIR [ARGS]   install from DIR only (no package index), then start
#   ./install.sh -h | --help            this help, then carto-installer's commands
#
# Re-running is quick: nothing is reinstalled unless the project's files changed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv="$here/.venv"

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

# Run a command; show its output only when it fails (pip is chatty).
quietly() {
    local log
    log=$(mktemp)
    if "$@" >"$log" 2>&1; then
        rm -f "$log"
        return 0
    fi
    grep -v "^WARNING: Location" "$log" | tail -n 40 >&2
    rm -f "$log"
    return 1
}

# Run pip, showing one line per package as it goes (the first run takes a while), and its
# whole output only when it fails.
with_progress() {
    local log started=$SECONDS
    log=$(mktemp)
    if "$@" --progress-bar off 2>&1 | tee "$log" | while read -r word name _rest; do
            case $word in
                Collecting|Processing)
                    name=${name##*/}  # a wheel file: its project name
                    case $name in *.whl|*.tar.gz|*.zip) name=${name%%-[0-9]*} ;; esac
                    printf 'install.sh:   %s\n' "${name%%[<>=!~;[]*}" >&2 ;;
                Installing)
                    line="$word $name $_rest"
                    case $line in
                        "Installing collected packages:"*)
                            say "  installing $(printf '%s' "${line#*:}" | tr ',' '\n' \
                                | wc -l) packages" ;;
                    esac ;;
            esac
        done; then
        rm -f "$log"
        say "  done in $((SECONDS - started)) s"
        return 0
    fi
    grep -v "^WARNING: Location" "$log" | tail -n 40 >&2
    rm -f "$log"
    return 1
}

# install.sh's own options, then carto-installer's, read from this folder without installing
# anything (the command line needs only the standard library).
show_help() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    local python
    if python=$(find_python); then
        printf '\nCommands (./install.sh ARGS runs carto-installer ARGS):\n\n'
        "$python" -S -c 'import sys; sys.path.insert(0, sys.argv[1])
from installer.cli import build_parser
build_parser().print_help()' "$here"
    fi
}

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3 python; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
            2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# What the installed copy was built from: when this changes, reinstall.
fingerprint() {
    local mode=$1
    {
        printf '%s\n' "$mode"
        cat "$here/pyproject.toml"
        if [ "$mode" != editable ]; then
            find "$here/installer" "$here/screens" "$here/assets" -type f ! -name '*.pyc' \
                -print0 2>/dev/null | sort -z | xargs -0 cat 2>/dev/null
        fi
    } | sha256sum | cut -d' ' -f1
}

make_venv() {
    [ -x "$venv/bin/python" ] && return 0
    local python
    python=$(find_python) || die "Python 3.11 or newer is required and was not found.
  Install it (Ubuntu/Debian: sudo apt-get install -y python3 python3-venv), or set PYTHON=/path/to/python3.11"
    say "creating a virtual environment in $venv with $python"
    "$python" -m venv "$venv" 2>/dev/null || {
        rm -rf "$venv"
        die "could not create a virtual environment.
  Install venv support (Ubuntu/Debian: sudo apt-get install -y python3-venv) and run ./install.sh again"
    }
}

download_wheels() {
    local dir=$1
    mkdir -p "$dir"
    make_venv
    say "saving every wheel needed into $dir (for machines without internet)"
    "$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    # One command resolves our wheel and all its dependencies as wheels.
    quietly "$venv/bin/python" -m pip wheel --wheel-dir "$dir" "$here" \
        || die "downloading the wheels failed (see the messages above)"
    say "done: $(find "$dir" -name '*.whl' | wc -l) wheels in $dir"
    say "copy $dir and this folder to the target, then run: ./install.sh --offline $dir"
}

install_project() {
    local offline_dir=${1:-}
    local mode=editable stamp_file="$venv/.carto-installer-stamp"
    [ -n "$offline_dir" ] && mode="offline"
    make_venv
    local want
    want=$(fingerprint "$mode")
    if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want" ] \
        && [ -x "$venv/bin/carto-installer" ]; then
        return 0
    fi
    if [ -n "$offline_dir" ]; then
        [ -d "$offline_dir" ] || die "--offline: $offline_dir is not a folder of wheels"
        say "installing from $offline_dir (no package index)"
        PIP_CONFIG_FILE=/dev/null with_progress "$venv/bin/python" -m pip install --no-index \
            --find-links "$offline_dir" carto-installer \
            || die "installing from $offline_dir failed: was it made with ./install.sh --download-wheels on the same Python version and CPU type?"
    else
        say "installing carto-installer and its dependencies (first run only: a minute or so)"
        say "  updating pip"
        "$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
        with_progress "$venv/bin/python" -m pip install -e "$here" \
            || die "installing failed (no access to a package index? use --offline DIR)"
    fi
    printf '%s\n' "$want" >"$stamp_file"
}

case "${1:-}" in
    --download-wheels)
        [ $# -ge 2 ] || die "usage: ./install.sh --download-wheels DIR"
        download_wheels "$2"
        exit 0
        ;;
    --offline)
        [ $# -ge 2 ] || die "usage: ./install.sh --offline DIR [carto-installer arguments]"
        dir=$(cd "$2" 2>/dev/null && pwd) || die "--offline: $2 is not a folder"
        shift 2
        install_project "$dir"
        ;;
    -h|--help|--install-help)
        show_help
        exit 0
        ;;
    *)
        install_project
        ;;
esac

exec "$venv/bin/carto-installer" "$@"
