//! The artifact format end to end at the library level: build, read back, verify, refuse.

use powernode_module::{
    artifact::{
        self, BuildOptions, ReadError,
        composefs::Tree,
        index::EntryKind,
        plan::{self, Plan},
        read_and_verify,
        walk::{Kind, WalkError},
    },
    diagnostics::Code,
    digest::Digest,
};
use std::{
    fs,
    os::unix::fs::{PermissionsExt, symlink},
    path::{Path, PathBuf},
    process::Command,
};

const MANIFEST: &str = r#"schema_version: 1
identity:
  name: kat
  category: userland
  variety: subscription
  cosign_identity_regexp: '^https://git\.example\.org/acct/modules/kat-module@.*$'
  cosign_issuer_regexp: '^https://gitea\.example\.org$'
file_spec:
  include: ["/etc/**", "/usr/**"]
"#;

fn opts(sde: u64) -> BuildOptions {
    BuildOptions {
        source_date_epoch: sde,
        version: "1.2.3".into(),
        git_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        architecture: "all".into(),
        builder_version: "module-builder test".into(),
    }
}

/// A small module with every kind of entry: nested dirs, an empty file, an inline (≤ 64
/// bytes) file, an external file, an executable, a symlink and a long path.
fn sample(dir: &Path) {
    let r = dir.join("rootfs");
    fs::create_dir_all(r.join("etc/kat/conf.d")).unwrap();
    fs::create_dir_all(r.join("usr/lib/kat")).unwrap();
    fs::write(dir.join("manifest.yaml"), MANIFEST).unwrap();
    fs::write(r.join("etc/kat/empty"), b"").unwrap();
    fs::write(r.join("etc/kat/small.conf"), b"key = value\n").unwrap();
    fs::write(r.join("etc/kat/conf.d/big.conf"), "x = 1\n".repeat(2000)).unwrap();
    fs::write(r.join("usr/lib/kat/run"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(r.join("usr/lib/kat/run"), fs::Permissions::from_mode(0o700)).unwrap();
    symlink("../kat/small.conf", r.join("etc/kat/conf.d/link.conf")).unwrap();
    let long = "d".repeat(90);
    fs::create_dir_all(r.join(format!("usr/lib/kat/{long}"))).unwrap();
    fs::write(
        r.join(format!("usr/lib/kat/{long}/{long}.conf")),
        b"long path\n",
    )
    .unwrap();
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn build(dir: &Path, sde: u64) -> (Plan, artifact::BuildReport) {
    let p = plan::plan(dir).unwrap_or_else(|e| panic!("{e}"));
    let r = artifact::build(&p, &opts(sde), &dir.join("dist")).unwrap();
    (p, r)
}

#[test]
fn build_then_read_back_verifies_and_agrees() {
    let t = tmp();
    sample(t.path());
    let (_, r) = build(t.path(), 1_700_000_000);
    let bytes = fs::read(&r.tar_path).unwrap();
    assert_eq!(Digest::of(&bytes), r.module.tar.sha256);
    assert_eq!(bytes.len() as u64, r.module.tar.size);
    let i = read_and_verify(&bytes[..]).unwrap();
    assert_eq!(i.tar_sha256, r.module.tar.sha256);
    assert_eq!(i.composefs_digest, r.module.composefs.digest);
    assert_eq!(i.file_count, r.module.files);
    assert_eq!(i.release.version_id, "1.2.3");
    assert_eq!(i.manifest_text, MANIFEST);
    let modes: Vec<_> = i
        .index
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e.mode))
        .collect();
    assert!(
        modes.contains(&("rootfs/usr/lib/kat/run", 0o755)),
        "{modes:?}"
    );
    assert!(modes.contains(&("rootfs/etc/kat/small.conf", 0o644)));
    assert!(modes.contains(&("rootfs/etc/kat/conf.d/link.conf", 0o777)));
}

#[test]
fn tar_layout_is_canonical() {
    let t = tmp();
    sample(t.path());
    let (_, r) = build(t.path(), 42);
    let out = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&r.tar_path)
        .env("TZ", "UTC")
        .output()
        .expect("GNU tar is needed for this test: apt-get install tar");
    let listing = String::from_utf8(out.stdout).unwrap();
    let names = Command::new("tar")
        .arg("-tf")
        .arg(&r.tar_path)
        .output()
        .unwrap()
        .stdout;
    let names = String::from_utf8(names).unwrap();
    let names: Vec<&str> = names.lines().collect();
    assert_eq!(
        &names[..4],
        ["index.json", "manifest.yaml", "module-release", "rootfs/"]
    );
    for line in listing.lines() {
        assert!(line.contains(" 0/0 "), "owner not 0/0: {line}");
        assert!(
            line.contains("1970-01-01 00:00"),
            "mtime not SOURCE_DATE_EPOCH: {line}"
        );
    }
    // Depth-first, byte order within each directory (as `tar --sort=name`).
    let pos = |n: &str| names.iter().position(|x| x.starts_with(n)).unwrap();
    assert!(pos("rootfs/etc/") < pos("rootfs/etc/kat/"));
    assert!(pos("rootfs/etc/kat/conf.d/link.conf") < pos("rootfs/etc/kat/empty"));
    assert!(pos("rootfs/etc/kat/small.conf") < pos("rootfs/usr/"));
}

