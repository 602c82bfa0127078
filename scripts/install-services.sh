#!/usr/bin/env bash
# Installs the Debian packages that the integration tests' real services need:
# ZooKeeper (run with `java`), librdkafka's mock cluster (built with gcc into a
# Kafka-protocol broker) and kcat; Chromium for the status page's browser test
# (driven by playwright-core, which downloads no browser of its own) and curl for
# the /metrics test. Quick and silent-ish when all are present.
set -euo pipefail

needed=(zookeeper librdkafka-dev kcat gcc chromium curl)
if ! command -v java >/dev/null 2>&1; then
  needed+=(default-jre-headless)
fi

missing=()
for pkg in "${needed[@]}"; do
  if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-services: all present (${needed[*]})"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-services: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  echo "install-services: apt-get failed installing: ${missing[*]}" >&2
  exit 1
fi
rm -f "$log"
echo "install-services: installed ${missing[*]}"
