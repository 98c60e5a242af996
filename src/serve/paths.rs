//! Path safety: every name in a request is decoded and checked here, and every file is
//! opened with the kernel refusing to leave the directory served (`RESOLVE_BENEATH`), so
//! no `..`, encoded slash or symlink inside an artifact dir reaches outside it.

use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// The longest request target answered; anything longer is refused before it is parsed.
pub const MAX_TARGET_LEN: usize = 2048;
/// The longest file name on Linux.
const MAX_SEGMENT_LEN: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadPath {
    #[error("the request target is longer than {MAX_TARGET_LEN} bytes")]
    TooLong,
    #[error("the request path has a part that is not a plain file name: `{0}`")]
    NotAName(String),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("{} leads outside {}", path.display(), root.display())]
    Outside { path: PathBuf, root: PathBuf },
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("cannot open {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The path of a request target (`/runs/x?y` → `["runs", "x"]`), each part decoded. A
/// part that decodes to `.`, `..`, something with `/`, `\` or NUL, or that is not UTF-8,
/// refuses the request; empty parts (`//`, a trailing `/`) are dropped.
pub fn segments(target: &str) -> Result<Vec<String>, BadPath> {
    if target.len() > MAX_TARGET_LEN {
        return Err(BadPath::TooLong);
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    path.split('/')
        .filter(|raw| !raw.is_empty())
        .map(|raw| {
            let name = decode(raw).ok_or_else(|| BadPath::NotAName(raw.to_string()))?;
            let plain = !matches!(name.as_str(), "." | "..")
                && name.len() <= MAX_SEGMENT_LEN
                && !name.contains(['/', '\\', '\0']);
            if plain {
                Ok(name)
            } else {
                Err(BadPath::NotAName(raw.to_string()))
            }
        })
        .collect()
}

/// The decoded value of query parameter `key`, if present.
pub fn query_param(target: &str, key: &str) -> Option<String> {
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k)? == key)
            .then(|| decode(&v.replace('+', " ")))
            .flatten()
    })
}

/// Percent-decodes `text`; none for a bad escape or bytes that are not UTF-8.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Opens regular file `rel` under `root` for reading; symlinks are followed only while
/// they stay beneath `root` (the kernel checks, so nothing can swap a link in between).
pub fn open_beneath(root: &Path, rel: &Path) -> Result<File, OpenError> {
    let path = root.join(rel);
    let io = |source| OpenError::Io {
        path: path.clone(),
        source,
    };
    let dir = File::open(root).map_err(|e| missing_or(e, &path, io))?;
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    let fd = match rustix::fs::openat2(&dir, rel, flags, Mode::empty(), resolve) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::XDEV) => {
            return Err(OpenError::Outside {
                path,
                root: root.to_path_buf(),
            });
        }
        Err(e) => return Err(missing_or(e.into(), &path, io)),
    };
    let file = File::from(fd);
    match file.metadata() {
        Ok(meta) if meta.is_file() => Ok(file),
        Ok(_) => Err(OpenError::NotAFile { path }),
        Err(e) => Err(io(e)),
    }
}

fn missing_or(
    e: std::io::Error,
    path: &Path,
    io: impl FnOnce(std::io::Error) -> OpenError,
) -> OpenError {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => OpenError::Missing {
            path: path.to_path_buf(),
        },
        _ => io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_that_are_not_plain_names_are_refused() {
        assert_eq!(
            segments("/runs/a/jobs/b?x=1").unwrap(),
            ["runs", "a", "jobs", "b"]
        );
        assert_eq!(segments("//runs//a/").unwrap(), ["runs", "a"]);
        assert_eq!(segments("/a%20b").unwrap(), ["a b"]);
        for bad in [
            "/runs/..",
            "/runs/.",
            "/runs/%2e%2e/x",
            "/runs/%2E%2E",
            "/runs/a%2fb",
            "/runs/a%2Fb",
            "/runs/a%5cb",
            "/runs/a%00",
            "/runs/%zz",
            "/runs/%2",
            "/runs/%ff",
        ] {
            assert!(matches!(segments(bad), Err(BadPath::NotAName(_))), "{bad}");
        }
        let long = format!("/{}", "a".repeat(300));
        assert!(matches!(segments(&long), Err(BadPath::NotAName(_))));
        let longer = format!("/{}", "a/".repeat(MAX_TARGET_LEN));
        assert_eq!(segments(&longer), Err(BadPath::TooLong));
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            query_param("/?status=failed", "status").as_deref(),
            Some("failed")
        );
        assert_eq!(
            query_param("/?a=1&status=timed%5Fout", "status").as_deref(),
            Some("timed_out")
        );
        assert_eq!(query_param("/?a=1", "status"), None);
        assert_eq!(query_param("/", "status"), None);
    }

    #[test]
    fn symlinks_may_not_lead_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::fs::write(root.join("sub/ok"), "fine").unwrap();
        std::os::unix::fs::symlink("../../secret", root.join("sub/out")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("sub/ok", root.join("in")).unwrap();
        let read = |rel: &str| {
            open_beneath(&root, Path::new(rel)).map(|f| std::io::read_to_string(f).unwrap())
        };
        assert_eq!(read("sub/ok").unwrap(), "fine");
        assert_eq!(read("in").unwrap(), "fine");
        for out in ["sub/out", "abs", "../secret"] {
            assert!(matches!(read(out), Err(OpenError::Outside { .. })), "{out}");
        }
        assert!(matches!(read("nope"), Err(OpenError::Missing { .. })));
        assert!(matches!(read("sub"), Err(OpenError::NotAFile { .. })));
    }
}
