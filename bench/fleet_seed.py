"""A real fleet for bench/fleet.sh, built the way an operator's would be (stdlib only).

  fleet_seed.py release WORK REGISTRY MODULES FILES
      MODULES module sources (fleet-000, ...), each FILES config files, its own systemd unit
      and two Debian packages pinned at the versions dpkg has installed on this host; every
      one released for real with `module-builder release` (built, signed with one cosign key,
      pushed to the registry), plus three more versions of the last module (promoted during
      the benchmark). Writes WORK/modules.json and WORK/modules.toml ([[modules]] policies).
  fleet_seed.py seed WORK URL TEMPLATES PER_TEMPLATE INSTANCES
      Against a receiver that ingests those pushes: waits until every version is ingested,
      promotes them through the API (1.0.0 to live, the extra versions to blessed), creates
      TEMPLATES templates of PER_TEMPLATE modules drawn from the live ones (the last module in
      exactly 10 of them), registers INSTANCES instances, reads each template's served state
      and has every instance report it: its modules' composefs digests, the merged digest,
      packages at the pinned versions and its units. Every 20th instance reports a failed
      unit, every 20th (offset 10) a package at another version: drift for the summary to find.
      Writes WORK/tokens ("id token state_id body_line") and WORK/bodies (a report per line).
  fleet_seed.py promote WORK PROMOTE_URL POLL_URL VERSION
      Promotes the last module's VERSION to live through PROMOTE_URL and polls every instance
      of the templates that use it through POLL_URL (If-None-Match of the state each holds)
      until all of them have been served the new state. Prints one JSON line of timings.
"""

import base64
import concurrent.futures as cf
import hashlib
import http.client
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.parse

OPS = "bench-operator-token-0123456789"
PROMOTED_USERS = 10  # templates that use the promoted (last) module
EXTRA_VERSIONS = ["1.0.1", "1.0.2", "1.0.3"]


def name_of(i):
    return f"fleet-{i:03d}"


# ---------------------------------------------------------------------------------------------
# HTTP: one keep-alive connection per thread.

_local = threading.local()


def request(url, method, path, token=OPS, body=None, headers=None):
    u = urllib.parse.urlparse(url)
    key = (u.hostname, u.port)
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    h = {"Authorization": "Bearer " + token}
    if body is not None:
        body = json.dumps(body)
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    for attempt in range(3):
        c = conns.get(key)
        if c is None:
            c = conns[key] = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        try:
            c.request(method, "/api/v1" + path, body, h)
            r = c.getresponse()
            data = r.read()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
        except (http.client.HTTPException, ConnectionError):
            c.close()
            conns.pop(key, None)
            if attempt == 2:
                raise


def call(url, method, path, body=None, ok=(200, 201), token=OPS):
    status, _, data = request(url, method, path, token, body)
    if status not in ok:
        raise SystemExit(f"{method} {path}: {status} {data[:500]!r}")
    return json.loads(data) if data else None


def parallel(fn, items, workers=4):
    with cf.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, items))


# ---------------------------------------------------------------------------------------------
# release

UNIT_DIRS = ("lib/systemd/system/", "usr/lib/systemd/system/")
UNIT_KINDS = (".service", ".socket", ".timer")
PROTECTED = ("systemd-", "dbus", "getty@", "user@", "emergency.", "rescue.")
NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
VERSION = re.compile(r"^([0-9]+:)?[0-9][A-Za-z0-9.+~:-]*$")


def package_units(pkg):
    """The units a package ships, as the agent finds them (agent/src/system/systemd.rs)."""
    for f in (f"/var/lib/dpkg/info/{pkg}.list", f"/var/lib/dpkg/info/{pkg}:amd64.list"):
        if os.path.exists(f):
            break
    else:
        return []
    units = []
    for line in open(f, encoding="utf-8", errors="replace"):
        p = line.strip().lstrip("/")
        for d in UNIT_DIRS:
            rest = p[len(d):] if p.startswith(d) else None
            if rest and "/" not in rest and rest.endswith(UNIT_KINDS) and "@." not in rest \
                    and not rest.startswith(PROTECTED):
                units.append(rest)
    return sorted(set(units))


