#!/usr/bin/env bash
# Install the Debian packages behind the given commands when they are missing (as root), or say what to do.
# Usage: scripts/ensure-system-packages.sh redis-server:redis-server chromium:chromium npm:"nodejs npm"
# A command with a slash is a path pattern instead (programs off PATH): '/usr/lib/postgresql/*/bin/initdb:postgresql'
set -euo pipefail
missing_pkgs=()
for spec in "$@"; do
  cmd=${spec%%:*}; pkgs=${spec#*:}
  if [[ $cmd == */* ]]; then
    compgen -G "$cmd" >/dev/null || missing_pkgs+=($pkgs)
  else
    command -v "$cmd" >/dev/null 2>&1 || missing_pkgs+=($pkgs)
  fi
done
[ ${#missing_pkgs[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing_pkgs[*]} — install them with: sudo apt-get install ${missing_pkgs[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing_pkgs[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
