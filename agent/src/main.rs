use clap::Parser;
use module_agent::{
    apply::Outcome,
    cli::{Cli, Command, Format},
    generation::Layout,
    objects::{Objects, fsverity_of_reader},
};
use std::{io::IsTerminal, process::ExitCode, time::Duration};

/// Composition (desired-state recomputation here, a generation's tree on the agent) spends
/// most of its time in composefs' allocation-heavy image writer: mimalloc about halves it
/// against glibc's malloc (`bench/fleet.sh`, ARCHITECTURE.md "Performance").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        fmt.init();
    } else {
        fmt.json().init();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("module-agent: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let opts = cli.opts.resolve()?;
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Apply { .. } => {
            let agent = opts.agent()?;
            let outcome = rt.block_on(agent.apply_once())?;
            println!("{}", describe(&outcome));
            Ok(match outcome {
                Outcome::Unchanged | Outcome::Applied { .. } | Outcome::Held { .. } => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(1),
            })
        }
        Command::Run => {
            let agent = opts.agent()?;
            let every = Duration::from_secs(opts.interval.unwrap_or(60).max(1));
            rt.block_on(async {
                loop {
                    match agent.apply_once().await {
                        Ok(o) => tracing::info!(outcome = %describe(&o), "reconciled"),
                        Err(e) => tracing::warn!(error = %format!("{e:#}"), "reconcile failed; will retry"),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = tokio::signal::ctrl_c() => return,
                    }
                }
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { format } => status(&opts.layout(), format),
        Command::Rollback => {
            let switch = opts.switch();
            let l = opts.layout();
            let _lock = l.lock()?;
            if let Some(undone) = switch.recover()? {
                println!("{undone}");
            }
            let (Some(cur), Some(prev)) = (l.current(), l.pointed("previous")) else {
                eprintln!("module-agent: no previous generation to roll back to");
                return Ok(ExitCode::from(1));
            };
            match switch.enter(&l.meta(prev)?, Some(&cur)) {
                Ok(()) => {
                    println!("rolled back to generation {prev}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(why) => {
                    eprintln!("module-agent: rollback to generation {prev} failed: {why}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Verify => verify(&opts.layout()),
    }
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Unchanged => "unchanged: the desired state is what runs".into(),
        Outcome::Applied { generation } => format!("applied: generation {generation} is active"),
        Outcome::Failed { reason } => format!("failed: {reason}"),
        Outcome::Held { reason } => format!("held: {reason}"),
        Outcome::Rejected { reason } => format!("rejected: {reason}"),
    }
}

fn status(l: &Layout, format: Format) -> anyhow::Result<ExitCode> {
    let current = l.pointed("current");
    let previous = l.pointed("previous");
    let generations: Vec<_> = l
        .list()
        .into_iter()
        .filter_map(|n| l.meta(n).ok())
        .collect();
    let last_report: Option<serde_json::Value> = std::fs::read(l.state.join("last-report.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let pending = l.state.join("pending-report.json").exists();
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "current": current, "previous": previous, "generations": generations,
                "last_report": last_report, "report_pending": pending,
            }))?
        ),
        Format::Human => {
            for g in &generations {
                let mark = if Some(g.number) == current {
                    "* current "
                } else if Some(g.number) == previous {
                    "  previous"
                } else {
                    "          "
                };
                let mods: Vec<String> = g
                    .modules
                    .iter()
                    .map(|m| format!("{}@{}", m.name, m.version))
                    .collect();
                println!("{mark} {:>3}  {}  {}", g.number, g.state_id, mods.join(" "));
            }
            if generations.is_empty() {
                println!("no generation yet");
            }
            if let Some(r) = last_report {
                println!("last report: {} ({})", r["status"], r["message"]);
            }
            if pending {
                println!("a report is waiting to be sent");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Re-hashes every file of the active tree against the generation's composition and the
/// object store; prints what was altered.
fn verify(l: &Layout) -> anyhow::Result<ExitCode> {
    let Some(n) = l.pointed("current") else {
        eprintln!("module-agent: no active generation");
        return Ok(ExitCode::from(1));
    };
    let meta = l.meta(n)?;
    let gen_dir = l.generations().join(n.to_string());
    let mut bad = Vec::new();
    let measured = fsverity_of_reader(std::fs::File::open(gen_dir.join("image.cfs"))?)?;
    if measured.to_string() != meta.composefs_digest {
        bad.push(format!(
            "image.cfs measures {measured}, recorded {}",
            meta.composefs_digest
        ));
    }
    let manifest: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(gen_dir.join("files.json"))?)?;
    let objects = Objects::new(&l.state);
    for (rel, want) in &manifest {
        let p = gen_dir.join("tree").join(rel);
        let got = std::fs::File::open(&p)
            .map_err(anyhow::Error::from)
            .and_then(fsverity_of_reader);
        match got {
            Ok(d) if d.to_string() == *want => {}
            Ok(d) => bad.push(format!("/{rel}: content {d}, expected {want}")),
            Err(e) => bad.push(format!("/{rel}: {e}")),
        }
        if let Ok(d) = want.parse()
            && std::fs::metadata(objects.path(&d)).is_ok()
            && !objects.check(&d)?
        {
            bad.push(format!("object {want} was altered"));
        }
    }
    // Modes (setuid and setgid bits included) and owners, as the signed index gives them.
    let modes: std::collections::BTreeMap<String, u32> = std::fs::read(gen_dir.join("modes.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let root_owned = module_agent::generation::is_root();
    for (rel, want) in &modes {
        let p = gen_dir.join("tree").join(rel);
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            bad.push(format!("/{rel}: missing"));
            continue;
        };
        let got = std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777;
        if got != *want {
            bad.push(format!("/{rel}: mode {got:04o}, expected {want:04o}"));
        }
        let (uid, gid) = (
            std::os::unix::fs::MetadataExt::uid(&m),
            std::os::unix::fs::MetadataExt::gid(&m),
        );
        if root_owned && (uid, gid) != (0, 0) {
            bad.push(format!("/{rel}: owner {uid}:{gid}, expected 0:0"));
        }
    }
    if bad.is_empty() {
        println!("generation {n}: {} files verified", manifest.len());
        Ok(ExitCode::SUCCESS)
    } else {
        for b in &bad {
            println!("TAMPERED {b}");
        }
        Ok(ExitCode::from(1))
    }
}
