#!/bin/sh
# Installs what warren needs on a Debian or Ubuntu machine, and nothing it already has:
#   - rabbitmq-server (warren starts private nodes from it; it also brings Erlang),
#   - a C compiler, pkg-config and OpenSSL's headers (TLS code of the client libraries),
#   - Python's venv (the tests validate the Kubernetes manifests with tools from PyPI),
#   - Rust, through rustup, when cargo is missing.
# Safe to run again: every step checks first. Needs root or sudo for apt-get.
set -eu

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi

missing=""
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && ! command -v rabbitmq-server >/dev/null 2>&1; then
    missing="$missing rabbitmq-server"
fi
if ! command -v cc >/dev/null 2>&1; then
    missing="$missing gcc libc6-dev"
fi
if ! command -v pkg-config >/dev/null 2>&1; then
    missing="$missing pkg-config"
fi
if ! dpkg -s libssl-dev >/dev/null 2>&1; then
    missing="$missing libssl-dev"
fi
# scripts/check-deploy.sh validates the Kubernetes manifests with tools from PyPI, in a
# virtual environment.
if ! command -v python3 >/dev/null 2>&1; then
    missing="$missing python3 python3-venv"
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing="$missing python3-venv"
fi
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    command -v curl >/dev/null 2>&1 || missing="$missing curl ca-certificates"
fi

if [ -n "$missing" ]; then
    echo "install.sh: installing$missing"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
    # Debian starts a system RabbitMQ on port 5672 after installing it. warren does not use
    # it (it runs private nodes on free ports); stop it with `sudo systemctl stop rabbitmq-server`.
else
    echo "install.sh: rabbitmq-server, a C compiler, pkg-config, libssl-dev and python3-venv are already installed"
fi

if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    echo "install.sh: installing Rust with rustup"
    # Downloaded first, then run: piped into sh, a failed download ran an empty script,
    # and this script went on to say "ready" with no Rust.
    rustup_init="$(mktemp)"
    trap 'rm -f "$rustup_init"' EXIT
    # sh.rustup.rs serves the same script as static.rust-lang.org, which some networks
    # reach when they cannot resolve sh.rustup.rs: the second is tried when the first fails.
    if ! curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs -o "$rustup_init" &&
        ! curl --proto '=https' --tlsv1.2 -sSf https://static.rust-lang.org/rustup/rustup-init.sh -o "$rustup_init"; then
        echo "install.sh: could not download rustup from https://sh.rustup.rs or https://static.rust-lang.org; install Rust (https://rustup.rs) and run this again" >&2
        exit 1
    fi
    sh "$rustup_init" -y --profile minimal --component clippy,rustfmt
fi
echo "install.sh: ready"
