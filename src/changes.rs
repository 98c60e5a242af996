//! Which files changed, for targets with `paths` filters.
//!
//! Rules:
//! - Not a git repository, or no commit yet: every target runs.
//! - `--base REV`: compare against `merge-base(REV, HEAD)`, as a pull request does.
//! - Otherwise, with an upstream branch: compare against `merge-base(@{upstream}, HEAD)`;
//!   when that is HEAD itself (nothing ahead of upstream, as in a fresh CI clone), and
//!   without an upstream at all, compare against HEAD's first parent, so the commit being
//!   checked counts as the change. A root commit compares against the empty tree.
//! - Changed = `git diff --name-only` from the base to the working tree (committed, staged
//!   and unstaged) plus untracked files that are not ignored. Paths are relative to the
//!   workspace, '/'-separated; globs are matched with `*` not crossing `/` (`src/**`
//!   matches everything below `src/`, `Cargo.*` only at the top).

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::git::{GitError, git_text as git};

/// Git's well-known empty tree, the base for a root commit.
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    Rev { rev: String, how: BaseSource },
    Everything { reason: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseSource {
    Explicit,
    UpstreamMergeBase,
    ParentOfHead,
    EmptyTree,
}

#[derive(Clone, Debug)]
pub struct ChangeSet {
    base: Base,
    changed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("invalid path filter `{pattern}`")]
    Glob {
        pattern: String,
        #[source]
        source: globset::Error,
    },
}

/// Compiled `paths` globs plus their text for messages.
pub struct PathFilter {
    patterns: Vec<String>,
    set: GlobSet,
}

impl PathFilter {
    pub fn new(patterns: &[String]) -> Result<PathFilter, ChangesError> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|source| ChangesError::Glob {
                    pattern: pattern.clone(),
                    source,
                })?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|source| ChangesError::Glob {
            pattern: patterns.join(", "),
            source,
        })?;
        Ok(PathFilter {
            patterns: patterns.to_vec(),
            set,
        })
    }
}

impl ChangeSet {
    pub fn base(&self) -> &Base {
        &self.base
    }

    pub fn changed(&self) -> &[String] {
        &self.changed
    }

    /// None = run the target; Some(reason) = skip it.
    pub fn skip_reason(&self, filter: &PathFilter) -> Option<String> {
        let Base::Rev { rev, how } = &self.base else {
            return None;
        };
        if filter.patterns.is_empty() || self.changed.iter().any(|path| filter.set.is_match(path)) {
            return None;
        }
        Some(format!(
            "no file matching {} changed since {} ({})",
            filter.patterns.join(", "),
            short(rev),
            describe_source(*how)
        ))
    }

    /// The base in words, for the run record.
    pub fn describe_base(&self) -> String {
        match &self.base {
            Base::Rev { rev, how } => format!("{} ({})", short(rev), describe_source(*how)),
            Base::Everything { reason } => format!("none: {reason}"),
        }
    }
}

fn short(rev: &str) -> &str {
    &rev[..rev.len().min(12)]
}

fn describe_source(how: BaseSource) -> &'static str {
    match how {
        BaseSource::Explicit => "merge-base with --base",
        BaseSource::UpstreamMergeBase => "merge-base with upstream",
        BaseSource::ParentOfHead => "parent of HEAD",
        BaseSource::EmptyTree => "root commit",
    }
}