/// Known-answer vectors: tree → composefs digest.
///
/// The empty tree's value is the one upstream composefs-rs pins as byte-identical to C
/// `mkcomposefs --min-version=1` (format 1) for an empty root with mode 0755, uid/gid 0,
/// mtime 0. The sample tree's value is cross-checked below against composefs' own
/// directory reader (the code path that mirrors `mkcomposefs SOURCEDIR`).
#[test]
fn composefs_known_answers() {
    assert_eq!(
        Tree::new(0).digest().hex(),
        "14a26c957c84f6eb774b91205476adc13196c7c33b9dd97d08d43725ecb90b63"
    );
    let t = tmp();
    fs::create_dir_all(t.path().join("rootfs/etc")).unwrap();
    fs::write(t.path().join("rootfs/etc/x"), b"x").unwrap();
    fs::write(
        t.path().join("manifest.yaml"),
        MANIFEST.replace("\"/usr/**\"", "\"/etc/x\""),
    )
    .unwrap();
    let (_, r) = build(t.path(), 0);
    assert_eq!(
        r.module.composefs.digest.to_string(),
        include_str!("data/kat-one-file.composefs-digest").trim()
    );
    let t = tmp();
    sample(t.path());
    let (_, r) = build(t.path(), 1_700_000_000);
    assert_eq!(
        r.module.composefs.digest.to_string(),
        include_str!("data/kat-sample.composefs-digest").trim()
    );
}

