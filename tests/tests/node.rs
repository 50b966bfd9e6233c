//! Smoke test of the node harness: boot, enter, apt lists, a service, a clean poweroff.
//! Network-free once the image is cached (building it downloads Debian packages).

use std::{fs, time::Instant};

use powernode_testkit::{
    node::{Node, NodeImage, host_codename},
    running_as_root, succeeded,
};

#[test]
fn a_node_boots_runs_a_service_and_leaves_nothing_behind() {
    assert!(
        running_as_root(),
        "this test boots a container with systemd-nspawn and needs root"
    );
    let image = NodeImage::cached();
    let started = Instant::now();
    let mut node = Node::boot(&image);
    eprintln!("booted in {:.1?}", started.elapsed());

    let state = node.exec(&["systemctl", "is-system-running"]);
    let state = String::from_utf8_lossy(&state.stdout);
    assert!(
        matches!(state.trim(), "running" | "degraded"),
        "is-system-running: {state}"
    );

    let os = succeeded(node.exec(&["cat", "/etc/os-release"]));
    assert!(
        os.contains(&format!("VERSION_CODENAME={}", host_codename())),
        "{os}"
    );

    // Not /tmp: systemd-nspawn mounts a fresh tmpfs there inside the node.
    fs::write(node.root().join("root/from-host"), "hello node\n").unwrap();
    assert_eq!(
        succeeded(node.exec(&["cat", "/root/from-host"])),
        "hello node\n"
    );

    let policy = succeeded(node.sh("apt-cache policy hello"));
    assert!(
        policy
            .lines()
            .any(|l| l.trim().starts_with("Candidate:") && !l.contains("(none)")),
        "no candidate for hello, are the apt lists in the image?\n{policy}"
    );

    succeeded(node.exec(&["systemd-run", "--unit=smoke-sleep", "sleep", "600"]));
    let active = succeeded(node.exec(&["systemctl", "is-active", "smoke-sleep"]));
    assert_eq!(active.trim(), "active", "{}", node.journal("smoke-sleep"));
    let sleep_pid = host_child_named(node.pid1(), "sleep").expect("no sleep under PID 1");

    let started = Instant::now();
    node.shutdown(); // panics if any process of the node outlived it
    eprintln!("shut down in {:.1?}", started.elapsed());
    assert!(
        !fs::exists(format!("/proc/{sleep_pid}")).unwrap(),
        "the node's sleep (host PID {sleep_pid}) survived"
    );
}

/// The host PID of a child of `parent` whose command is `comm`.
fn host_child_named(parent: u32, comm: &str) -> Option<u32> {
    fs::read_dir(format!("/proc/{parent}/task"))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|p| fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm))
}

/// The /proc root scan of `shutdown()`: a process in the node's mount namespace but the host's
/// PID namespace (what `nsenter -m` starts), and one chrooted into the node's directory from
/// the host, both outlive the node's poweroff; shutdown names and kills them.
#[test]
fn shutdown_names_and_kills_what_outlived_the_node() {
    assert!(
        running_as_root(),
        "this test boots a container and needs root"
    );
    let mut node = Node::boot(&NodeImage::cached());
    let pid1 = node.pid1().to_string();
    let mut in_mount_ns = std::process::Command::new("nsenter")
        .args(["-t", &pid1, "-m", "--", "sleep", "601"])
        .spawn()
        .unwrap();
    let mut chrooted = std::process::Command::new("chroot")
        .arg(node.root())
        .args(["sleep", "602"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.shutdown()))
        .expect_err("shutdown did not notice the leftovers");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("sleep 601") && msg.contains("sleep 602"),
        "{msg}"
    );
    // Killed (SIGKILL), not exited on their own.
    assert_eq!(in_mount_ns.wait().unwrap().code(), None);
    assert_eq!(chrooted.wait().unwrap().code(), None);
}
