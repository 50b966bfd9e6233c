"""The walkthrough's tool calls, made by the official Python MCP SDK (`mcp==2.3.*`) against a
running module-webhook. webhook/tests/mcp.rs runs it in phases, doing between them what
happens outside MCP (a reviewer approves on Gitea, an instance reports):

  tools     list the tools and check their schemas and hints; wrong token -> 401
  promote   validate -> workflow runs -> list versions (draft) -> staging -> blessed -> live
            (pending: approvals missing); read token -> tool error naming the role; unknown id
  live      the version is live now; assign it to the template
  instance  get the instance (running_module_digests, modules) -> drift report (false) ->
            the instances running redis-server -> audit log
  yank      yank with a reason -> yanked
  tokens    rotate the instance's token (a new one, shown once; read token -> tool error), then
            delete the instance (unknown -> tool error)

Each phase prints one JSON object (what it saw) on its last line; a failed check raises.
Environment: MCP_URL, OPS_TOKEN, READ_TOKEN, MANIFEST (path of manifest.yaml), TEMPLATE,
INSTANCE, GITEA_OWNER, GITEA_REPO.
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

URL = os.environ["MCP_URL"]
OPS = os.environ["OPS_TOKEN"]
READ = os.environ["READ_TOKEN"]
VERSION_ID = "v-my-redis-0.1.0"

TOOLS = {
    # name: (required arguments, read-only, destructive)
    "system_validate_module_manifest": ({"manifest_yaml", "category_slug"}, True, None),
    "system_list_module_versions": ({"module_name"}, True, None),
    "system_get_module_version": ({"id"}, True, None),
    "system_promote_module_version": ({"id", "to"}, False, False),
    "system_yank_module_version": ({"id", "reason"}, False, True),
    "system_assign_module_to_template": ({"template_id", "module_name"}, False, False),
    "system_list_templates": (set(), True, None),
    "system_get_instance": ({"id"}, True, None),
    "system_drift_report": ({"instance_id"}, True, None),
    "system_rotate_instance_token": ({"id"}, False, True),
    "system_delete_instance": ({"id"}, False, True),
    "system_list_package_instances": ({"package_name"}, True, None),
    "system_audit_log": ({"id"}, True, None),
    "system_list_pins": (set(), True, None),
    "system_confirm_pin": ({"module_name"}, False, False),
    "system_reject_pin": ({"module_name"}, False, True),
    "list_gitea_workflow_runs": ({"owner", "repo"}, True, None),
}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def client(token):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return Client(streamable_http_client(URL, http_client=http))


async def ok(c, tool, args):
    """Calls `tool`, which must succeed with structured content; returns that content."""
    r = await c.call_tool(tool, args)
    text = " ".join(getattr(b, "text", "") for b in r.content)
    check(not r.is_error, f"{tool}({args}) failed: {text}")
    check(isinstance(r.structured_content, dict), f"{tool}: no structured content: {r}")
    # The text content carries the same JSON, for clients that ignore structured content.
    check(json.loads(text) == r.structured_content, f"{tool}: text and structured content differ")
    return r.structured_content


async def tool_error(c, tool, args):
    """Calls `tool`, which must answer a tool error (isError), not a protocol error."""
    r = await c.call_tool(tool, args)
    check(r.is_error, f"{tool}({args}) should have failed: {r}")
    return " ".join(getattr(b, "text", "") for b in r.content)


async def tools():
    async with client(READ) as c:
        listed = (await c.list_tools()).tools
    by_name = {t.name: t for t in listed}
    check(set(TOOLS) <= set(by_name), f"missing tools: {set(TOOLS) - set(by_name)}")
    for name, (required, read_only, destructive) in TOOLS.items():
        t = by_name[name]
        check(t.description and len(t.description) > 20, f"{name}: no description")
        check(t.input_schema.get("type") == "object", f"{name}: input schema {t.input_schema}")
        check(set(t.input_schema.get("required", [])) == required,
              f"{name}: required {t.input_schema.get('required')} != {required}")
        check(t.output_schema and t.output_schema.get("type") == "object",
              f"{name}: output schema {t.output_schema}")
        a = t.annotations
        check(a is not None and a.read_only_hint == read_only, f"{name}: read_only_hint {a}")
        if destructive is not None:
            check(a.destructive_hint == destructive, f"{name}: destructive_hint {a}")
    versions = by_name["system_list_module_versions"].output_schema
    props = json.dumps(versions)
    for field in ["version_string", "lifecycle_state", "composefs_digest"]:
        check(field in props, f"list output schema lacks {field}")

    # A wrong token never reaches MCP: 401 with a Bearer challenge.
    async with httpx2.AsyncClient() as h:
        r = await h.post(URL, headers={"Authorization": "Bearer wrong-token-wrong-token",
                                       "Accept": "application/json, text/event-stream",
                                       "Content-Type": "application/json"},
                         json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        check(r.status_code == 401, f"wrong token: {r.status_code} {r.text}")
        check(r.headers.get("www-authenticate", "").startswith("Bearer"), f"{r.headers}")
        # Refused before its body is read: the connection is not offered for reuse.
        check(r.headers.get("connection", "").lower() == "close", f"{r.headers}")
        r = await h.post(URL, headers={"Accept": "application/json, text/event-stream"},
                         json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        check(r.status_code == 401, f"no token: {r.status_code}")
    return {"tools": sorted(by_name)}


async def promote():
    manifest = open(os.environ["MANIFEST"]).read()
    seen = {}
    async with client(OPS) as c:
        v = await ok(c, "system_validate_module_manifest",
                     {"manifest_yaml": manifest, "category_slug": "userland"})
        check(v["valid"] is True, f"validate: {v}")
        check(isinstance(v["warnings"], list) and v["conflicts"] == [], f"validate: {v}")
        bad = await ok(c, "system_validate_module_manifest",
                       {"manifest_yaml": "schema_version: 1\nidentity:\n  name: Bad_Name\n",
                        "category_slug": "userland"})
        check(bad["valid"] is False and bad["errors"], f"a bad manifest: {bad}")
        check(all("code" in f for f in bad["errors"]), f"findings carry codes: {bad}")

        runs = await ok(c, "list_gitea_workflow_runs",
                        {"owner": os.environ["GITEA_OWNER"], "repo": os.environ["GITEA_REPO"]})
        check(runs["runs"] and runs["runs"][0]["status"] == "completed", f"runs: {runs}")
        seen["run_id"] = runs["runs"][0]["id"]

        listed = await ok(c, "system_list_module_versions", {"module_name": "my-redis"})
        check(len(listed["versions"]) == 1, f"versions: {listed}")
        v0 = listed["versions"][0]
        check(v0["id"] == VERSION_ID and v0["version_string"] == "0.1.0", f"{v0}")
        check(v0["lifecycle_state"] == "draft", f"{v0}")
        check(v0["composefs_digest"], f"no composefs digest: {v0}")
        seen["composefs_digest"] = v0["composefs_digest"]
        seen["source_commit"] = v0["source_commit"]

        for to in ["staging", "blessed"]:
            d = await ok(c, "system_promote_module_version", {"id": VERSION_ID, "to": to})
            check(d["decision"]["outcome"] == "done", f"{to}: {d}")
        d = await ok(c, "system_promote_module_version",
                     {"id": VERSION_ID, "to": "live", "reason": "walkthrough"})
        check(d["decision"]["outcome"] == "pending", f"live without approval: {d}")
        missing = d["decision"]["missing"]
        check(missing and missing[0]["kind"] == "approvals", f"missing: {missing}")
        seen["live_missing"] = missing

        # Not the next stage: refused, as a tool error saying why.
        text = await tool_error(c, "system_promote_module_version",
                                {"id": VERSION_ID, "to": "staging"})
        check("refused" in text, f"refused: {text}")
        text = await tool_error(c, "system_get_module_version", {"id": "v-nope-9.9.9"})
        check("no version v-nope-9.9.9" in text, f"unknown id: {text}")
        text = await tool_error(c, "system_promote_module_version",
                                {"id": VERSION_ID, "to": "golden"})
        check("golden" in text, f"unknown stage: {text}")

    async with client(READ) as c:
        text = await tool_error(c, "system_promote_module_version",
                                {"id": VERSION_ID, "to": "live"})
        check("Operator" in text and "forbidden" in text, f"read token: {text}")
        text = await tool_error(c, "system_assign_module_to_template",
                                {"template_id": os.environ["TEMPLATE"], "module_name": "my-redis"})
        check("Operator" in text, f"read token assigning: {text}")
    return seen


async def live():
    async with client(OPS) as c:
        v = await ok(c, "system_get_module_version", {"id": VERSION_ID})
        check(v["lifecycle_state"] == "live", f"not live after the approval: {v}")
        a = await ok(c, "system_assign_module_to_template",
                     {"template_id": os.environ["TEMPLATE"], "module_name": "my-redis"})
        check(a["message"] ==
              "Instances built from this template will get my-redis on next reconcile", f"{a}")
        check("my-redis" in a["desired_state"]["modules"], f"{a}")
        check(a["desired_state"]["blocked"] is False, f"{a}")
        t = await ok(c, "system_list_templates", {})
        names = [x["id"] for x in t["templates"]]
        check(os.environ["TEMPLATE"] in names, f"templates: {names}")
        return {"modules": a["desired_state"]["modules"], "state_id": a["desired_state"]["state_id"]}


async def instance():
    inst = os.environ["INSTANCE"]
    async with client(READ) as c:
        i = await ok(c, "system_get_instance", {"id": inst})
        running = i["instance"]["running_module_digests"]
        check("my-redis" in running, f"instance: {i}")
        observed = i["instance"]["modules"]["my-redis"]
        check(observed["units"] == {"redis-server.service": "active"}, f"instance: {i}")
        d = await ok(c, "system_drift_report", {"instance_id": inst})
        check(d["drift"] is False, f"drift: {d}")
        check(d["package_missing"] == [] and d["unit_failed"] == [], f"drift: {d}")
        p = await ok(c, "system_list_package_instances", {"package_name": "redis-server"})
        check(p["package"] == "redis-server" and len(p["versions"]) == 1, f"package: {p}")
        none = await ok(c, "system_list_package_instances", {"package_name": "no-such-package"})
        check(none["instances"] == [] and none["versions"] == {}, f"unknown package: {none}")
        text = await tool_error(c, "system_list_package_instances", {"package_name": "Redis"})
        check("not a Debian package name" in text, f"a bad name: {text}")
        text = await tool_error(c, "system_drift_report", {"instance_id": "nobody"})
        check("no instance nobody" in text, f"unknown instance: {text}")
        log = await ok(c, "system_audit_log", {"id": VERSION_ID})
        check(log["kind"] == "version", f"{log}")
        mcp_rows = [r for r in log["audit"] if r["via"] == "mcp"]
        check(len(mcp_rows) >= 3, f"promotions over MCP are audited via mcp: {log['audit']}")
        check(all(r["actor"] == "api:ops" for r in mcp_rows),
              f"the token's name is the actor: {mcp_rows}")
        tlog = await ok(c, "system_audit_log", {"id": os.environ["TEMPLATE"]})
        check(tlog["kind"] == "template" and any(r["via"] == "mcp" for r in tlog["audit"]),
              f"template audit: {tlog}")
        return {"running": running, "drift": d["drift"], "redis_server": p["instances"]}


async def yank():
    async with client(OPS) as c:
        text = await tool_error(c, "system_yank_module_version", {"id": VERSION_ID, "reason": " "})
        check("reason" in text, f"an empty reason: {text}")
        d = await ok(c, "system_yank_module_version",
                     {"id": VERSION_ID, "reason": "CVE-2026-0001 in redis.conf defaults"})
        check(d["decision"]["outcome"] == "done", f"yank: {d}")
        v = await ok(c, "system_get_module_version", {"id": VERSION_ID})
        check(v["lifecycle_state"] == "yanked", f"{v}")
        return {"lifecycle_state": v["lifecycle_state"]}


async def tokens():
    inst = os.environ["INSTANCE"]
    async with client(READ) as c:
        text = await tool_error(c, "system_rotate_instance_token", {"id": inst})
        check("Operator" in text, f"read token rotating: {text}")
        text = await tool_error(c, "system_delete_instance", {"id": inst})
        check("Operator" in text, f"read token deleting: {text}")
    async with client(OPS) as c:
        r = await ok(c, "system_rotate_instance_token", {"id": inst})
        check(r["instance"]["id"] == inst and r["token"].startswith("pni_"), f"rotate: {r}")
        d = await ok(c, "system_delete_instance", {"id": inst})
        check(d["instance_id"] == inst and d["template_id"] == os.environ["TEMPLATE"], f"{d}")
        text = await tool_error(c, "system_delete_instance", {"id": inst})
        check(f"no instance {inst}" in text, f"deleted twice: {text}")
        text = await tool_error(c, "system_rotate_instance_token", {"id": inst})
        check(f"no instance {inst}" in text, f"rotating a deleted instance: {text}")
        return {"token": r["token"]}


async def node():
    """A real node (agent/tests/node.rs): what it runs, as an assistant would ask."""
    inst = os.environ["INSTANCE"]
    async with client(READ) as c:
        i = await ok(c, "system_get_instance", {"id": inst})
        running = i["instance"]["running_module_digests"]
        check({"system-base", "security-hardening", "my-redis"} <= set(running), f"instance: {i}")
        observed = i["instance"]["modules"]["my-redis"]
        check(observed["units"].get("redis-server.service") == "active", f"instance: {i}")
        check(observed["packages"].get("redis-server"), f"instance: {i}")
        d = await ok(c, "system_drift_report", {"instance_id": inst})
        check(d["drift"] is False, f"drift: {d}")
        p = await ok(c, "system_list_package_instances", {"package_name": "redis-server"})
        check([x["instance_id"] for x in p["instances"]] == [inst], f"package: {p}")
        return {"running": sorted(running), "redis_server": observed["packages"]["redis-server"]}


PHASES = {"tools": tools, "promote": promote, "live": live, "instance": instance, "yank": yank,
          "node": node,
          "tokens": tokens}

if __name__ == "__main__":
    out = asyncio.run(PHASES[sys.argv[1]]())
    print(json.dumps(out))
