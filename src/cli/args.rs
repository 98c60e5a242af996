use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::engine::ArgValueCandidates;

use crate::report::OutputMode;

/// Runs CI jobs in throwaway Linux guests built with Nix.
#[derive(Debug, Parser)]
#[command(name = "pikaci", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Default, Args)]
pub struct Global {
    /// The configuration file (default: pikaci.toml here or in a parent directory).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where runs and caches live (default: .pikaci/ beside pikaci.toml).
    #[arg(long, global = true, env = "PIKACI_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Run guests on this host instead of `[defaults] host` (`local`, `ssh://user@host:port`).
    #[arg(
        long,
        global = true,
        env = "PIKACI_HOST",
        value_name = "HOST",
        add = ArgValueCandidates::new(super::complete::hosts)
    )]
    pub host: Option<String>,
    /// The SSH key instead of `[ssh] identity-file`.
    #[arg(
        long,
        global = true,
        env = "PIKACI_SSH_IDENTITY_FILE",
        value_name = "FILE"
    )]
    pub ssh_identity_file: Option<PathBuf>,
    /// The known-hosts file instead of `[ssh] known-hosts-file`.
    #[arg(
        long,
        global = true,
        env = "PIKACI_SSH_KNOWN_HOSTS_FILE",
        value_name = "FILE"
    )]
    pub ssh_known_hosts_file: Option<PathBuf>,
    /// A prebuilt microVM runner installable instead of `[backends.microvm] runner`.
    #[arg(
        long,
        global = true,
        env = "PIKACI_MICROVM_RUNNER",
        value_name = "INSTALLABLE"
    )]
    pub microvm_runner: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run targets or jobs (default: every target).
    Run(RunArgs),
    /// Run a recorded run's jobs again on its recorded snapshot.
    Rerun(RerunArgs),
    /// List targets and jobs.
    Targets,
    /// List runs, oldest first.
    Runs(RunsArgs),
    /// Show one run and its jobs.
    Status(StatusArgs),
    /// Print job logs.
    Logs(LogsArgs),
    /// Remove old runs and the snapshots only they used.
    Gc(GcArgs),
    /// Show runs, jobs, timelines and live logs in a browser (read-only).
    Serve(ServeArgs),
    /// Check what the configured backends need on each host of the pool, with fixes.
    Doctor(DoctorArgs),
    /// List the pool's hosts: reachable or not, slots, labels, KVM, Nix, free disk.
    Hosts(HostsArgs),
    /// Write a commented starter pikaci.toml for this repository.
    Init(InitArgs),
    /// Print the shell script that completes commands, target, job and run names.
    Completions(CompletionsArgs),
    /// Print a man page (roff), or write all of them with --dir.
    Man(ManArgs),
    /// Print what pikaci generates, to inspect or regenerate it.
    #[command(subcommand)]
    Render(RenderCommand),
    /// Build, import and list Incus images for the `incus` backend (on the guest host).
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the image with `nix build` on the host; the result is the GC root that
    /// `image import` takes by default.
    Build(ImageBuildArgs),
    /// Import an image directory and point the alias at it, then remove the image the
    /// alias named before unless an instance or another alias still uses it.
    Import(ImageImportArgs),
    /// List the project's images and how many instances were made from each.
    List,
}

#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// The image installable; `.#x` and `./dir#x` are relative to pikaci.toml's
    /// directory (local host only).
    #[arg(default_value = ".#incus-image")]
    pub installable: String,
}

