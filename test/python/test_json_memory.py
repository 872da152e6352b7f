#!/usr/bin/env python3
"""The JSON transport from Python, standard library only: attach, fill TX through guest memory
writes, map the buffers, discover partitions through RX, and the memory checks (a fault, a bad
length). Prints TAP lines ("ok N - ..."); test/python-json.test.ts counts them. Usage: BASE_URL.
The FF-A numbers come from proto/ffa, as JSON in RSPMC_FFA (the tap test sets it), or from
`node dist/bench/c-ffa-header.js --json` when run by hand after `npm run build`."""
import json
import os
import struct
import subprocess
import sys
import urllib.error
import urllib.request

BASE = sys.argv[1]
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FFA = json.loads(
    os.environ.get("RSPMC_FFA")
    or subprocess.run(["node", os.path.join(REPO, "dist", "bench", "c-ffa-header.js"), "--json"], check=True, capture_output=True, text=True).stdout
)
FFA_ERROR, FFA_SUCCESS_32, FFA_SUCCESS_64 = FFA["FFA_ERROR"], FFA["FFA_SUCCESS_32"], FFA["FFA_SUCCESS_64"]
RXTX_MAP_64, PARTITION_INFO_GET, RX_RELEASE = FFA["FFA_RXTX_MAP_64"], FFA["FFA_PARTITION_INFO_GET"], FFA["FFA_RX_RELEASE"]
FFA_VERSION, FFA_VERSION_1_2, PAGE = FFA["FFA_VERSION"], FFA["FFA_VERSION_1_2"], FFA["FFA_PAGE_SIZE"]
n = 0
failed = 0


def post(path, body):
    req = urllib.request.Request(BASE + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def ok(cond, what):
    global n, failed
    n += 1
    failed += 0 if cond else 1
    print(("ok" if cond else "not ok"), n, "-", what, flush=True)


def smc(s, *x):
    status, r = post("/v1/smccc", {"session": s, "x": [hex(v) for v in x]})
    assert status == 200, r
    return [int(v, 16) for v in r["x"]]


status, a = post("/v1/attach", {"name": "py"})
ok(status == 200, "attach")
s, ram = a["session"], int(a["ramBase"], 16)
tx, rx = ram, ram + PAGE

# A chosen RAM base is honoured; one overlapping another window is refused with why.
status, b = post("/v1/attach", {"name": "py2", "ramBase": "0x7000000000", "ramBytes": "0x10000"})
ok(status == 200 and b["ramBase"] == "0x7000000000", "a chosen ramBase is honoured")
status, r = post("/v1/attach", {"name": "py3", "ramBase": hex(ram), "ramBytes": "0x1000"})
ok(status == 409 and "overlaps" in r["message"], "an overlapping ramBase is refused (409): " + r.get("message", ""))
post("/v1/detach", {"session": b["session"]})

# Guest memory write then read back, through the JSON transport.
status, _ = post("/v1/memory/write", {"session": s, "address": hex(tx), "data": "deadbeef"})
ok(status == 200, "memory/write answers 200")
status, r = post("/v1/memory/read", {"session": s, "address": hex(tx), "length": 4})
ok(status == 200 and r["data"] == "deadbeef", "memory/read gives back what was written")

smc(s, FFA_VERSION, FFA_VERSION_1_2)  # v1.2: PARTITION_INFO_GET gives the descriptor size
x = smc(s, RXTX_MAP_64, tx, rx, 1)
ok(x[0] in (FFA_SUCCESS_32, FFA_SUCCESS_64), "RXTX_MAP")
x = smc(s, PARTITION_INFO_GET)
count, size = x[2], x[3]
ok(x[0] != FFA_ERROR and count >= 1, "PARTITION_INFO_GET counts partitions")
status, r = post("/v1/memory/read", {"session": s, "address": hex(rx), "length": count * size})
ids = [struct.unpack_from("<H", bytes.fromhex(r["data"]), i * size)[0] for i in range(count)]
ok(status == 200 and 0x8001 in ids, "the descriptors read from RX name SP 0x8001: " + ",".join(hex(i) for i in ids))
smc(s, RX_RELEASE)

# The writes the gRPC WriteMemory refuses are refused here too.
status, r = post("/v1/memory/write", {"session": s, "address": hex(rx), "data": "00"})
ok(status == 403 and r["error"] == "PERMISSION_DENIED", "writing the RX buffer is a fault (403): " + r.get("message", ""))
status, r = post("/v1/memory/read", {"session": s, "address": hex(0x1000), "length": 4})
ok(status == 403, "reading outside the endpoint's memory is a fault (403)")
status, r = post("/v1/memory/read", {"session": s, "address": hex(tx), "length": 0})
ok(status == 400, "a zero-length read is refused (400)")
status, r = post("/v1/memory/read", {"session": "nope", "address": hex(tx), "length": 4})
ok(status == 401, "an unknown session is 401")
status, _ = post("/v1/detach", {"session": s})
ok(status == 200, "detach")
print("1..%d" % n)
sys.exit(1 if failed else 0)
