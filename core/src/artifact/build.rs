//! `module-builder build`: plan → digests → tar (+ composefs digest) → `dist/`.

use super::{
    COMPOSEFS_FORMAT, INDEX_JSON, MANIFEST_YAML, MODULE_RELEASE, ROOTFS,
    composefs::Tree,
    hash::{self, Content, FileHash, open_checked},
    index::{EntryKind, INDEX_SCHEMA_VERSION, Index, IndexEntry, Inline},
    plan::Plan,
    release::Release,
    walk::{Kind, WalkError},
    writer::{HashingSink, header},
};
use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::{
    fs, io,
    path::{Path, PathBuf},
};
use tar::EntryType;

/// Inputs of a build besides the module directory. Together with the manifest and rootfs
/// they determine every byte of the artifact.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub source_date_epoch: u64,
    pub version: String,
    pub git_commit: String,
    pub architecture: String,
    /// Recorded as BUILDER_VERSION, e.g. `module-builder 0.1.0`.
    pub builder_version: String,
}

/// `dist/module.json`: what was built, for CI steps and humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleJson {
    pub name: String,
    pub version: String,
    pub category: String,
    pub variety: String,
    pub tar: TarInfo,
    pub composefs: ComposefsInfo,
    pub files: usize,
    pub source_date_epoch: u64,
    pub git_commit: String,
    pub builder_version: String,
    pub architecture: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TarInfo {
    pub path: String,
    pub sha256: Digest,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposefsInfo {
    pub digest: Digest,
    pub format: u32,
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub tar_path: PathBuf,
    pub json_path: PathBuf,
    pub module: ModuleJson,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error(transparent)]
    Composefs(#[from] super::composefs::TreeError),
    #[error("writing {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Reserves disk space for the whole tar up front (an over-estimate, trimmed afterwards).
/// Besides failing early on a full disk, this spares the filesystem from allocating blocks
/// piecemeal during the write, which on ext4 measurably speeds up writing large artifacts.
/// Filesystems without `fallocate` simply skip it.
fn reserve(file: &fs::File, plan: &Plan, index_len: u64) -> bool {
    let padded = |n: u64| n.div_ceil(512) * 512;
    let mut total = 8 * 512 + padded(index_len) + padded(plan.manifest_text.len() as u64) + 1024;
    for e in &plan.entries {
        // Header, plus a GNU long-name record for long paths or link targets.
        total += 512 + 2 * (512 + padded(e.node.rel.len() as u64 + 8));
        if let Kind::File { size } = e.node.kind {
            total += padded(size);
        }
    }
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::KEEP_SIZE, 0, total).is_ok()
}

/// The index carries the bytes of files composefs would inline.
fn inline_of(bytes: &[u8]) -> Option<Inline> {
    (bytes.len() as u64 <= hash::INLINE_MAX).then(|| Inline(bytes.into()))
}

fn rootfs_path(rel: &str) -> String {
    format!("{ROOTFS}/{rel}")
}

/// Builds `plan` into `out_dir/module.tar` and `out_dir/module.json`.
///
/// Both files are written under temporary names and renamed into place, so a failed build
/// never leaves a truncated artifact where a CI step would pick it up.
pub fn build(plan: &Plan, opts: &BuildOptions, out_dir: &Path) -> Result<BuildReport, BuildError> {
    let out_err = |path: &Path| {
        let path = path.to_owned();
        move |source| BuildError::Output {
            path: path.clone(),
            source,
        }
    };
    fs::create_dir_all(out_dir).map_err(out_err(out_dir))?;
    let tar_path = out_dir.join("module.tar");
    let json_path = out_dir.join("module.json");
    // A previous build's outputs go first: a build that fails must not leave an older
    // artifact behind that looks like its result.
    for stale in [&tar_path, &json_path] {
        match fs::remove_file(stale) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(out_err(stale)(e)),
        }
    }

    // 1. Per-file digests (the index, written first, needs them).
    let files: Vec<_> = plan
        .entries
        .iter()
        .filter(|e| matches!(e.node.kind, Kind::File { .. }))
        .map(|e| &e.node)
        .collect();
    let t0 = std::time::Instant::now();
    let hashes = hash::hash_files(&plan.rootfs, &files)?;
    tracing::debug!(
        ms = t0.elapsed().as_millis() as u64,
        files = files.len(),
        "hashed files"
    );

    // 2. Index, release, composefs tree.
    let m = &plan.manifest;
    let release = Release {
        name: m.identity.name.to_string(),
        version_id: opts.version.clone(),
        category: m.identity.category.to_string(),
        variety: m.identity.variety.to_string(),
        source_date_epoch: opts.source_date_epoch,
        git_commit: opts.git_commit.clone(),
        builder_version: opts.builder_version.clone(),
        architecture: opts.architecture.clone(),
    };
    let release_bytes = release.to_bytes();
    let manifest_bytes = plan.manifest_text.as_bytes();
    let mut entries = vec![
        IndexEntry {
            path: MANIFEST_YAML.into(),
            mode: 0o644,
            kind: EntryKind::File {
                size: manifest_bytes.len() as u64,
                fsverity: hash::fsverity_of(manifest_bytes),
                inline: inline_of(manifest_bytes),
            },
        },
        IndexEntry {
            path: MODULE_RELEASE.into(),
            mode: 0o644,
            kind: EntryKind::File {
                size: release_bytes.len() as u64,
                fsverity: hash::fsverity_of(&release_bytes),
                inline: inline_of(&release_bytes),
            },
        },
        IndexEntry {
            path: ROOTFS.into(),
            mode: 0o755,
            kind: EntryKind::Dir,
        },
    ];
    let mut tree = Tree::new(opts.source_date_epoch);
    let mut file_hashes = hashes.iter();
    let mut per_entry: Vec<Option<&FileHash>> = Vec::with_capacity(plan.entries.len());
    for e in &plan.entries {
        let rel = &e.node.rel;
        let (kind, fh) = match &e.node.kind {
            Kind::Dir => {
                tree.add_dir(rel, e.mode)?;
                (EntryKind::Dir, None)
            }
            Kind::File { size } => {
                let fh = file_hashes.next().expect("one hash per planned file");
                tree.add_file(rel, e.mode, *size, fh.content.clone())?;
                (
                    EntryKind::File {
                        size: *size,
                        fsverity: fh.fsverity,
                        inline: match &fh.content {
                            Content::Inline(b) => Some(Inline(b.clone())),
                            Content::External(_) => None,
                        },
                    },
                    Some(fh),
                )
            }
            Kind::Symlink { target } => {
                tree.add_symlink(rel, target)?;
                (
                    EntryKind::Symlink {
                        target: target.clone(),
                    },
                    None,
                )
            }
        };
        per_entry.push(fh);
        entries.push(IndexEntry {
            path: rootfs_path(rel),
            mode: e.mode,
            kind,
        });
    }
    let index = Index {
        schema_version: INDEX_SCHEMA_VERSION,
        module: m.identity.name.to_string(),
        entries,
    };
    let composefs_digest = tree.digest();
    drop(tree);
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "composefs digest");

    // 3. The tar, streamed through the hashing sink into a temporary file.
    let tmp_tar = out_dir.join(".module.tar.partial");
    let file = fs::File::create(&tmp_tar).map_err(out_err(&tmp_tar))?;
    let reserved = reserve(&file, plan, index.to_bytes().len() as u64);
    let sink = HashingSink::new(file);
    let mtime = opts.source_date_epoch;
    let mut tb = tar::Builder::new(sink);
    let io_err = out_err(&tmp_tar);
    type Sink = HashingSink<fs::File>;
    let write = |tb: &mut tar::Builder<Sink>, path: &str, mode: u32, data: &[u8]| {
        let mut h = header(EntryType::Regular, mode, data.len() as u64, mtime);
        tb.append_data(&mut h, path, data)
    };
    (|| -> io::Result<()> {
        write(&mut tb, INDEX_JSON, 0o644, &index.to_bytes())?;
        write(&mut tb, MANIFEST_YAML, 0o644, manifest_bytes)?;
        write(&mut tb, MODULE_RELEASE, 0o644, &release_bytes)?;
        let mut h = header(EntryType::Directory, 0o755, 0, mtime);
        tb.append_data(&mut h, format!("{ROOTFS}/"), io::empty())?;
        Ok(())
    })()
    .map_err(&io_err)?;
    for (e, fh) in plan.entries.iter().zip(&per_entry) {
        let path = rootfs_path(&e.node.rel);
        match &e.node.kind {
            Kind::Dir => {
                let mut h = header(EntryType::Directory, e.mode, 0, mtime);
                tb.append_data(&mut h, format!("{path}/"), io::empty())
                    .map_err(&io_err)?;
            }
            Kind::Symlink { target } => {
                let mut h = header(EntryType::Symlink, e.mode, 0, mtime);
                tb.append_link(&mut h, &path, target).map_err(&io_err)?;
            }
            Kind::File { size } => {
                if let Some(data) = fh.and_then(|f| f.data.as_deref()) {
                    // Kept from hashing: pack exactly the bytes that were hashed.
                    write(&mut tb, &path, e.mode, data).map_err(&io_err)?;
                    continue;
                }
                let src = plan.rootfs.join(&e.node.rel);
                let mut file = open_checked(&src, &e.node.stamp)?;
                // tar-rs writes the header (and any GNU long-name record) for an entry of
                // `size` bytes; the data is then read straight into the sink's buffers and
                // padded to the 512-byte record, as `append_data` itself would.
                let mut h = header(EntryType::Regular, e.mode, *size, mtime);
                tb.append_data(&mut h, &path, io::empty())
                    .map_err(&io_err)?;
                let sink = tb.get_mut();
                sink.copy_exact(&mut file, *size).map_err(|err| {
                    if err.kind() == io::ErrorKind::UnexpectedEof {
                        BuildError::Walk(WalkError::Changed {
                            path: src.clone(),
                            what: "shorter than when scanned",
                        })
                    } else {
                        BuildError::Walk(WalkError::io(&src, err))
                    }
                })?;
                let pad = (512 - (*size % 512)) % 512;
                io::Write::write_all(sink, &[0u8; 512][..pad as usize]).map_err(&io_err)?;
                hash::check_unchanged(&file, &src, &e.node.stamp)?;
            }
        }
    }
    let sink = tb.into_inner().map_err(&io_err)?;
    let (tar_sha256, tar_size) = sink.finish().map_err(&io_err)?;
    if reserved {
        // Give back whatever the reservation over-estimated.
        fs::OpenOptions::new()
            .write(true)
            .open(&tmp_tar)
            .and_then(|f| f.set_len(tar_size))
            .map_err(&io_err)?;
    }
    tracing::debug!(ms = t0.elapsed().as_millis() as u64, "tar written");

    let module = ModuleJson {
        name: release.name.clone(),
        version: release.version_id.clone(),
        category: release.category.clone(),
        variety: release.variety.clone(),
        tar: TarInfo {
            path: "module.tar".into(),
            sha256: tar_sha256,
            size: tar_size,
        },
        composefs: ComposefsInfo {
            digest: composefs_digest,
            format: COMPOSEFS_FORMAT,
        },
        files: files.len(),
        source_date_epoch: opts.source_date_epoch,
        git_commit: opts.git_commit.clone(),
        builder_version: opts.builder_version.clone(),
        architecture: opts.architecture.clone(),
    };
    let tmp_json = out_dir.join(".module.json.partial");
    let mut json = serde_json::to_vec_pretty(&module).unwrap_or_default();
    json.push(b'\n');
    fs::write(&tmp_json, json).map_err(out_err(&tmp_json))?;
    fs::rename(&tmp_tar, &tar_path).map_err(out_err(&tar_path))?;
    fs::rename(&tmp_json, &json_path).map_err(out_err(&json_path))?;
    Ok(BuildReport {
        tar_path,
        json_path,
        module,
    })
}