/// A tree that exercises what the patched image writer changed (patches/README.md): external
/// files sharing content (so overlay xattrs go to the shared table, in its order), unique
/// ones, inline files up to the inline limit, symlinks, names that sort around `/`. Its digest is the one
/// C `mkcomposefs --from-file DUMP --min-version=1 --print-digest-only` (1.0.8) printed for
/// its dumpfile; `KAT_WRITER_DUMP=FILE` writes that dumpfile.
#[test]
fn composefs_writer_known_answers() {
    use composefs::fsverity::{FsVerityHashValue, Sha256HashValue};
    use powernode_module::artifact::{composefs::TreeBuilder, hash::Content};
    let mut paths: Vec<(String, u32)> = Vec::new();
    for d in ["a", "a-b", "a.d", "a/x", "a/x-y", "a/x/z", "ln", "z"] {
        paths.push((d.into(), 0));
    }
    for (i, d) in ["a", "a-b", "a.d", "a/x", "a/x-y", "a/x/z", "z"]
        .iter()
        .enumerate()
    {
        for j in 0..12u32 {
            paths.push((format!("{d}/f{j}"), (i as u32 * 12 + j) % 7 + 1));
        }
    }
    for (i, len) in [1usize, 60, 255].iter().enumerate() {
        paths.push((format!("ln/l{i}-{len}"), 100 + *len as u32));
    }
    paths.sort();
    let mut t = TreeBuilder::new(1_700_000_000);
    for (n, (rel, kind)) in paths.iter().enumerate() {
        let n = n as u64;
        let r = match kind {
            0 => t.add_dir(rel, 0o755 - (n % 2) as u32 * 0o050),
            // Five contents shared by many files, and files of their own.
            1 | 2 => {
                let seed = if *kind == 1 { n % 5 } else { 1000 + n };
                let id = Sha256HashValue::from_hex(format!(
                    "{:064x}",
                    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ))
                .unwrap();
                t.add_file(rel, 0o644, 4096 + seed, Content::External(id))
            }
            // Inline sizes up to the inline limit (64 bytes).
            3..=6 => {
                let size = [0usize, 1, 2, 33, 63, 64][(n % 6) as usize];
                let data: Vec<u8> = (0..size).map(|b| (b as u8) ^ (*kind as u8)).collect();
                t.add_file(
                    rel,
                    0o600 + (n % 3) as u32 * 0o44,
                    size as u64,
                    Content::Inline(data.into()),
                )
            }
            7 => t.add_file(rel, 0o755, 0, Content::Inline(Box::from(&[][..]))),
            k => {
                let target: String = "t/"
                    .repeat(((k - 100) as usize).div_ceil(2))
                    .chars()
                    .take((k - 100) as usize)
                    .collect();
                t.add_symlink(rel, &target)
            }
        };
        r.unwrap_or_else(|e| panic!("{rel}: {e}"));
    }
    let tree = t.finish();
    if let Some(path) = std::env::var_os("KAT_WRITER_DUMP") {
        fs::write(path, tree.dumpfile()).unwrap();
    }
    assert_eq!(
        tree.digest().to_string(),
        include_str!("data/kat-writer.composefs-digest").trim()
    );
}

/// Writes the planned tree, normalised (owners 0, modes, mtimes), to `dest`.
fn normalised_copy(p: &Plan, dest: &Path, sde: u64) {
    fs::create_dir_all(dest).unwrap();
    for e in &p.entries {
        let to = dest.join(&e.node.rel);
        match &e.node.kind {
            Kind::Dir => fs::create_dir(&to).unwrap(),
            Kind::File { .. } => {
                fs::copy(p.rootfs.join(&e.node.rel), &to).unwrap();
            }
            Kind::Symlink { target } => symlink(target, &to).unwrap(),
        }
        if !matches!(e.node.kind, Kind::Symlink { .. }) {
            fs::set_permissions(&to, fs::Permissions::from_mode(e.mode)).unwrap();
        }
    }
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755)).unwrap();
    let all: Vec<PathBuf> = std::iter::once(dest.to_owned())
        .chain(p.entries.iter().map(|e| dest.join(&e.node.rel)))
        .collect();
    for path in &all {
        std::os::unix::fs::lchown(path, Some(0), Some(0))
            .expect("this test must run as root (uid 0) to give the copy root ownership");
    }
    let ok = Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{sde}"))
        .args(&all)
        .status()
        .expect("coreutils touch is needed")
        .success();
    assert!(ok);
}

#[test]
fn composefs_digest_matches_composefs_directory_reader() {
    use composefs::fsverity::FsVerityHashValue;
    let t = tmp();
    sample(t.path());
    let sde = 1_700_000_000;
    let (p, r) = build(t.path(), sde);
    let copy = t.path().join("normalised");
    normalised_copy(&p, &copy, sde);
    let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    let fs_tree = rt
        .block_on(composefs::fs::read_filesystem::<
            composefs::fsverity::Sha256HashValue,
        >(
            fs::File::open(t.path()).unwrap().into(),
            PathBuf::from("normalised"),
            None,
        ))
        .unwrap();
    let id = fs_tree.compute_image_id(composefs::erofs::format::FormatVersion::V1);
    assert_eq!(r.module.composefs.digest.hex(), id.to_hex());
}

