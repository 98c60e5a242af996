//! Change detection for path-filtered targets.
//!
//! A target declaring `paths = ["src/**", "Cargo.*"]` runs only when a file
//! matching one of those globs changed against a *base* revision, which is
//! resolved once per run by [`resolve`]:
//!
//! - The workspace is not inside a git work tree, or the repository has no
//!   commits: [`Base::Everything`], every target runs and the reason says why.
//! - An explicit base `REV`: the base is `git merge-base REV HEAD` (three-dot
//!   semantics, like a pull request). A `REV` that does not name a commit is an
//!   error. No adjustment is made when the merge-base is HEAD itself: an
//!   explicit base is taken literally.
//! - Otherwise, if HEAD has an upstream, the base is `merge-base(upstream,
//!   HEAD)`, unless that is HEAD itself (nothing ahead of upstream, the usual
//!   state of a fresh CI clone): then HEAD's first parent is used, so the
//!   commit being checked out is what counts.
//! - Without an upstream, HEAD's first parent is the base.
//! - When HEAD has no parent (a root commit), the base is the empty tree and
//!   every tracked file counts as changed. In a shallow clone, where a missing
//!   parent may just be history that was not fetched, or when HEAD and the
//!   base share no history, the result is [`Base::Everything`] instead.
//!
//! The changed files are `git diff --name-only --no-renames BASE` (committed,
//! staged and unstaged changes; a rename counts as its deletion and its
//! addition) plus untracked files that are not ignored. When the workspace is
//! a subdirectory of the repository, only files below it count, and their
//! paths are relative to it. Names that are not UTF-8 are converted lossily.
//!
//! Patterns are [`globset`] globs matched against those `/`-separated paths
//! with `literal_separator` on: `*` never crosses a `/`, so `src/*` matches
//! `src/lib.rs` but not `src/a/b.rs`, while `src/**` matches both. A pattern
//! without `/`, such as `Cargo.*`, therefore matches only at the top of the
//! workspace; write `**/Cargo.*` to match at any depth. An empty pattern list
//! means the target always runs.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::process::Output;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::git::{Git, GitError, stderr_tail};

/// How many hex digits of a commit id messages show.
const SHORT_REV_LEN: usize = 7;

/// What the run compares against, resolved once per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// Compare the workspace against this commit (or tree) id.
    Rev {
        /// Full object id; the empty tree's id for [`BaseSource::EmptyTree`].
        rev: String,
        how: BaseSource,
    },
    /// No usable base: every target runs.
    Everything { reason: String },
}

/// Why a [`Base::Rev`] was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseSource {
    /// Merge-base of HEAD and the revision given on the command line.
    Explicit { given: String },
    /// Merge-base of HEAD and its upstream branch (e.g. `origin/main`).
    UpstreamMergeBase { upstream: String },
    /// HEAD's first parent.
    ParentOfHead,
    /// HEAD is a root commit; everything tracked counts as changed.
    EmptyTree,
}

/// The resolved base and the files changed since it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSet {
    base: Base,
    /// Workspace-relative, `/`-separated, sorted and deduplicated.
    changed: Vec<String>,
}

/// The compiled `paths` globs of one target, with the original patterns kept
/// for messages.
#[derive(Debug, Clone)]
pub struct PathFilter {
    patterns: Vec<String>,
    set: GlobSet,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("base revision `{rev}` does not name a commit: {stderr}")]
    UnknownBase { rev: String, stderr: String },
    #[error("invalid path glob `{pattern}`")]
    InvalidGlob {
        pattern: String,
        #[source]
        source: globset::Error,
    },
}

/// Resolves the base for this run and collects the files changed since it.
pub fn resolve(workspace: &Path, explicit_base: Option<&str>) -> Result<ChangeSet, ChangesError> {
    let git = Git::new(workspace);
    let base = resolve_base(&git, explicit_base)?;
    let changed = match &base {
        Base::Rev { rev, .. } => changed_files(&git, rev)?,
        Base::Everything { .. } => Vec::new(),
    };
    Ok(ChangeSet { base, changed })
}

