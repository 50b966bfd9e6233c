//! A generation served from its mounted composefs image, on the host (its kernel has EROFS,
//! overlayfs and loop devices; a booted test node has no loop devices): the object store on
//! an ext4 file system made with `-O verity` on a loop file, as an operator would set it up.
//!
//! Where the kernel has fs-verity, the overlay is mounted with `verity=require` and a byte
//! flipped on the disk under an object fails the read. Where it has not (`CONFIG_FS_VERITY`
//! off: no `/sys/fs/ext4/features/verity`), the generation says `verity: unsupported`, the
//! image is still what serves, and `module-agent verify` finds the altered object.

#[path = "../../webhook/tests/common/mod.rs"]
mod common;
mod support;
use common::*;
use module_agent::apply::Outcome;
use powernode_testkit::{running_as_root, succeeded};
use std::{fs, path::Path, process::Command};
use support::*;

/// An ext4 file system with fs-verity enabled, on a loop file, unmounted (with everything
/// mounted under it) when dropped.
struct VerityFs {
    dir: tempfile::TempDir,
}

impl VerityFs {
    fn new() -> VerityFs {
        assert!(running_as_root(), "mounting needs root");
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("objects.img");
        succeeded(
            Command::new("truncate")
                .args(["-s", "128M"])
                .arg(&img)
                .output()
                .unwrap(),
        );
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-O", "verity"])
            .arg(&img)
            .output()
            .expect("mkfs.ext4 is missing: apt-get install -y e2fsprogs");
        succeeded(mkfs);
        fs::create_dir(dir.path().join("mnt")).unwrap();
        succeeded(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(dir.path().join("mnt"))
                .output()
                .unwrap(),
        );
        VerityFs { dir }
    }

    fn mnt(&self) -> std::path::PathBuf {
        self.dir.path().join("mnt")
    }

    fn img(&self) -> std::path::PathBuf {
        self.dir.path().join("objects.img")
    }
}

impl Drop for VerityFs {
    fn drop(&mut self) {
        let mnt = self.mnt().canonicalize().unwrap_or(self.mnt());
        let mut under: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|m| Path::new(m).starts_with(&mnt))
            .collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = Command::new("umount").arg("-l").arg(&m).output();
        }
    }
}

/// Flips one byte of every copy of `needle` on the disk image, behind the file system's
/// back, and drops the page cache so the next read comes from the disk.
fn flip_on_disk(img: &Path, needle: &[u8]) -> usize {
    use std::os::unix::fs::FileExt;
    succeeded(Command::new("sync").output().unwrap());
    let data = fs::read(img).unwrap();
    let disk = fs::OpenOptions::new().write(true).open(img).unwrap();
    let mut flipped = 0;
    let mut at = 0;
    while let Some(i) = data[at..].windows(needle.len()).position(|w| w == needle) {
        disk.write_at(&[data[at + i] ^ 0x20], (at + i) as u64)
            .unwrap();
        flipped += 1;
        at += i + needle.len();
    }
    disk.sync_all().unwrap();
    fs::write("/proc/sys/vm/drop_caches", "3\n").unwrap();
    flipped
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generation_is_served_from_its_mounted_image() {
    let vfs = VerityFs::new();
    let db = sqlite().await;
    let (r, _reg, _k, mut node, sources) = setup(&db, false).await;
    node.opts.state_dir = Some(vfs.mnt().join("state"));
    node.opts.no_mount = false;
    let agent = node.opts.agent().unwrap();
    assert_eq!(
        agent.apply_once().await.unwrap(),
        Outcome::Applied { generation: 1 }
    );

    // The tree is the mounted image (overlay over EROFS, objects as its data layer).
    let tree = vfs.mnt().join("state/generations/1/tree");
    assert!(
        module_agent::mount::is_mounted(&tree),
        "the image is mounted"
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(tree.canonicalize().unwrap().to_str().unwrap()))
        .unwrap();
    assert!(line.contains(" - overlay composefs:"), "{line}");
    let want = fs::read(sources[2].path().join("rootfs/etc/redis/redis.conf")).unwrap();
    assert_eq!(
        fs::read(node.root().join("etc/redis/redis.conf")).unwrap(),
        want
    );
    let state = module_agent::mount::state(&vfs.mnt().join("state/generations/1")).unwrap();
    assert!(state.mounted, "{state:?}");
    let (_, inst) = r.get("/api/v1/instances/node-1", Some(READ_TOKEN)).await;
    let message = inst["instance"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("composefs image mounted, verity: "),
        "{message}"
    );

    let kernel_has_verity = Path::new("/sys/fs/ext4/features/verity").exists();
    let needle = b"tls-ca-cert-file /etc/redis/tls/ca.crt";
    assert!(
        flip_on_disk(&vfs.img(), needle) >= 1,
        "the object is on the disk"
    );
    let read = fs::read(node.root().join("etc/redis/redis.conf"));
    let verify = node.cli(&["verify"]);
    let said = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert_eq!(verify.status.code(), Some(1), "{said}");
    if kernel_has_verity {
        assert_eq!(
            state.verity,
            module_agent::mount::Verity::Enforced,
            "{state:?}"
        );
        let e = read.expect_err("a flipped byte fails the read");
        assert_eq!(e.raw_os_error(), Some(5), "EIO: {e}");
        assert!(
            said.contains("/etc/redis/redis.conf"),
            "verify names the file: {said}"
        );
    } else {
        // This kernel has no fs-verity: said so, and the altered object is still found.
        assert_eq!(
            state.verity,
            module_agent::mount::Verity::Unsupported,
            "{state:?}"
        );
        assert!(message.contains("verity: unsupported"), "{message}");
        assert_ne!(
            read.unwrap(),
            want,
            "nothing stops the read without fs-verity"
        );
        assert!(said.contains("TAMPERED /etc/redis/redis.conf"), "{said}");
    }
    drop(agent);
    drop(vfs);
}
