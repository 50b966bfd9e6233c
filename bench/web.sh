#!/usr/bin/env bash
# The web console's server time per page at scale: 1,000 modules x 20 versions (with their
# audit trails and file indexes), 20 templates serving 5 modules each, 10,000 instances
# (90 % in sync, 5 % outdated, 3 % failed, 2 % never reported), on SQLite.
# Targets: median <= 20 ms, p99 <= 50 ms per page.
#
#   bench/web.sh [RUNS] [REQUESTS]     (defaults 5 runs x 40 requests per page; needs curl)
#   MODULE_WEBHOOK=path/to/module-webhook bench/web.sh   (another build; default: release)
#
# The database is seeded with SQL (the schema from the receiver's own migrations, created by
# a first start); each page is then asked for REQUESTS times per run over one keep-alive
# connection, logged in with a read token. Printed per page: the median of the runs'
# medians, the median of their p99s, and the min/max over every request.
set -euo pipefail
runs=${1:-5}
requests=${2:-40}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
command -v curl >/dev/null || { echo "bench/web.sh needs curl: apt-get install -y curl" >&2; exit 1; }

if [ -n "${MODULE_WEBHOOK:-}" ]; then
  mw=$MODULE_WEBHOOK
else
  cargo build --release -q -p module-webhook --manifest-path "$here/Cargo.toml"
  mw="$here/target/release/module-webhook"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/mw-web.XXXXXX")
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
port=$(free_port)
read_token="bench-read-token-0123456789"
cat > "$work/web.toml" <<TOML
listen = "127.0.0.1:$port"
database_url = "sqlite://$work/web.db"
data_dir = "$work/data"
[registry]
url = "http://127.0.0.1:9"
repositories = ["acme/*"]
[hooks]
gitea_secrets = ["fixture-webhook-secret"]
[[api.tokens]]
name = "bench"
token = "$read_token"
role = "read"
[ingest]
reconcile_interval_secs = 3600
[fleet]
stale_after_secs = 86400
[web]
sample_interval_secs = 3600
TOML

start() {
  RUST_LOG=warn DATABASE_URL= "$mw" serve --config "$work/web.toml" 2>>"$work/serve.log" &
  pid=$!
  for _ in $(seq 200); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && return; sleep 0.1; done
  echo "the receiver did not start:" >&2; cat "$work/serve.log" >&2; exit 1
}

echo "== schema (first start), then seeding"
start
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
python3 - "$work/web.db" <<'PY'
import hashlib, json, random, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
random.seed(7)
now = int(time.time() * 1000)
h = lambda s: "sha256:" + hashlib.sha256(s.encode()).hexdigest()
stages = ["draft", "staging", "blessed", "live"]
MODULES, VERSIONS, TEMPLATES, INSTANCES = 1000, 20, 20, 10000
live = {}
rows, audit = [], []
for m in range(MODULES):
    name = f"m{m:04d}"
    db.execute("INSERT INTO modules (name, repository, created_at) VALUES (?, ?, ?)", (name, f"acme/{name}", now))
    for v in range(VERSIONS):
        ver = f"1.{v}.0"
        vid = f"v-{name}-{ver}"
        st = "yanked" if v == 3 else ("live" if v < 17 else stages[v - 17 + 1])
        created = now - (VERSIONS - v) * 3_600_000
        manifest = f"schema_version: 1\nidentity:\n  name: {name}\n  category: userland\n  variety: subscription\n  description: bench module {name}\npackage_spec:\n  - pkg-{name}\nfile_spec:\n  include: ['/srv/**']\n"
        index = {"schema_version": 2, "module": name, "entries":
                 [{"path": "rootfs", "mode": "0755", "type": "dir"}, {"path": "rootfs/srv", "mode": "0755", "type": "dir"}] +
                 [{"path": f"rootfs/srv/f{i}.conf", "mode": "0644", "type": "file", "size": 100 + i, "fsverity": h(f"{vid}{i}")} for i in range(30)]}
        rows.append((vid, name, ver, st, f"acme/{name}", f"v{ver}", h("m" + vid), h("c" + vid), 1,
                     "https://git.example.org/acme/" + name, "0123456789abcdef", "https://git.example.org/acme/" + name + "@refs/tags/v" + ver,
                     "https://gitea.example.org", json.dumps(index), manifest, created, created + 60_000))
        prev = None
        for i, s in enumerate(["draft", "staging", "blessed", "live"][: (4 if st in ("live", "yanked") else stages.index(st) + 1)]):
            audit.append((f"a-{vid}-{i}", created * 1000 + i, vid, name, created + i * 1000, "api:ops" if i else "ingest", "api" if i else "ingest",
                          "transition" if i else "ingested", prev, s, None, json.dumps({"approvals": [], "checks": {}})))
            prev = s
        if st == "live":
            live[name] = (ver, h("m" + vid), h("c" + vid))