impl ChangeSet {
    /// `None` when a target filtered by `filter` must run, `Some(reason)` when
    /// it can be skipped.
    pub fn skip_reason(&self, filter: &PathFilter) -> Option<String> {
        if filter.is_empty() || matches!(self.base, Base::Everything { .. }) {
            return None;
        }
        if self.changed.iter().any(|path| filter.matches(path)) {
            return None;
        }
        Some(format!(
            "no file matching {} changed since {}",
            filter.patterns.join(", "),
            self.base
        ))
    }

    pub fn base(&self) -> &Base {
        &self.base
    }

    /// The changed paths, relative to the workspace; empty for
    /// [`Base::Everything`].
    pub fn changed(&self) -> &[String] {
        &self.changed
    }
}

impl PathFilter {
    /// Compiles `patterns`; an empty list gives a filter that never skips.
    pub fn new(patterns: &[String]) -> Result<PathFilter, ChangesError> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            builder.add(compile_glob(pattern)?);
        }
        // Every glob compiled on its own, so building the set can only fail on
        // resource limits; blame the whole list then.
        let set = builder
            .build()
            .map_err(|source| ChangesError::InvalidGlob {
                pattern: patterns.join(", "),
                source,
            })?;
        Ok(PathFilter {
            patterns: patterns.to_vec(),
            set,
        })
    }

    /// True when the filter has no patterns, i.e. the target always runs.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as written.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether a workspace-relative, `/`-separated path matches any pattern.
    pub fn matches(&self, path: &str) -> bool {
        self.set.is_match(path)
    }
}

fn compile_glob(pattern: &str) -> Result<globset::Glob, ChangesError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|source| ChangesError::InvalidGlob {
            pattern: pattern.to_owned(),
            source,
        })
}

impl fmt::Display for Base {
    /// The base as messages name it, e.g. `1a2b3c4 (merge-base with origin/main)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base::Rev {
                how: BaseSource::EmptyTree,
                ..
            } => write!(f, "the empty tree (HEAD is a root commit)"),
            Base::Rev { rev, how } => write!(f, "{} ({how})", short_rev(rev)),
            Base::Everything { reason } => write!(f, "no base ({reason})"),
        }
    }
}

impl fmt::Display for BaseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaseSource::Explicit { given } => write!(f, "merge-base with {given}"),
            BaseSource::UpstreamMergeBase { upstream } => write!(f, "merge-base with {upstream}"),
            BaseSource::ParentOfHead => write!(f, "parent of HEAD"),
            BaseSource::EmptyTree => write!(f, "empty tree"),
        }
    }
}

fn short_rev(rev: &str) -> &str {
    rev.get(..SHORT_REV_LEN).unwrap_or(rev)
}

fn everything(reason: impl Into<String>) -> Base {
    Base::Everything {
        reason: reason.into(),
    }
}

fn resolve_base(git: &Git, explicit_base: Option<&str>) -> Result<Base, ChangesError> {
    if let Some(reason) = why_not_a_work_tree(git)? {
        return Ok(everything(reason));
    }
    let Some(head) = git.commit_id("HEAD")? else {
        return Ok(everything("the repository has no commits yet"));
    };
    match explicit_base {
        Some(given) => explicit_merge_base(git, given),
        None => implicit_base(git, &head),
    }
}

/// `Some(reason)` when the workspace is not inside a git work tree. Any
/// failure of the probe counts as "not a repository" (with git's words in the
/// reason): running every target is always a safe answer.
fn why_not_a_work_tree(git: &Git) -> Result<Option<String>, ChangesError> {
    let output = git.output(&["rev-parse", "--is-inside-work-tree"])?;
    if !output.status.success() {
        return Ok(Some(format!(
            "the workspace is not in a git repository ({})",
            stderr_tail(&output.stderr)
        )));
    }
    if stdout_line(&output) != "true" {
        return Ok(Some("the workspace is not inside a git work tree".into()));
    }
    Ok(None)
}