#[test]
fn rebuild_is_byte_identical_and_sde_changes_bytes() {
    let t = tmp();
    sample(t.path());
    let (_, a) = build(t.path(), 7);
    let first = fs::read(&a.tar_path).unwrap();
    // Touch everything: new mtimes must not matter.
    Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg("@999999")
        .arg(t.path().join("rootfs/etc/kat/small.conf"))
        .status()
        .unwrap();
    let (_, b) = build(t.path(), 7);
    assert_eq!(first, fs::read(&b.tar_path).unwrap());
    let (_, c) = build(t.path(), 8);
    assert_ne!(a.module.tar.sha256, c.module.tar.sha256);
    assert_ne!(a.module.composefs.digest, c.module.composefs.digest);
}

fn walk_error(dir: &Path) -> (Code, String) {
    let a = plan::analyse(dir, None);
    assert!(!a.report.valid, "expected the module to be refused");
    let f = a.report.errors.first().expect("an error finding").clone();
    (f.code, f.message)
}

#[test]
fn refuses_device_nodes_fifos_sockets_and_hardlinks() {
    let t = tmp();
    sample(t.path());
    let dev = t.path().join("rootfs/etc/kat/null");
    let st = Command::new("mknod")
        .arg(&dev)
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(
        st.success(),
        "mknod failed: this test needs root (CAP_MKNOD)"
    );
    let (code, msg) = walk_error(t.path());
    assert_eq!(code, Code::RootfsUnsupportedType);
    assert!(
        msg.contains("rootfs/etc/kat/null") && msg.contains("character device"),
        "{msg}"
    );
    fs::remove_file(&dev).unwrap();

    let fifo = t.path().join("rootfs/etc/kat/pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (code, msg) = walk_error(t.path());
    assert_eq!(code, Code::RootfsUnsupportedType);
    assert!(
        msg.contains("rootfs/etc/kat/pipe") && msg.contains("fifo"),
        "{msg}"
    );
    fs::remove_file(&fifo).unwrap();

    let sock = t.path().join("rootfs/etc/kat/sock");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let (code, msg) = walk_error(t.path());
    assert_eq!(code, Code::RootfsUnsupportedType);
    assert!(
        msg.contains("rootfs/etc/kat/sock") && msg.contains("socket"),
        "{msg}"
    );
    fs::remove_file(&sock).unwrap();

    fs::hard_link(
        t.path().join("rootfs/etc/kat/small.conf"),
        t.path().join("rootfs/etc/kat/hard.conf"),
    )
    .unwrap();
    let (code, msg) = walk_error(t.path());
    assert_eq!(code, Code::RootfsHardlink);
    assert!(msg.contains("rootfs/etc/kat/"), "{msg}");
}

#[test]
fn refuses_escaping_symlinks_but_stores_inner_ones_unfollowed() {
    let t = tmp();
    sample(t.path());
    symlink(
        "../../../../etc/shadow",
        t.path().join("rootfs/etc/kat/shadow"),
    )
    .unwrap();
    let (code, msg) = walk_error(t.path());
    assert_eq!(code, Code::RootfsSymlinkEscapes);
    assert!(
        msg.contains("rootfs/etc/kat/shadow") && msg.contains("../../../../etc/shadow"),
        "{msg}"
    );
    fs::remove_file(t.path().join("rootfs/etc/kat/shadow")).unwrap();

    // A symlinked directory is stored as a link: nothing behind it is read.
    symlink("/etc", t.path().join("rootfs/etc/kat/hostetc")).unwrap();
    let (p, r) = build(t.path(), 0);
    assert!(
        p.entries
            .iter()
            .all(|e| !e.node.rel.starts_with("etc/kat/hostetc/"))
    );
    let i = read_and_verify(fs::File::open(&r.tar_path).unwrap()).unwrap();
    assert!(
        i.index
            .entries
            .iter()
            .any(|e| e.path == "rootfs/etc/kat/hostetc")
    );
    assert!(
        !i.index
            .entries
            .iter()
            .any(|e| e.path.starts_with("rootfs/etc/kat/hostetc/"))
    );

    // rootfs itself must not be a symlink.
    let u = tmp();
    fs::write(u.path().join("manifest.yaml"), MANIFEST).unwrap();
    symlink(t.path().join("rootfs"), u.path().join("rootfs")).unwrap();
    assert_eq!(walk_error(u.path()).0, Code::RootfsMissing);
}

#[test]
fn files_that_change_or_vanish_during_the_build_are_refused() {
    let t = tmp();
    sample(t.path());
    let p = plan::plan(t.path()).unwrap();
    fs::write(
        t.path().join("rootfs/etc/kat/small.conf"),
        b"key = other value\n",
    )
    .unwrap();
    let err = artifact::build(&p, &opts(0), &t.path().join("dist")).unwrap_err();
    assert!(
        err.to_string().contains("rootfs/etc/kat/small.conf"),
        "{err}"
    );
    assert!(
        err.to_string().contains("changed during the build"),
        "{err}"
    );
    assert!(
        !t.path().join("dist/module.tar").exists(),
        "no artifact after a failed build"
    );

    let p = plan::plan(t.path()).unwrap();
    fs::remove_file(t.path().join("rootfs/etc/kat/conf.d/big.conf")).unwrap();
    let err = artifact::build(&p, &opts(0), &t.path().join("dist")).unwrap_err();
    assert!(
        err.to_string()
            .contains("big.conf: vanished during the build"),
        "{err}"
    );
    assert!(matches!(
        err,
        artifact::build::BuildError::Walk(WalkError::Vanished { .. })
    ));
}

// --- the reader refuses tampered or malformed artifacts ---

fn built_sample() -> Vec<u8> {
    let t = tmp();
    sample(t.path());
    let (_, r) = build(t.path(), 5);
    fs::read(r.tar_path).unwrap()
}

#[test]
fn reader_refuses_a_changed_byte() {
    let mut bytes = built_sample();
    let at = bytes.windows(11).position(|w| w == b"key = value").unwrap();
    bytes[at] = b'K';
    let err = read_and_verify(&bytes[..]).unwrap_err();
    assert!(
        matches!(&err, ReadError::Entry { path, why } if path == "rootfs/etc/kat/small.conf" && why.contains("fs-verity")),
        "{err}"
    );
}

/// The per-file content address is the fs-verity digest, as fsverity-utils computes it
/// (`fsverity digest`, no kernel support needed): an implementation nobody here wrote.
#[test]
fn index_carries_the_fsverity_digests_fsverity_utils_computes() {
    let t = tmp();
    sample(t.path());
    let (_, r) = build(t.path(), 5);
    let i = read_and_verify(&fs::read(&r.tar_path).unwrap()[..]).unwrap();
    let mut checked = 0;
    for e in &i.index.entries {
        let EntryKind::File {
            size,
            fsverity,
            inline,
        } = &e.kind
        else {
            continue;
        };
        let Some(rel) = e.path.strip_prefix("rootfs/") else {
            continue;
        };
        let file = t.path().join("rootfs").join(rel);
        let theirs = powernode_testkit::fsverity_utils_digest(&file);
        assert_eq!(theirs, fsverity.to_string(), "{}", e.path);
        assert_eq!(
            inline.as_ref().map(|b| b.0.to_vec()),
            (*size <= 64).then(|| fs::read(&file).unwrap()),
            "{}",
            e.path
        );
        checked += 1;
    }
    assert_eq!(checked, 5, "every regular file of the sample was checked");
}

/// Replaces the `index.json` of an artifact by `f(index)`.
fn with_index(bytes: &[u8], f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    repack(bytes, |v| {
        let mut index: serde_json::Value = serde_json::from_slice(&v[0].2).unwrap();
        f(&mut index);
        let data = serde_json::to_vec(&index).unwrap();
        v[0].0.set_size(data.len() as u64);
        v[0].2 = data;
    })
}

#[test]
fn reader_refuses_a_v1_index_with_a_request_to_rebuild() {
    let bytes = with_index(&built_sample(), |i| i["schema_version"] = 1.into());
    let err = read_and_verify(&bytes[..]).unwrap_err().to_string();
    assert!(
        err.contains("schema_version 1") && err.contains("rebuild"),
        "{err}"
    );
}

#[test]
fn reader_refuses_inline_bytes_that_differ_or_are_missing() {
    let small = |i: &mut serde_json::Value| -> usize {
        i["entries"]
            .as_array()
            .unwrap()
            .iter()
            .position(|e| e["path"] == "rootfs/etc/kat/small.conf")
            .unwrap()
    };
    // Other bytes of the same length: the fs-verity digest still matches the content, the
    // inline copy (what composefs would store) does not.
    let changed = with_index(&built_sample(), |i| {
        let n = small(i);
        i["entries"][n]["inline"] = "a2V5ID0gVkFMVUUK".into(); // "key = VALUE\n"
    });
    let err = read_and_verify(&changed[..]).unwrap_err().to_string();
    assert!(err.contains("inline bytes"), "{err}");
    let missing = with_index(&built_sample(), |i| {
        let n = small(i);
        i["entries"][n].as_object_mut().unwrap().remove("inline");
    });
    let err = read_and_verify(&missing[..]).unwrap_err().to_string();
    assert!(err.contains("at most 64 bytes"), "{err}");
}

/// Re-packs the entries of an artifact, letting `f` change the list first.
type Entries = Vec<(tar::Header, String, Vec<u8>)>;

fn repack(bytes: &[u8], f: impl FnOnce(&mut Entries)) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut a = tar::Archive::new(bytes);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        let path = String::from_utf8(e.path_bytes().to_vec()).unwrap();
        entries.push((e.header().clone(), path, data));
    }
    f(&mut entries);
    let mut b = tar::Builder::new(Vec::new());
    for (mut h, path, data) in entries {
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn reader_refuses_extra_missing_reordered_and_unsafe_entries() {
    let bytes = built_sample();
    assert!(
        read_and_verify(&repack(&bytes, |_| {})[..]).is_ok(),
        "repacking alone keeps it valid"
    );

    let extra = repack(&bytes, |v| {
        let (h, _, data) = v[4].clone();
        v.push((h, "rootfs/etc/evil".into(), data));
    });
    let err = read_and_verify(&extra[..]).unwrap_err();
    assert!(err.to_string().contains("rootfs/etc/evil"), "{err}");

    let missing = repack(&bytes, |v| {
        v.pop();
    });
    assert!(matches!(
        read_and_verify(&missing[..]).unwrap_err(),
        ReadError::Missing(_)
    ));

    let reordered = repack(&bytes, |v| v.swap(1, 2));
    assert!(read_and_verify(&reordered[..]).is_err());

    let no_index = repack(&bytes, |v| {
        v.remove(0);
    });
    assert!(matches!(
        read_and_verify(&no_index[..]).unwrap_err(),
        ReadError::IndexFirst(_)
    ));

    // A hardlink entry in place of a file.
    let hardlink = repack(&bytes, |v| {
        let i = v
            .iter()
            .position(|(_, p, _)| p.ends_with("small.conf"))
            .unwrap();
        v[i].0.set_entry_type(tar::EntryType::Link);
        v[i].0.set_link_name("rootfs/etc/kat/empty").unwrap();
        v[i].0.set_size(0);
        v[i].2.clear();
    });
    let err = read_and_verify(&hardlink[..]).unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");

    // Ownership other than root.
    let owned = repack(&bytes, |v| v[5].0.set_uid(1000));
    assert!(
        read_and_verify(&owned[..])
            .unwrap_err()
            .to_string()
            .contains("uid/gid 0")
    );
}

#[test]
fn reader_refuses_dotdot_paths_in_index_or_tar() {
    let bytes = built_sample();
    let evil = repack(&bytes, |v| {
        let mut idx: serde_json::Value = serde_json::from_slice(&v[0].2).unwrap();
        idx["entries"][3]["path"] = "rootfs/../../etc".into();
        v[0].2 = serde_json::to_vec(&idx).unwrap();
        let n = v[0].2.len() as u64;
        v[0].0.set_size(n);
    });
    let err = read_and_verify(&evil[..]).unwrap_err();
    assert!(err.to_string().contains("unsafe path"), "{err}");

    // A raw header whose name contains `..` (bypassing tar-rs' own path checks).
    let mut raw = bytes.clone();
    let mut a = tar::Archive::new(&bytes[..]);
    let e = a.entries().unwrap().nth(4).unwrap().unwrap();
    let off = e.raw_header_position() as usize;
    let name = b"rootfs/../x";
    raw[off..off + 100].fill(0);
    raw[off..off + name.len()].copy_from_slice(name);
    let mut h = tar::Header::from_byte_slice(&raw[off..off + 512]).clone();
    h.set_cksum();
    raw[off..off + 512].copy_from_slice(h.as_bytes());
    let err = read_and_verify(&raw[..]).unwrap_err();
    assert!(err.to_string().contains("unsafe path"), "{err}");
}

// --- index.json size: refused by count, checked in linear time ---

/// A tar holding only an `index.json` with `n` directory entries under `rootfs/` (after
/// the three fixed ones): half at the top, half inside the last top-level one, so that
/// looking each parent up by scanning the list is quadratic.
fn index_only_tar(n: usize) -> Vec<u8> {
    let sha = format!("sha256:{}", "0".repeat(64));
    let mut entries = vec![
        serde_json::json!({"path": "manifest.yaml", "mode": "0644", "type": "file", "size": 0, "fsverity": sha, "inline": ""}),
        serde_json::json!({"path": "module-release", "mode": "0644", "type": "file", "size": 0, "fsverity": sha, "inline": ""}),
        serde_json::json!({"path": "rootfs", "mode": "0755", "type": "dir"}),
    ];
    let half = n / 2;
    for i in 0..n {
        let path = if i < half {
            format!("rootfs/d{i}")
        } else {
            format!("rootfs/d{}/s{i}", half - 1)
        };
        entries.push(serde_json::json!({"path": path, "mode": "0755", "type": "dir"}));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schema_version": 2, "module": "kat", "entries": entries,
    }))
    .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(index.len() as u64);
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut h, "index.json", &index[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn index_with_80k_entries_is_checked_in_linear_time() {
    let tar = index_only_tar(80_000);
    let t = std::time::Instant::now();
    let err = read_and_verify(&tar[..]).unwrap_err();
    let took = t.elapsed();
    // The index itself is valid; the tar then lacks the entries it lists.
    assert!(
        matches!(&err, ReadError::Missing(p) if p == "manifest.yaml"),
        "{err}"
    );
    eprintln!("80k-entry index checked in {took:?}");
    assert!(took.as_secs() < 5, "checking 80k entries took {took:?}");
}

#[test]
fn index_over_the_entry_limit_is_refused_with_count_and_limit() {
    let tar = index_only_tar(100);
    let limits = artifact::ReadLimits::default().with_max_index_entries(50);
    let err = artifact::read_and_verify_with(&tar[..], &limits).unwrap_err();
    assert!(
        matches!(
            err,
            ReadError::IndexTooLarge {
                count: 103,
                max: 50
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("index.json lists 103 entries, more than the limit of 50"),
        "{err}"
    );
    // At the limit is fine (and fails later, for the missing content).
    let limits = limits.with_max_index_entries(103);
    assert!(matches!(
        artifact::read_and_verify_with(&tar[..], &limits).unwrap_err(),
        ReadError::Missing(_)
    ));
    assert_eq!(
        artifact::ReadLimits::default().max_index_entries,
        artifact::DEFAULT_MAX_INDEX_ENTRIES
    );
}

// ---------------------------------------------------------------------------------------
// Property: writer → reader round trip for arbitrary trees.

mod round_trip {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Node {
        File(Vec<u8>, bool),
        Link(String),
    }

    /// Up to 24 paths under /usr/lib/rt, three levels deep, names from a small alphabet (so
    /// siblings share prefixes and sort subtly), file sizes around the inline limit and
    /// over a 4 KiB block, executables and symlinks.
    fn tree() -> impl Strategy<Value = BTreeMap<String, Node>> {
        let name = prop::sample::select(vec!["a", "a.b", "a-b", "b", "ab", "z0", "Z", "é"]);
        let path = prop::collection::vec(name, 1..=3).prop_map(|p| p.join("/"));
        let size = prop_oneof![0usize..=70, 4090usize..=4200, Just(70_000usize)];
        let file = (size, any::<u8>(), any::<bool>()).prop_map(|(n, seed, exec)| {
            Node::File(
                (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect(),
                exec,
            )
        });
        let node = prop_oneof![4 => file, 1 => "[a-z]{1,8}".prop_map(Node::Link)];
        prop::collection::btree_map(path, node, 1..24)
    }

    /// Writes the tree; a path that is a prefix directory of another becomes a directory.
    fn write(dir: &Path, t: &BTreeMap<String, Node>) -> BTreeMap<String, Node> {
        let root = dir.join("rootfs/usr/lib/rt");
        fs::create_dir_all(&root).unwrap();
        fs::write(dir.join("manifest.yaml"), MANIFEST).unwrap();
        let dirs: std::collections::BTreeSet<String> = t
            .keys()
            .flat_map(|p| {
                let parts: Vec<&str> = p.split('/').collect();
                (1..parts.len()).map(move |i| parts[..i].join("/"))
            })
            .collect();
        let mut written = BTreeMap::new();
        for d in &dirs {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for (p, n) in t {
            if dirs.contains(p) {
                continue;
            }
            let at = root.join(p);
            match n {
                Node::File(data, exec) => {
                    fs::write(&at, data).unwrap();
                    let mode = if *exec { 0o755 } else { 0o644 };
                    fs::set_permissions(&at, fs::Permissions::from_mode(mode)).unwrap();
                }
                Node::Link(target) => symlink(target, &at).unwrap(),
            }
            written.insert(format!("rootfs/usr/lib/rt/{p}"), n.clone());
        }
        written
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn what_is_built_reads_back_entry_for_entry(t in tree()) {
            let dir = tmp();
            let written = write(dir.path(), &t);
            let (_, r) = build(dir.path(), 1_700_000_000);
            let bytes = fs::read(&r.tar_path).unwrap();
            let i = read_and_verify(&bytes[..]).unwrap_or_else(|e| panic!("{e}"));
            prop_assert_eq!(i.composefs_digest, r.module.composefs.digest);
            // Every written file and link is in the index, as written.
            let by_path: BTreeMap<&str, &powernode_module::artifact::index::IndexEntry> =
                i.index.entries.iter().map(|e| (e.path.as_str(), e)).collect();
            for (p, n) in &written {
                let e = by_path.get(p.as_str()).unwrap_or_else(|| panic!("{p} missing"));
                match (n, &e.kind) {
                    (Node::File(data, exec), EntryKind::File { size, fsverity, inline }) => {
                        prop_assert_eq!(*size, data.len() as u64);
                        let mut h = composefs::fsverity::FsVerityHasher::<
                            composefs::fsverity::Sha256HashValue, 12>::new();
                        std::io::Write::write_all(&mut h, data).unwrap();
                        use composefs::fsverity::FsVerityHashValue;
                        prop_assert_eq!(fsverity.hex(), h.digest().to_hex());
                        prop_assert_eq!(inline.is_some(), data.len() <= 64);
                        prop_assert_eq!(e.mode, if *exec { 0o755 } else { 0o644 });
                    }
                    (Node::Link(target), EntryKind::Symlink { target: got }) => {
                        prop_assert_eq!(target, got);
                    }
                    (n, k) => prop_assert!(false, "{p}: wrote {n:?}, index has {k:?}"),
                }
            }
            // And the tar carries exactly those bytes.
            let mut a = tar::Archive::new(&bytes[..]);
            for entry in a.entries().unwrap() {
                let mut entry = entry.unwrap();
                let path = entry.path().unwrap().to_string_lossy().trim_end_matches('/').to_owned();
                if let Some(Node::File(data, _)) = written.get(&path) {
                    let mut got = Vec::new();
                    std::io::Read::read_to_end(&mut entry, &mut got).unwrap();
                    prop_assert_eq!(&got, data, "{}", path);
                }
            }
        }
    }
}