/// Resolves the base and lists the changed files of the workspace.
pub fn resolve(workspace: &Path, explicit_base: Option<&str>) -> Result<ChangeSet, ChangesError> {
    let everything = |reason: &str| ChangeSet {
        base: Base::Everything {
            reason: reason.into(),
        },
        changed: Vec::new(),
    };
    if git(workspace, &["rev-parse", "--is-inside-work-tree"]).is_err() {
        if explicit_base.is_some() {
            // A base was asked for explicitly; say why it cannot be used.
            git(workspace, &["rev-parse", "--is-inside-work-tree"])?;
        }
        return Ok(everything("not a git repository"));
    }
    let Ok(head) = git(workspace, &["rev-parse", "--verify", "-q", "HEAD"]) else {
        return Ok(everything("no commit yet"));
    };
    let head = head.trim().to_string();
    let base = match explicit_base {
        Some(rev) => {
            let commit = format!("{rev}^{{commit}}");
            git(
                workspace,
                &["rev-parse", "--verify", "--end-of-options", &commit],
            )?;
            let merge_base = git(workspace, &["merge-base", "--end-of-options", rev, "HEAD"])?;
            Base::Rev {
                rev: merge_base.trim().to_string(),
                how: BaseSource::Explicit,
            }
        }
        None => implicit_base(workspace, &head),
    };
    let mut changed = Vec::new();
    if let Base::Rev { rev, .. } = &base {
        let diff = git(
            workspace,
            &[
                "diff",
                "--name-only",
                "-z",
                "--no-renames",
                "--relative",
                rev,
                "--",
            ],
        )?;
        changed.extend(
            diff.split('\0')
                .filter(|p| !p.is_empty())
                .map(str::to_string),
        );
    }
    let untracked = git(
        workspace,
        &["ls-files", "-z", "--others", "--exclude-standard"],
    )?;
    changed.extend(
        untracked
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_string),
    );
    changed.sort();
    changed.dedup();
    Ok(ChangeSet { base, changed })
}

fn implicit_base(workspace: &Path, head: &str) -> Base {
    let upstream = git(workspace, &["merge-base", "@{upstream}", "HEAD"]).ok();
    match upstream.map(|s| s.trim().to_string()) {
        Some(merge_base) if merge_base != head => Base::Rev {
            rev: merge_base,
            how: BaseSource::UpstreamMergeBase,
        },
        _ => match git(workspace, &["rev-parse", "--verify", "-q", "HEAD^1"]) {
            Ok(parent) => Base::Rev {
                rev: parent.trim().to_string(),
                how: BaseSource::ParentOfHead,
            },
            Err(_) => Base::Rev {
                rev: EMPTY_TREE.to_string(),
                how: BaseSource::EmptyTree,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(patterns: &[&str]) -> PathFilter {
        PathFilter::new(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn changes(paths: &[&str]) -> ChangeSet {
        ChangeSet {
            base: Base::Rev {
                rev: "0123456789abcdef".into(),
                how: BaseSource::Explicit,
            },
            changed: paths.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn single_star_does_not_cross_directories() {
        assert!(
            changes(&["src/a/b.rs"])
                .skip_reason(&filter(&["src/*"]))
                .is_some()
        );
        assert!(
            changes(&["src/a/b.rs"])
                .skip_reason(&filter(&["src/**"]))
                .is_none()
        );
        assert!(
            changes(&["Cargo.toml"])
                .skip_reason(&filter(&["Cargo.*"]))
                .is_none()
        );
        assert!(
            changes(&["sub/Cargo.toml"])
                .skip_reason(&filter(&["Cargo.*"]))
                .is_some()
        );
    }

    #[test]
    fn skip_reason_names_patterns_and_base() {
        let reason = changes(&["README.md"])
            .skip_reason(&filter(&["src/**", "Cargo.*"]))
            .unwrap();
        insta::assert_snapshot!(reason, @"no file matching src/**, Cargo.* changed since 0123456789ab (merge-base with --base)");
    }

    #[test]
    fn everything_never_skips() {
        let set = ChangeSet {
            base: Base::Everything { reason: "x".into() },
            changed: vec![],
        };
        assert!(set.skip_reason(&filter(&["src/**"])).is_none());
    }

    #[test]
    fn invalid_glob_is_named() {
        let err = PathFilter::new(&["src/[".to_string()]).err().unwrap();
        assert!(err.to_string().contains("src/["));
    }

    #[test]
    fn not_a_repository_runs_everything() {
        let dir = tempfile::tempdir().unwrap();
        let set = resolve(dir.path(), None).unwrap();
        assert!(matches!(set.base(), Base::Everything { .. }));
    }
}