fn explicit_merge_base(git: &Git, given: &str) -> Result<Base, ChangesError> {
    let spec = format!("{given}^{{commit}}");
    let output = git.output(&["rev-parse", "--verify", "--end-of-options", &spec])?;
    if !output.status.success() {
        return Err(ChangesError::UnknownBase {
            rev: given.to_owned(),
            stderr: stderr_tail(&output.stderr),
        });
    }
    let rev = stdout_line(&output);
    let how = BaseSource::Explicit {
        given: given.to_owned(),
    };
    Ok(match git.merge_base(&rev)? {
        Some(rev) => Base::Rev { rev, how },
        None => no_common_history(git, given)?,
    })
}

fn implicit_base(git: &Git, head: &str) -> Result<Base, ChangesError> {
    let Some(upstream) = git.upstream()? else {
        return parent_of_head(git);
    };
    match git.merge_base("@{upstream}")? {
        // Nothing ahead of upstream: the checked-out commit's own change is
        // what matters, not an empty diff.
        Some(rev) if rev == head => parent_of_head(git),
        Some(rev) => Ok(Base::Rev {
            rev,
            how: BaseSource::UpstreamMergeBase { upstream },
        }),
        None => no_common_history(git, &upstream),
    }
}

fn parent_of_head(git: &Git) -> Result<Base, ChangesError> {
    if let Some(rev) = git.commit_id("HEAD^")? {
        return Ok(Base::Rev {
            rev,
            how: BaseSource::ParentOfHead,
        });
    }
    if git.is_shallow()? {
        return Ok(everything(
            "HEAD's parent is not in this shallow clone; fetch more history to filter by paths",
        ));
    }
    Ok(Base::Rev {
        rev: git.empty_tree()?,
        how: BaseSource::EmptyTree,
    })
}

fn no_common_history(git: &Git, other: &str) -> Result<Base, ChangesError> {
    let hint = if git.is_shallow()? {
        "; this is a shallow clone, fetch more history"
    } else {
        ""
    };
    Ok(everything(format!(
        "HEAD and {other} share no history{hint}"
    )))
}

/// Files changed since `base` plus untracked, non-ignored files, relative to
/// the workspace.
fn changed_files(git: &Git, base: &str) -> Result<Vec<String>, ChangesError> {
    // `--relative` limits the diff to the workspace and makes its paths
    // relative to it; `ls-files` already behaves that way.
    let diff = git.run(&[
        "diff",
        "--name-only",
        "-z",
        "--no-renames",
        "--no-ext-diff",
        "--relative",
        base,
        "--",
    ])?;
    let untracked = git.run(&["ls-files", "-z", "--others", "--exclude-standard"])?;
    let paths: BTreeSet<String> = nul_separated(&diff)
        .chain(nul_separated(&untracked))
        .collect();
    Ok(paths.into_iter().collect())
}

fn nul_separated(bytes: &[u8]) -> impl Iterator<Item = String> + '_ {
    bytes
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| String::from_utf8_lossy(name).into_owned())
}

/// What change detection asks git, on top of the one wrapper in [`crate::git`].
trait Queries {
    fn commit_id(&self, spec: &str) -> Result<Option<String>, ChangesError>;
    fn merge_base(&self, other: &str) -> Result<Option<String>, ChangesError>;
    fn upstream(&self) -> Result<Option<String>, ChangesError>;
    fn is_shallow(&self) -> Result<bool, ChangesError>;
    fn empty_tree(&self) -> Result<String, ChangesError>;
}

