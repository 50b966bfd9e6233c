//! A module's file over a Debian package's file, the way `config-package-dev` does it: the
//! package's copy is diverted (`dpkg-divert --local --rename`: renamed to `<path>.distrib`,
//! and every later unpack of the package writes there), so an upgrade never overwrites the
//! module's file; removing the diversion renames the package's copy back.

use super::{Host, ToolError, run};
use std::process::Command;

fn divert_cmd(host: &Host) -> Command {
    let mut c = Command::new("dpkg-divert");
    if !host.is_live() {
        c.arg(format!("--root={}", host.root.display()));
    }
    c
}

/// The packages that own `path` (absolute, as the root sees it), if any. Paths with glob
/// characters are not asked about (`dpkg-query -S` takes a pattern) and count as unowned.
pub fn owners(host: &Host, path: &str) -> Result<Vec<String>, ToolError> {
    if path.contains(['*', '?', '[', ']', '\\']) || !host.has_dpkg() {
        return Ok(Vec::new());
    }
    let out = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            host.root.join("var/lib/dpkg").display()
        ))
        .args(["-S", "--", path])
        .env("LC_ALL", "C.UTF-8")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ToolError {
            command: "dpkg-query -S".into(),
            status: "could not start".into(),
            said: e.to_string(),
        })?;
    // Exit 1: no package owns it.
    if !out.status.success() {
        return Ok(Vec::new());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("diversion by"))
        .filter_map(|l| l.rsplit_once(": ").filter(|(_, p)| *p == path))
        .flat_map(|(pkgs, _)| pkgs.split(", ").map(str::to_owned).collect::<Vec<_>>())
        .collect())
}

/// Whether the agent's (local) diversion of `path` is in place.
pub fn diverted(host: &Host, path: &str) -> Result<bool, ToolError> {
    let out = run(divert_cmd(host).args(["--listpackage", "--", path]))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "LOCAL")
}

/// Diverts the package's `path` to `<path>.distrib` (renaming the file). Adding the same
/// diversion again is a no-op; a diversion by a package is refused by dpkg, and so here.
pub fn divert(host: &Host, path: &str) -> Result<(), ToolError> {
    run(divert_cmd(host).args(["--local", "--rename", "--add", "--", path]))?;
    Ok(())
}

/// Removes the diversion and renames the package's copy back. `path` itself must be gone.
pub fn undivert(host: &Host, path: &str) -> Result<(), ToolError> {
    if diverted(host, path)? {
        run(divert_cmd(host).args(["--local", "--rename", "--remove", "--", path]))?;
    }
    Ok(())
}