db.executemany("INSERT INTO versions (id, module, version, lifecycle, repository, tag, manifest_digest, composefs_digest, composefs_format, source_repository, source_commit, signer_identity, signer_issuer, file_index, manifest, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
db.executemany("INSERT INTO audit (id, seq, version_id, module, at, actor, via, action, from_state, to_state, reason, evidence) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", audit)
states = {}
for t in range(TEMPLATES):
    tid = f"t{t:02d}"
    db.execute("INSERT INTO templates (id, platform, description, created_at, updated_at) VALUES (?, 'bench', 'bench template', ?, ?)", (tid, now, now))
    mods = [f"m{(t * 5 + i) % MODULES:04d}" for i in range(5)]
    for m in mods:
        db.execute("INSERT INTO assignments (template_id, module, requirement, created_at) VALUES (?, ?, NULL, ?)", (tid, m, now))
    doc = {"schema_version": 2, "template_id": tid, "sequence": 1, "issued_at": now // 1000, "expires_at": now // 1000 + 7 * 86400,
           "platform": "bench", "modules": [{"name": m, "version": live[m][0], "reference": f"127.0.0.1:9/acme/{m}@{live[m][1]}",
           "manifest_digest": live[m][1], "composefs_digest": live[m][2], "signer": {"require_tlog": False}} for m in mods],
           "composefs_digest": h("merged" + tid), "composefs_format": 1}
    sid = h("state" + tid)
    db.execute("INSERT INTO desired_states (template_id, state_id, document, envelope, computed_at, sequence, expires_at) VALUES (?, ?, ?, '{}', ?, 1, ?)",
               (tid, sid, json.dumps(doc), now, now // 1000 + 7 * 86400))
    db.execute("INSERT INTO served_states (template_id, state_id, modules, served_at) VALUES (?, ?, 5, ?)", (tid, sid, now))
    states[tid] = (sid, {m: live[m][2] for m in mods}, h("merged" + tid))
inst = []
for i in range(INSTANCES):
    tid = f"t{i % TEMPLATES:02d}"
    sid, running, merged = states[tid]
    r = random.random()
    running = dict(sorted(running.items()))
    status, at = "applied", now - random.randint(0, 600_000)
    if r < 0.05:
        m = next(iter(running)); running[m] = h("c" + f"v-{m}-1.0.0")
    elif r < 0.08:
        status = "failed"
    elif r < 0.10:
        status, at, sid, running = None, None, None, None
    inst.append((f"node-{i:06d}", tid, hashlib.sha256(b"x").hexdigest(), now, at, sid,
                 None if running is None else json.dumps(running, separators=(",", ":")), merged if status else None, status, "bench"))
db.executemany("INSERT INTO instances (id, template_id, token_sha256, created_at, last_report_at, reported_state_id, running_module_digests, composefs_digest, status, message) VALUES (?,?,?,?,?,?,?,?,?,?)", inst)
db.commit()
print(f"{MODULES} modules, {len(rows)} versions, {len(audit)} audit rows, {TEMPLATES} templates, {INSTANCES} instances")
PY
start
sleep 3   # the first fleet sample, taken at start

python3 - "http://127.0.0.1:$port" "$read_token" "$runs" "$requests" <<'PY'
import http.client, statistics, sys, time, urllib.parse
base, token, runs, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port)
c.request("POST", "/login", urllib.parse.urlencode({"token": token}), {"Content-Type": "application/x-www-form-urlencoded"})
r = c.getresponse(); r.read()
assert r.status == 303, r.status
cookie = r.getheader("Set-Cookie").split(";")[0]
pages = ["/", "/?after=m0500", "/modules/m0500", "/versions/v-m0500-1.16.0", "/versions/v-m0500-1.16.0?path=rootfs/srv",
         "/templates", "/templates/t05", "/fleet", "/fleet?state=outdated", "/instances/node-005000",
         "/modules/m0001/adoption.svg", "/fleet/drift.svg"]
def p99(xs):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
print(f"{'page':44} {'median':>8} {'p99':>8} {'min':>8} {'max':>8}   (ms; {runs} runs x {n} requests)")
missed = []
for p in pages:
    medians, p99s, every = [], [], []
    for _ in range(runs):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            c.request("GET", p, headers={"Cookie": cookie})
            r = c.getresponse(); body = r.read()
            times.append((time.perf_counter() - t) * 1000)
            assert r.status == 200, (p, r.status, body[:300])
        medians.append(statistics.median(times)); p99s.append(p99(times)); every += times
    med, q99 = statistics.median(medians), statistics.median(p99s)
    flag = "" if med <= 20 and q99 <= 50 else "  MISSED"
    if flag: missed.append(p)
    print(f"{p:44} {med:8.2f} {q99:8.2f} {min(every):8.2f} {max(every):8.2f}{flag}")
print("targets: median <= 20 ms, p99 <= 50 ms:", "met on every page" if not missed else "missed on " + ", ".join(missed))
PY