impl Queries for Git {
    /// The commit `spec` names, or `None` when it names nothing (`-q` makes
    /// git exit 1 silently in that case).
    fn commit_id(&self, spec: &str) -> Result<Option<String>, ChangesError> {
        let spec = format!("{spec}^{{commit}}");
        let args = ["rev-parse", "--verify", "-q", &spec];
        let output = self.output(&args)?;
        match output.status.code() {
            Some(0) => Ok(Some(stdout_line(&output))),
            Some(1) => Ok(None),
            _ => Err(self.failure(&args, &output).into()),
        }
    }

    /// The merge-base of `other` and HEAD, or `None` when they share no
    /// history (git exits 1 with no output then).
    fn merge_base(&self, other: &str) -> Result<Option<String>, ChangesError> {
        let args = ["merge-base", other, "HEAD"];
        let output = self.output(&args)?;
        match output.status.code() {
            Some(0) => Ok(Some(stdout_line(&output))),
            Some(1) if output.stdout.is_empty() => Ok(None),
            _ => Err(self.failure(&args, &output).into()),
        }
    }

    /// HEAD's upstream branch, e.g. `origin/main`. Any failure (detached
    /// HEAD, no tracking configuration, a gone remote branch) means none.
    fn upstream(&self) -> Result<Option<String>, ChangesError> {
        let output = self.output(&[
            "rev-parse",
            "--abbrev-ref",
            "--symbolic-full-name",
            "@{upstream}",
        ])?;
        let name = stdout_line(&output);
        Ok((output.status.success() && !name.is_empty()).then_some(name))
    }

    fn is_shallow(&self) -> Result<bool, ChangesError> {
        let out = self.run(&["rev-parse", "--is-shallow-repository"])?;
        Ok(String::from_utf8_lossy(&out).trim() == "true")
    }

    /// The empty tree's id in this repository's hash format (SHA-1 or
    /// SHA-256); git knows that object without it being stored.
    fn empty_tree(&self) -> Result<String, ChangesError> {
        let out = self.run(&["hash-object", "-t", "tree", "--stdin"])?;
        Ok(String::from_utf8_lossy(&out).trim().to_owned())
    }
}

