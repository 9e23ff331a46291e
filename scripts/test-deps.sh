#!/usr/bin/env bash
# Installs what `make test` needs on Debian/Ubuntu: redis-server,
# mosquitto and its clients, snmpd/snmp, ping. As root it uses apt; otherwise it
# says what is missing and how to install it.
set -euo pipefail

need=()
command -v redis-server   >/dev/null || need+=(redis-server)
command -v mosquitto_pub  >/dev/null || need+=(mosquitto-clients)
command -v mosquitto      >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v snmpd          >/dev/null || [ -x /usr/sbin/snmpd ] || need+=(snmpd)
command -v snmpget        >/dev/null || need+=(snmp)
command -v ping           >/dev/null || need+=(iputils-ping)

if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
	echo "test-deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	# Debian starts the daemons on install; the tests run their own.
	for svc in redis-server mosquitto snmpd; do
		(command -v systemctl >/dev/null && systemctl disable --now "$svc" 2>/dev/null) || service "$svc" stop 2>/dev/null || true
	done
	exit 0
fi
echo "test-deps: missing ${need[*]}." >&2
echo "  install with: sudo apt-get install ${need[*]}" >&2
exit 1