def installed_packages():
    """Installed Debian packages and their versions, as dpkg reports them on this host."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n"],
                         check=True, capture_output=True, text=True).stdout
    pkgs = {}
    for line in out.splitlines():
        name, version, status = line.split("\t")
        if status.startswith("ii") and NAME.match(name) and VERSION.match(version):
            pkgs[name] = version
    return sorted(pkgs.items())


def write_module(root, name, version, packages, files):
    os.makedirs(f"{root}/rootfs/etc/{name}/conf.d", exist_ok=True)
    os.makedirs(f"{root}/rootfs/etc/systemd/system", exist_ok=True)
    specs = "".join(f'  - "{p}={v}"\n' for p, v in packages)
    with open(f"{root}/manifest.yaml", "w") as f:
        f.write(f"""schema_version: 1
identity:
  name: {name}
  category: userland
  variety: subscription
  description: Fleet benchmark module {name}
package_spec:
{specs}file_spec:
  include:
    - "/etc/{name}/**"
    - "/etc/systemd/system/{name}.service"
""")
    for j in range(files):
        with open(f"{root}/rootfs/etc/{name}/conf.d/{j:03d}.conf", "w") as f:
            f.write(f"# {name} {version}\nsetting_{j} = {hashlib.sha256(f'{name}{j}'.encode()).hexdigest()}\n")
    with open(f"{root}/rootfs/etc/{name}/version", "w") as f:
        f.write(version + "\n")
    with open(f"{root}/rootfs/etc/systemd/system/{name}.service", "w") as f:
        f.write(f"[Unit]\nDescription={name}\n\n[Service]\nExecStart=/bin/sleep infinity\n\n"
                f"[Install]\nWantedBy=multi-user.target\n")


def release(work, registry, count, files):
    mb = os.environ["MODULE_BUILDER"]
    env = dict(os.environ, COSIGN_PASSWORD="bench", DOCKER_CONFIG="/nonexistent")
    env.pop("SOURCE_DATE_EPOCH", None)
    subprocess.run([mb, "generate-key-pair", "--output-key-prefix", f"{work}/cosign"],
                   check=True, env=env, capture_output=True)
    pkgs = installed_packages()
    if len(pkgs) < 2 * count:
        raise SystemExit(f"only {len(pkgs)} installed packages for {count} modules")
    # Spread over the whole list, two distinct packages per module.
    step = len(pkgs) // (2 * count)
    modules = []
    for i in range(count):
        chosen = [pkgs[(2 * i) * step], pkgs[(2 * i + 1) * step]]
        name = name_of(i)
        units = [f"{name}.service"] + [u for p, _ in chosen for u in package_units(p)]
        modules.append({"name": name, "packages": dict(chosen), "units": sorted(set(units))})
    jobs = [(m, "1.0.0") for m in modules] + [(modules[-1], v) for v in EXTRA_VERSIONS]

    def one(job):
        m, version = job
        src = f"{work}/src/{m['name']}-{version}"
        write_module(src, m["name"], version, list(m["packages"].items()), files)
        r = subprocess.run([mb, "release", "--ref", f"{registry}/acme/{m['name']}", "--version", version,
                            "--key", f"{work}/cosign.key", src], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"module-builder release {m['name']} {version}: {r.stderr}")

    t = time.monotonic()
    parallel(one, jobs, workers=3)
    print(f"released {len(jobs)} signed versions of {count} modules in {time.monotonic() - t:.1f} s", flush=True)
    json.dump({"modules": modules, "extra_versions": EXTRA_VERSIONS}, open(f"{work}/modules.json", "w"))
    with open(f"{work}/modules.toml", "w") as f:
        for m in modules:
            f.write(f'[[modules]]\nname = "{m["name"]}"\nrepository = "acme/{m["name"]}"\n'
                    f'keys = ["{work}/cosign.pub"]\n')


# ---------------------------------------------------------------------------------------------
# seed


def step(what, fn):
    t = time.monotonic()
    r = fn()
    print(f"  {what}: {time.monotonic() - t:.1f} s", flush=True)
    return r


def seed(work, url, templates, per_template, instances):
    meta = json.load(open(f"{work}/modules.json"))
    modules = meta["modules"]
    names = [m["name"] for m in modules]
    last = names[-1]
    versions = [(n, "1.0.0") for n in names] + [(last, v) for v in meta["extra_versions"]]

    def ingested():
        deadline = time.monotonic() + 600
        waiting = list(versions)
        while waiting:
            left = []
            for n, v in waiting:
                s, _, data = request(url, "GET", f"/versions/v-{n}-{v}")
                if s == 200:
                    state = json.loads(data)["lifecycle_state"]
                    if state == "rejected":
                        raise SystemExit(f"{n} {v} was rejected: {data[:500]!r}")
                    if state != "pending_signature":
                        continue
                left.append((n, v))
            waiting = left
            if waiting:
                if time.monotonic() > deadline:
                    raise SystemExit(f"not ingested after 600 s: {waiting[:5]}...")
                time.sleep(0.5)

    step(f"{len(versions)} versions ingested from the registry", ingested)

    def promote(job):
        n, v, stages = job
        for to in stages:
            call(url, "POST", f"/versions/v-{n}-{v}/promote", {"to": to}, ok=(200,))

    jobs = [(n, "1.0.0", ["staging", "blessed", "live"]) for n in names]
    jobs += [(last, v, ["staging", "blessed"]) for v in meta["extra_versions"]]
    step(f"{len(names)} modules promoted to live through the API", lambda: parallel(promote, jobs))

    # Templates draw from every module but the last; the first ten also get the last one.
    rnd = random.Random(28)
    tids = [f"t-{t:03d}" for t in range(templates)]
    chosen = {}
    for k, t in enumerate(tids):
        pick = rnd.sample(names[:-1], per_template)
        if k < PROMOTED_USERS:
            pick[-1] = last
        chosen[t] = pick

    def template(t):
        call(url, "POST", "/templates", {"id": t, "platform": "bench"})
        for m in chosen[t]:
            r = call(url, "POST", f"/templates/{t}/assignments", {"module_name": m}, ok=(200,))
            if r["desired_state"]["blocked"]:
                raise SystemExit(f"{t}: {r}")

    step(f"{templates} templates x {per_template} assignments", lambda: parallel(template, tids, workers=6))

    ids = [f"n-{i:05d}" for i in range(instances)]
    tmpl_of = {i: tids[k % templates] for k, i in enumerate(ids)}
    tokens = dict(zip(ids, step(f"{instances} instances registered", lambda: parallel(
        lambda i: call(url, "POST", "/instances", {"id": i, "template_id": tmpl_of[i]})["token"], ids))))

    by_name = {m["name"]: m for m in modules}
    states, bodies, line_of = {}, [], {}

    def state(t):
        s, h, data = request(url, "GET", f"/templates/{t}/desired-state")
        assert s == 200, (t, s, data[:300])
        doc = json.loads(base64.b64decode(json.loads(data)["payload"]))
        return t, h["etag"].strip('"'), doc

    for t, sid, doc in step("served states read", lambda: parallel(state, tids)):
        got = sorted(m["name"] for m in doc["modules"])
        assert got == sorted(chosen[t]), (t, got, chosen[t])
        states[t] = sid
        base = {
            "desired_state_id": sid,
            "running_module_digests": {m["name"]: m["composefs_digest"] for m in doc["modules"]},
            "composefs_digest": doc["composefs_digest"],
            "status": "applied",
            "message": f"applied generation {doc['sequence']}",
            "modules": {
                m["name"]: {
                    # What dpkg on this host says of each package the module pins.
                    "packages": {p.split("=")[0]: by_name[m["name"]]["packages"][p.split("=")[0]]
                                 for p in m.get("packages", [])},
                    "units": {u: "active" for u in by_name[m["name"]]["units"]},
                } for m in doc["modules"]
            },
        }
        failed = json.loads(json.dumps(base))
        first = doc["modules"][0]["name"]
        failed["modules"][first]["units"][f"{first}.service"] = "failed"
        older = json.loads(json.dumps(base))
        pkg = sorted(older["modules"][first]["packages"])[0]
        older["modules"][first]["packages"][pkg] = "0.1-1"
        line_of[t] = len(bodies)
        bodies.extend(json.dumps(b, separators=(",", ":")) for b in (base, failed, older))

    def line(k, i):
        variant = 1 if k % 20 == 0 else 2 if k % 20 == 10 else 0
        return line_of[tmpl_of[i]] + variant

    with open(f"{work}/bodies", "w") as f:
        f.write("\n".join(bodies) + "\n")
    sizes = sorted(len(b) for b in bodies)
    print(f"  a report is {sizes[len(sizes) // 2]:,} bytes (median; {sizes[0]:,}–{sizes[-1]:,})", flush=True)
    with open(f"{work}/tokens", "w") as f:
        for k, i in enumerate(ids):
            f.write(f"{i} {tokens[i]} {states[tmpl_of[i]]} {line(k, i)}\n")
    json.dump({"templates": chosen, "instances": tmpl_of, "promoted_module": last,
               "promoted_templates": tids[:PROMOTED_USERS]}, open(f"{work}/fleet.json", "w"))

    def report(k_i):
        k, i = k_i
        body = json.loads(bodies[line(k, i)])
        call(url, "POST", f"/instances/{i}/report", body, ok=(200,), token=tokens[i])

    step(f"{instances} first reports", lambda: parallel(report, list(enumerate(ids))))
    summary = call(url, "GET", "/drift?limit=1")
    print(f"  drift summary counts: {json.dumps(summary.get('counts', summary))[:400]}", flush=True)


# ---------------------------------------------------------------------------------------------
# promote


def promote(work, promote_url, poll_url, version):
    fleet = json.load(open(f"{work}/fleet.json"))
    affected = set(fleet["promoted_templates"])
    nodes = []
    for line in open(f"{work}/tokens"):
        i, token, _, _ = line.split()
        if fleet["instances"][i] in affected:
            nodes.append([i, token])
    # What each template serves now (the state its nodes hold).
    held = {}
    for t in affected:
        s, h, _ = request(poll_url, "GET", f"/templates/{t}/desired-state")
        assert s == 200
        held[t] = h["etag"].strip('"')
    vid = f"v-{fleet['promoted_module']}-{version}"
    seen = {}
    lock = threading.Lock()
    start = threading.Event()
    t0 = [0.0]
    polls = [0]

    def poller(part):
        start.wait()
        pending = list(part)
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            left = []
            for i, token in pending:
                old = held[fleet["instances"][i]]
                s, h, _ = request(poll_url, "GET", f"/instances/{i}/desired-state", token,
                                  headers={"If-None-Match": f'"{old}"'})
                now = time.monotonic()
                with lock:
                    polls[0] += 1
                if s == 200 and h.get("etag", "").strip('"') != old:
                    with lock:
                        seen[i] = now - t0[0]
                elif s == 304:
                    left.append((i, token))
                else:
                    raise SystemExit(f"poll {i}: {s}")
            pending = left

    parts = [nodes[k::4] for k in range(4)]
    threads = [threading.Thread(target=poller, args=(p,)) for p in parts]
    for th in threads:
        th.start()
    wall0 = time.time() * 1000
    t0[0] = time.monotonic()
    r = call(promote_url, "POST", f"/versions/{vid}/promote", {"to": "live"})
    api = time.monotonic() - t0[0]
    start.set()
    for th in threads:
        th.join()
    if len(seen) != len(nodes):
        raise SystemExit(f"only {len(seen)} of {len(nodes)} nodes got the new state within 30 s")
    polled = time.monotonic() - t0[0]
    # The new states name the promoted version; when each was committed (its audit row).
    committed = []
    for t in affected:
        s, _, data = request(poll_url, "GET", f"/templates/{t}/desired-state")
        doc = json.loads(base64.b64decode(json.loads(data)["payload"]))
        v = {m["name"]: m["version"] for m in doc["modules"]}[fleet["promoted_module"]]
        assert v == version, (t, v, version, r)
        rows = call(poll_url, "GET", f"/templates/{t}/audit")["audit"]
        committed.append(max(a["at"] for a in rows if a["action"] == "desired_state_changed") - wall0)
    print(json.dumps({"nodes": len(nodes), "templates": len(affected), "api_ms": round(api * 1000, 1),
                      "first_ms": round(min(seen.values()) * 1000, 1), "all_ms": round(max(seen.values()) * 1000, 1),
                      "states_committed_ms": [round(c) for c in sorted(committed)],
                      "sweep_ms": round(polled * 1000 * len(nodes) / max(polls[0], 1), 1)}), flush=True)


if __name__ == "__main__":
    cmd, *a = sys.argv[1:]
    if cmd == "release":
        release(a[0], a[1], int(a[2]), int(a[3]))
    elif cmd == "seed":
        seed(a[0], a[1], int(a[2]), int(a[3]), int(a[4]))
    elif cmd == "promote":
        promote(a[0], a[1], a[2], a[3])
    else:
        raise SystemExit(__doc__)