#[derive(Debug, Args)]
pub struct ImageImportArgs {
    /// A directory on the host with `metadata.tar*` and `rootfs.tar*`, `rootfs.squashfs`
    /// or `*.qcow2` (default: the last `pikaci image build`).
    pub dir: Option<PathBuf>,
    /// The alias to point at the image (default: `backends.incus.image`).
    #[arg(long)]
    pub alias: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RenderCommand {
    /// The microVM guest flake for the configured guest profile.
    GuestFlake(GuestFlakeArgs),
}

#[derive(Debug, Args)]
pub struct GuestFlakeArgs {
    /// Override `backends.microvm.hypervisor`.
    #[arg(long)]
    pub hypervisor: Option<String>,
    /// Override `backends.microvm.vcpu`.
    #[arg(long)]
    pub vcpu: Option<u32>,
    /// Override `backends.microvm.memory` (e.g. 4GiB).
    #[arg(long)]
    pub memory: Option<String>,
    /// Override `backends.microvm.pikaci-flake`.
    #[arg(long, value_name = "FLAKE")]
    pub pikaci_flake: Option<String>,
    /// Print only the profile hash that names the runner.
    #[arg(long)]
    pub hash: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Only this host of the pool (`[hosts.NAME]`), or, for a pool of one, another url
    /// to check instead (`local` or `ssh://user@host:port`).
    #[arg(long, value_name = "HOST", add = ArgValueCandidates::new(super::complete::hosts))]
    pub host: Option<String>,
}

#[derive(Debug, Args)]
pub struct HostsArgs {
    /// One JSON array of the hosts, for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Replace an existing pikaci.toml.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The page: `pikaci` (default), a command (`run`, `image build`), or `pikaci.toml`
    /// for the configuration reference.
    pub page: Vec<String>,
    /// Write every page to DIR/man1/ and DIR/man5/ instead.
    #[arg(long, value_name = "DIR", conflicts_with = "page")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Execution {
    /// How many jobs and builds run at once (default: the number of cores).
    #[arg(long = "jobs", short = 'j', value_name = "N")]
    pub parallel: Option<usize>,
    #[arg(long, value_enum, default_value = "human")]
    pub output: OutputMode,
    /// Plain lines even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Also write a JUnit XML report (a testsuite per target, a testcase per job).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also write a Markdown summary (appended to $GITHUB_STEP_SUMMARY when that is set).
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Run a job that does not pass up to N more times (instead of each job's `retries`).
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Fail the run (exit 1) when a job is flaky: it failed, then passed on a retry.
    #[arg(long)]
    pub fail_on_flaky: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Targets or jobs to run.
    #[arg(add = ArgValueCandidates::new(super::complete::targets_and_jobs))]
    pub names: Vec<String>,
    /// Compare path filters against this revision (default: merge-base with upstream).
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// Build flake targets' jobs even when their outputs are already valid or cached.
    #[arg(long)]
    pub no_cache_skip: bool,
    #[command(flatten)]
    pub execution: Execution,
}

#[derive(Debug, Args)]
pub struct RerunArgs {
    /// A run id or `latest`.
    #[arg(add = ArgValueCandidates::new(super::complete::runs))]
    pub run: String,
    /// Only the jobs that did not pass.
    #[arg(long)]
    pub failed: bool,
    #[command(flatten)]
    pub execution: Execution,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A run id or `latest`.
    #[arg(add = ArgValueCandidates::new(super::complete::runs))]
    pub run: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// A run id or `latest`.
    #[arg(add = ArgValueCandidates::new(super::complete::runs))]
    pub run: String,
    /// Only this job's log.
    #[arg(long, add = ArgValueCandidates::new(super::complete::jobs))]
    pub job: Option<String>,
    /// Keep printing the job's log as it grows, until the job ends.
    #[arg(long, short = 'f', requires = "job")]
    pub follow: bool,
    /// The backend's side instead of the job's output: the guest's console, `incus`'s
    /// and virtiofsd's messages (`host.log`).
    #[arg(long)]
    pub host_log: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// How many finished runs to keep, newest first.
    #[arg(long, default_value_t = 20)]
    pub keep: usize,
    /// Also hash every stored object and drop the damaged ones, with the snapshots that
    /// use them (the next run stores them again from the workspace).
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on; anything but loopback lets others read the logs.
    #[arg(long, value_name = "ADDR", default_value = crate::serve::DEFAULT_LISTEN)]
    pub listen: String,
}
