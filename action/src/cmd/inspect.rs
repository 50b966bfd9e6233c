//! `module-builder inspect`: verify an artifact and show what is in it.

use crate::cli::{Format, InspectArgs};
use anyhow::Context;
use powernode_module::artifact::{index::EntryKind, read_and_verify};
use serde_json::json;
use std::{fs::File, io::BufReader, process::ExitCode};

pub fn run(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let f = File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?;
    let i = read_and_verify(BufReader::with_capacity(1 << 20, f))
        .with_context(|| format!("{} failed verification", a.file.display()))?;
    match a.format {
        Format::Json => {
            let v = json!({
                "verified": true,
                "tar": {"sha256": i.tar_sha256, "size": i.tar_size},
                "composefs": {"digest": i.composefs_digest, "format": powernode_module::artifact::COMPOSEFS_FORMAT},
                "release": {
                    "name": i.release.name, "version_id": i.release.version_id,
                    "category": i.release.category, "variety": i.release.variety,
                    "source_date_epoch": i.release.source_date_epoch,
                    "git_commit": i.release.git_commit,
                    "builder_version": i.release.builder_version,
                    "architecture": i.release.architecture,
                },
                "files": i.file_count,
                "index": i.index,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Human => {
            let r = &i.release;
            println!("verified: every entry matches index.json");
            println!("module:           {} {}", r.name, r.version_id);
            println!("category/variety: {}/{}", r.category, r.variety);
            println!("tar sha256:       {} ({} bytes)", i.tar_sha256, i.tar_size);
            println!(
                "composefs digest: {} (format {})",
                i.composefs_digest,
                powernode_module::artifact::COMPOSEFS_FORMAT
            );
            println!("source date:      {}", r.source_date_epoch);
            println!(
                "git commit:       {}",
                if r.git_commit.is_empty() {
                    "-"
                } else {
                    &r.git_commit
                }
            );
            println!(
                "builder:          {} ({})",
                r.builder_version, r.architecture
            );
            println!("files:            {}", i.file_count);
            println!();
            for e in &i.index.entries {
                match &e.kind {
                    EntryKind::Dir => println!("d {:04o} {:>10}  {}/", e.mode, "", e.path),
                    EntryKind::File { size, fsverity, .. } => {
                        println!(
                            "- {:04o} {:>10}  {}  {}",
                            e.mode,
                            size,
                            e.path,
                            &fsverity.hex()[..16]
                        )
                    }
                    EntryKind::Symlink { target } => {
                        println!("l {:04o} {:>10}  {} -> {}", e.mode, "", e.path, target)
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
