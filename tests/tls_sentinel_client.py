#!/usr/bin/python3
"""A Sentinel-aware client over TLS, as an application would be (Debian's
python3-redis 4.3.4; run it with /usr/bin/python3, not a pyenv one).

Usage: tls_sentinel_client.py CA CERT KEY MASTER_NAME SENTINEL_IP:PORT...
Asks the Sentinels (over TLS) for MASTER_NAME's address, writes a key to the
master (over TLS), reads it back, and prints "ip port". Exits 1 on failure."""
import sys
import uuid

from redis.sentinel import Sentinel

ca, cert, key, name, *sentinels = sys.argv[1:]
tls = dict(ssl=True, ssl_ca_certs=ca, ssl_certfile=cert, ssl_keyfile=key, ssl_check_hostname=True)
hosts = [(h, int(p)) for h, p in (s.rsplit(":", 1) for s in sentinels)]
s = Sentinel(hosts, sentinel_kwargs=dict(tls, socket_timeout=2), socket_timeout=2, **tls)
ip, port = s.discover_master(name)
master = s.master_for(name)
value = uuid.uuid4().hex
master.set("tls-sentinel-client", value)
assert master.get("tls-sentinel-client").decode() == value, "read back a different value"
print(ip, port)
