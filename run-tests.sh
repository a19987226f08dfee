#!/usr/bin/env bash
# Every check of this repository, on a fresh Linux machine that has only a Rust toolchain:
# installs what the tests need when it is missing (with apt-get), then checks formatting,
# lints and runs the whole test suite. CI runs this very script.
#
#   ./run-tests.sh                 install what is missing, then run every check
#   ./run-tests.sh --no-install    never install; fail if something is missing
set -euo pipefail
cd "$(dirname "$0")"

# What the tests run besides cargo, and the Debian/Ubuntu package of each. The redis
# backend's tests start their own redis-server (they fail, not skip, without it); one test
# puts a worker on a second "host" with `ip netns` (iproute2); `openssl` makes the
# certificates of the TLS broker test.
COMMANDS=(redis-server ip openssl)
PACKAGES=(redis-server iproute2 openssl)

install=yes
for arg in "$@"; do
  case "$arg" in
    --no-install) install=no ;;
    -h | --help)
      sed -n '2,7s/^# \{0,1\}//p' "$0"
      exit 0
      ;;
    *)
      echo "run-tests.sh: unknown argument '$arg' (try --help)" >&2
      exit 2
      ;;
  esac
done

missing=()
for i in "${!COMMANDS[@]}"; do
  if ! command -v "${COMMANDS[$i]}" >/dev/null 2>&1; then
    missing+=("${PACKAGES[$i]}")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$install" = no ]; then
    echo "run-tests.sh: the tests need these packages, which are missing: ${missing[*]}" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "run-tests.sh: the tests need ${missing[*]} (Debian/Ubuntu package names);" \
      "this script installs them only with apt-get: install them with your system's" \
      "package manager and run it again" >&2
    exit 1
  fi
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "run-tests.sh: installing ${missing[*]} needs root, and sudo is not installed:" \
        "run 'apt-get install ${missing[*]}' as root, then this script again" >&2
      exit 1
    fi
    sudo=(sudo)
  fi
  echo "run-tests.sh: installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  ${sudo[@]+"${sudo[@]}"} apt-get update -qq
  ${sudo[@]+"${sudo[@]}"} apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "run-tests.sh: cargo is not installed: this project needs a Rust toolchain" \
    "(https://rustup.rs)" >&2
  exit 1
fi
# rustup's minimal profile leaves out rustfmt and clippy.
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

cargo fmt --all -- --check
# Every crate of the workspace, the library with and without its optional features.
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo clippy -p workpool --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --all-features

# A test that cannot run here (e.g. network namespaces need root) says so with a line that
# starts "SKIPPED"; those lines are repeated at the end, where nobody can miss them.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if [ -t 2 ]; then export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-always}"; fi
set +e
cargo test --workspace --all-features 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if grep -q "^SKIPPED " "$log"; then
  echo >&2
  echo "run-tests.sh: tests that did not run on this machine:" >&2
  grep "^SKIPPED " "$log" >&2
fi
if [ "$status" -ne 0 ]; then
  echo "run-tests.sh: cargo test failed" >&2
  exit "$status"
fi
echo "run-tests.sh: every check passed" >&2