fn stdout_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::process::Command;
    use tempfile::TempDir;

    /// Runs a setup git command isolated from the user's configuration and
    /// from any surrounding hook's environment; panics on failure.
    fn git(dir: &Path, args: &[&str]) -> String {
        let output = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .output()
            .expect("spawn git");
        assert!(
            output.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn configure(dir: &Path) {
        git(dir, &["config", "user.name", "Test"]);
        git(dir, &["config", "user.email", "test@example.com"]);
        git(dir, &["config", "commit.gpgsign", "false"]);
    }

    fn new_repo() -> TempDir {
        let dir = TempDir::new().expect("tempdir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        configure(dir.path());
        dir
    }

    fn write(dir: &Path, rel: &str, content: &str) {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, content).expect("write");
    }

    /// Writes the files, commits everything and returns the new commit id.
    fn commit(dir: &Path, files: &[&str], message: &str) -> String {
        for file in files {
            write(dir, file, message);
        }
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", message]);
        git(dir, &["rev-parse", "HEAD"])
    }

    fn filter(patterns: &[&str]) -> PathFilter {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        PathFilter::new(&patterns).expect("valid globs")
    }

    fn changed(set: &ChangeSet) -> Vec<&str> {
        set.changed().iter().map(String::as_str).collect()
    }

    /// A repository whose last commit touched only `src/lib.rs`.
    fn upstream_repo() -> TempDir {
        let dir = new_repo();
        commit(
            dir.path(),
            &["src/lib.rs", "docs/a.md", "Cargo.toml"],
            "one",
        );
        commit(dir.path(), &["src/lib.rs"], "two");
        dir
    }

    fn clone(origin: &Path) -> TempDir {
        let dir = TempDir::new().expect("tempdir");
        let origin = origin.to_str().expect("utf-8 tempdir");
        let dest = dir.path().to_str().expect("utf-8 tempdir");
        git(Path::new("/"), &["clone", "-q", origin, dest]);
        configure(dir.path());
        dir
    }

    #[test]
    fn not_a_repository_runs_everything() {
        let dir = TempDir::new().expect("tempdir");
        let set = resolve(dir.path(), None).expect("resolve");
        let Base::Everything { reason } = set.base() else {
            panic!("expected Everything, got {:?}", set.base());
        };
        assert!(
            reason.starts_with("the workspace is not in a git repository ("),
            "{reason}"
        );
        assert_eq!(set.skip_reason(&filter(&["src/**"])), None);
    }

    #[test]
    fn repository_without_commits_runs_everything() {
        let dir = new_repo();
        write(dir.path(), "src/lib.rs", "x");
        let set = resolve(dir.path(), None).expect("resolve");
        assert_eq!(
            set.base(),
            &Base::Everything {
                reason: "the repository has no commits yet".into()
            }
        );
        assert_eq!(set.skip_reason(&filter(&["docs/**"])), None);
    }

    #[test]
    fn root_commit_counts_every_tracked_file() {
        let dir = new_repo();
        write(dir.path(), ".gitignore", "target/\n");
        commit(dir.path(), &["src/lib.rs", "README.md"], "root");
        write(dir.path(), "target/out", "ignored");
        let set = resolve(dir.path(), None).expect("resolve");
        assert!(matches!(
            set.base(),
            Base::Rev {
                how: BaseSource::EmptyTree,
                ..
            }
        ));
        assert_eq!(changed(&set), [".gitignore", "README.md", "src/lib.rs"]);
        assert_eq!(
            set.skip_reason(&filter(&["docs/**"])).as_deref(),
            Some("no file matching docs/** changed since the empty tree (HEAD is a root commit)")
        );
    }

    #[test]
    fn fresh_clone_compares_against_parent_of_head() {
        let origin = upstream_repo();
        let work = clone(origin.path());
        assert_eq!(
            git(work.path(), &["rev-parse", "@{upstream}"]),
            git(work.path(), &["rev-parse", "HEAD"])
        );
        let parent = git(work.path(), &["rev-parse", "HEAD^"]);

        let set = resolve(work.path(), None).expect("resolve");
        assert_eq!(
            set.base(),
            &Base::Rev {
                rev: parent.clone(),
                how: BaseSource::ParentOfHead
            }
        );
        assert_eq!(changed(&set), ["src/lib.rs"]);
        assert_eq!(set.skip_reason(&filter(&["src/**"])), None);
        assert_eq!(
            set.skip_reason(&filter(&["docs/**", "Cargo.*"])),
            Some(format!(
                "no file matching docs/**, Cargo.* changed since {} (parent of HEAD)",
                &parent[..7]
            ))
        );
    }

    #[test]
    fn feature_branch_compares_against_merge_base_with_upstream() {
        let origin = upstream_repo();
        let work = clone(origin.path());
        let fork_point = git(work.path(), &["rev-parse", "HEAD"]);
        git(
            work.path(),
            &["checkout", "-q", "-b", "feature", "--track", "origin/main"],
        );
        commit(work.path(), &["a/x.rs"], "feature one");
        commit(work.path(), &["b/y.rs"], "feature two");
        // Upstream moves on; three-dot semantics must ignore its new change.
        commit(origin.path(), &["upstream-only.txt"], "three");
        git(work.path(), &["fetch", "-q"]);

        let set = resolve(work.path(), None).expect("resolve");
        assert_eq!(
            set.base(),
            &Base::Rev {
                rev: fork_point.clone(),
                how: BaseSource::UpstreamMergeBase {
                    upstream: "origin/main".into()
                }
            }
        );
        assert_eq!(changed(&set), ["a/x.rs", "b/y.rs"]);
        assert_eq!(
            set.skip_reason(&filter(&["src/**"])),
            Some(format!(
                "no file matching src/** changed since {} (merge-base with origin/main)",
                &fork_point[..7]
            ))
        );
    }

    #[test]
    fn shallow_clone_without_parent_runs_everything() {
        let origin = upstream_repo();
        let work = TempDir::new().expect("tempdir");
        let url = format!("file://{}", origin.path().display());
        let dest = work.path().to_str().expect("utf-8 tempdir");
        git(Path::new("/"), &["clone", "-q", "--depth", "1", &url, dest]);

        let set = resolve(work.path(), None).expect("resolve");
        let Base::Everything { reason } = set.base() else {
            panic!("expected Everything, got {:?}", set.base());
        };
        assert!(reason.contains("shallow clone"), "{reason}");
        assert_eq!(set.skip_reason(&filter(&["docs/**"])), None);
    }

    #[test]
    fn explicit_base_without_common_history_runs_everything() {
        let dir = upstream_repo();
        git(dir.path(), &["checkout", "-q", "--orphan", "unrelated"]);
        commit(dir.path(), &["other.txt"], "orphan");

        let set = resolve(dir.path(), Some("main")).expect("resolve");
        assert_eq!(
            set.base(),
            &Base::Everything {
                reason: "HEAD and main share no history".into()
            }
        );
    }

    #[test]
    fn explicit_base_uses_merge_base() {
        let dir = new_repo();
        let first = commit(dir.path(), &["src/lib.rs"], "one");
        git(dir.path(), &["checkout", "-q", "-b", "feature"]);
        commit(dir.path(), &["docs/a.md"], "two");
        git(dir.path(), &["checkout", "-q", "main"]);
        commit(dir.path(), &["main-only.txt"], "three");
        git(dir.path(), &["checkout", "-q", "feature"]);

        let set = resolve(dir.path(), Some("main")).expect("resolve");
        assert_eq!(
            set.base(),
            &Base::Rev {
                rev: first,
                how: BaseSource::Explicit {
                    given: "main".into()
                }
            }
        );
        assert_eq!(changed(&set), ["docs/a.md"]);
    }

    #[test]
    fn explicit_unknown_base_is_an_error_naming_it() {
        let dir = upstream_repo();
        let err = resolve(dir.path(), Some("no-such-branch")).expect_err("unknown base");
        let text = err.to_string();
        assert!(matches!(err, ChangesError::UnknownBase { .. }), "{err:?}");
        assert!(text.contains("`no-such-branch`"), "{text}");
        assert!(text.contains("fatal:"), "stderr tail missing: {text}");
    }

    #[test]
    fn explicit_base_that_looks_like_an_option_is_not_one() {
        let dir = upstream_repo();
        let err = resolve(dir.path(), Some("--all")).expect_err("not a revision");
        assert!(matches!(err, ChangesError::UnknownBase { ref rev, .. } if rev == "--all"));
    }

    #[test]
    fn uncommitted_and_untracked_changes_count_but_ignored_files_do_not() {
        let dir = new_repo();
        write(dir.path(), ".gitignore", "target/\n*.log\n");
        commit(dir.path(), &["src/lib.rs", "src/main.rs", "old.txt"], "one");
        commit(dir.path(), &["README.md"], "two");
        write(dir.path(), "src/lib.rs", "unstaged edit");
        write(dir.path(), "staged.rs", "new");
        git(dir.path(), &["add", "staged.rs"]);
        write(dir.path(), "new/untracked.rs", "new");
        write(dir.path(), "target/debug/out", "ignored");
        write(dir.path(), "run.log", "ignored");
        fs::remove_file(dir.path().join("src/main.rs")).expect("rm");

        let set = resolve(dir.path(), None).expect("resolve");
        assert_eq!(
            changed(&set),
            [
                "README.md",
                "new/untracked.rs",
                "src/lib.rs",
                "src/main.rs",
                "staged.rs"
            ]
        );
        assert_eq!(
            set.skip_reason(&filter(&["target/**", "*.log"]))
                .map(|_| ()),
            Some(())
        );
    }

    #[test]
    fn renames_count_both_sides() {
        let dir = new_repo();
        commit(dir.path(), &["old/name.rs", "other.txt"], "one");
        fs::create_dir_all(dir.path().join("new")).expect("mkdir");
        // An identical-content move that rename detection would pair up.
        git(dir.path(), &["mv", "old/name.rs", "new/name.rs"]);
        git(dir.path(), &["commit", "-q", "-m", "two"]);

        let set = resolve(dir.path(), None).expect("resolve");
        assert_eq!(changed(&set), ["new/name.rs", "old/name.rs"]);
        assert_eq!(set.skip_reason(&filter(&["old/**"])), None);
    }

    #[test]
    fn subdirectory_workspace_sees_only_its_files_relative_to_it() {
        let dir = new_repo();
        commit(
            dir.path(),
            &["sub/src/lib.rs", "src/main.rs", "sub/Cargo.toml"],
            "one",
        );
        commit(dir.path(), &["sub/src/lib.rs", "src/main.rs"], "two");
        write(dir.path(), "sub/untracked.rs", "new");
        write(dir.path(), "outside.rs", "new");
        let workspace = dir.path().join("sub");

        let set = resolve(&workspace, None).expect("resolve");
        assert_eq!(changed(&set), ["src/lib.rs", "untracked.rs"]);
        assert_eq!(set.skip_reason(&filter(&["src/**"])), None);
        assert!(set.skip_reason(&filter(&["Cargo.*", "sub/**"])).is_some());
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_names_are_converted_lossily() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;

        let dir = new_repo();
        commit(dir.path(), &["a.txt"], "one");
        commit(dir.path(), &["b.txt"], "two");
        fs::write(dir.path().join(OsStr::from_bytes(b"bad\xff.rs")), "x").expect("write");

        let set = resolve(dir.path(), None).expect("resolve");
        assert_eq!(changed(&set), ["b.txt", "bad\u{fffd}.rs"]);
        assert_eq!(set.skip_reason(&filter(&["*.rs"])), None);
    }

    #[test]
    fn star_does_not_cross_separators_but_double_star_does() {
        let set = ChangeSet {
            base: Base::Rev {
                rev: "1a2b3c4d5e6f".into(),
                how: BaseSource::ParentOfHead,
            },
            changed: vec!["src/a/b.rs".into(), "sub/Cargo.toml".into()],
        };
        assert_eq!(
            set.skip_reason(&filter(&["src/*", "Cargo.*"])).as_deref(),
            Some("no file matching src/*, Cargo.* changed since 1a2b3c4 (parent of HEAD)")
        );
        assert_eq!(set.skip_reason(&filter(&["src/**"])), None);
        assert_eq!(set.skip_reason(&filter(&["**/Cargo.*"])), None);

        let f = filter(&["src/*"]);
        assert!(f.matches("src/lib.rs"));
        assert!(!f.matches("src/a/b.rs"));
    }

    #[test]
    fn empty_filter_never_skips() {
        let set = ChangeSet {
            base: Base::Rev {
                rev: "1a2b3c4d5e6f".into(),
                how: BaseSource::ParentOfHead,
            },
            changed: Vec::new(),
        };
        let none = filter(&[]);
        assert!(none.is_empty());
        assert_eq!(set.skip_reason(&none), None);
        assert!(set.skip_reason(&filter(&["src/**"])).is_some());
    }

    #[test]
    fn invalid_glob_is_an_error_naming_it() {
        let err = PathFilter::new(&["src/**".into(), "src/[".into()]).expect_err("invalid glob");
        assert_eq!(err.to_string(), "invalid path glob `src/[`");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn git_failures_name_the_command_and_stderr_tail() {
        let dir = upstream_repo();
        let git = Git::new(dir.path());
        let err = git
            .run(&["rev-parse", "--verify", "nope"])
            .expect_err("fails");
        let text = err.to_string();
        assert!(
            text.contains("rev-parse --verify nope` exited with code 128: fatal:"),
            "{text}"
        );
    }
}
