//! The stat index: path → (stat data, content hash), as git's index does, so an unchanged
//! file is never read again. One index per workspace, rewritten atomically after a take;
//! an unreadable index is simply rebuilt.
//!
//! Format: a header line `pikaci-index 1 <taken_at_ns>`, then one record per file:
//! `<hash>\t<size>\t<mtime_ns>\t<ctime_ns>\t<ino>\t<x|->\t<path>\0` (the path comes last
//! and ends in NUL, so it may hold any byte but NUL).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::files::{Entry, Kind};

const HEADER: &str = "pikaci-index 1";
/// File timestamps come from a coarse clock; a file stamped within this margin of the
/// previous take may have changed during it, so it is hashed again ("racy clean").
const RACY_MARGIN_NS: i128 = 1_000_000_000;

/// Where a field lies in the index file's bytes, which the index keeps whole: loading
/// 20,000 entries makes no string of its own.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    end: u32,
}

#[derive(Clone, Debug)]
struct Cached {
    /// The path's bytes, relative to the workspace.
    path: Span,
    /// The content hash, hex.
    hash: Span,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    executable: bool,
}

#[derive(Default)]
pub struct Index {
    taken_at_ns: i128,
    /// The file as read; entries point into it.
    bytes: Vec<u8>,
    /// Sorted by path bytes, as listings are: a lookup is a binary search, and the index
    /// is written in the order it is read (no hash map to fill for 20,000 paths).
    entries: Vec<Cached>,
}

impl Index {
    pub fn load(path: &Path) -> Index {
        std::fs::read(path).ok().and_then(parse).unwrap_or_default()
    }

    fn bytes_of(&self, span: Span) -> &[u8] {
        &self.bytes[span.start as usize..span.end as usize]
    }

    fn path_of(&self, cached: &Cached) -> &[u8] {
        self.bytes_of(cached.path)
    }

    /// The paths of the index, sorted by their bytes.
    pub fn paths(&self) -> Vec<&[u8]> {
        self.entries.iter().map(|c| self.path_of(c)).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The content hash of `entry` if its stat data is unchanged and not racy.
    pub fn lookup(&self, entry: &Entry) -> Option<&str> {
        let Kind::File { executable } = entry.kind else {
            return None;
        };
        let path = entry.path.as_os_str().as_bytes();
        let at = self
            .entries
            .binary_search_by(|c| self.path_of(c).cmp(path))
            .ok()?;
        let cached = &self.entries[at];
        let same = cached.size == entry.size
            && cached.mtime_ns == entry.mtime_ns
            && cached.ctime_ns == entry.ctime_ns
            && cached.ino == entry.ino
            && cached.executable == executable;
        let hash = std::str::from_utf8(self.bytes_of(cached.hash)).ok()?;
        (same && entry.mtime_ns < self.taken_at_ns - RACY_MARGIN_NS).then_some(hash)
    }

    /// The index file for `hashed` (sorted by path bytes, as listings are), written
    /// straight from the take's own list rather than through a second index in memory.
    pub fn encode(taken_at_ns: i128, hashed: &[(&Entry, &str)]) -> Vec<u8> {
        let mut out = format!("{HEADER} {taken_at_ns}\n").into_bytes();
        for (entry, hash) in hashed {
            if let Kind::File { executable } = entry.kind {
                let flag = if executable { 'x' } else { '-' };
                let (size, mtime, ctime, ino) =
                    (entry.size, entry.mtime_ns, entry.ctime_ns, entry.ino);
                out.extend_from_slice(
                    format!("{hash}\t{size}\t{mtime}\t{ctime}\t{ino}\t{flag}\t").as_bytes(),
                );
                out.extend_from_slice(entry.path.as_os_str().as_bytes());
                out.push(0);
            }
        }
        out
    }

    #[cfg(test)]
    pub fn build(taken_at_ns: i128, hashed: &[(&Entry, &str)]) -> Index {
        parse(Index::encode(taken_at_ns, hashed)).expect("an encoded index parses")
    }

    /// Each entry with its fields resolved, for comparing indexes.
    #[cfg(test)]
    fn resolved(&self) -> Vec<(&[u8], &[u8], u64, i128, i128, u64, bool)> {
        let one = |c: &Cached| {
            let stat = (c.size, c.mtime_ns, c.ctime_ns, c.ino, c.executable);
            (
                self.path_of(c),
                self.bytes_of(c.hash),
                stat.0,
                stat.1,
                stat.2,
                stat.3,
                stat.4,
            )
        };
        self.entries.iter().map(one).collect()
    }

    #[cfg(test)]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{HEADER} {}\n", self.taken_at_ns).into_bytes();
        for (path, hash, size, mtime, ctime, ino, executable) in self.resolved() {
            let flag = if executable { 'x' } else { '-' };
            out.extend_from_slice(hash);
            out.extend_from_slice(
                format!("\t{size}\t{mtime}\t{ctime}\t{ino}\t{flag}\t").as_bytes(),
            );
            out.extend_from_slice(path);
            out.push(0);
        }
        out
    }

    #[cfg(test)]
    pub fn same_entries(&self, other: &Index) -> bool {
        self.resolved() == other.resolved()
    }
}

fn parse(bytes: Vec<u8>) -> Option<Index> {
    let newline = bytes.iter().position(|b| *b == b'\n')?;
    let header = std::str::from_utf8(&bytes[..newline]).ok()?;
    let taken_at_ns = header.strip_prefix(HEADER)?.trim().parse().ok()?;
    // Spans are u32 offsets.
    u32::try_from(bytes.len()).ok()?;
    let mut entries = Vec::new();
    let mut at = newline + 1;
    while at < bytes.len() {
        let end = at + bytes[at..].iter().position(|b| *b == 0)?;
        if end > at {
            entries.push(parse_record(&bytes, at, end)?);
        }
        at = end + 1;
    }
    let path = |c: &Cached| &bytes[c.path.start as usize..c.path.end as usize];
    // An index written by an older pikaci is in hash-map order.
    if !entries.is_sorted_by(|a, b| path(a) < path(b)) {
        entries.sort_by(|a, b| path(a).cmp(path(b)));
    }
    Some(Index {
        taken_at_ns,
        bytes,
        entries,
    })
}

/// One record, `bytes[start..end]`: six tab-ended fields, then the path.
fn parse_record(bytes: &[u8], start: usize, end: usize) -> Option<Cached> {
    let mut at = start;
    let mut field = || -> Option<Span> {
        let tab = at + bytes[at..end].iter().position(|b| *b == b'\t')?;
        let span = Span {
            start: at as u32,
            end: tab as u32,
        };
        at = tab + 1;
        Some(span)
    };
    let hash = field()?;
    let (size, mtime, ctime, ino, flag) = (field()?, field()?, field()?, field()?, field()?);
    let number = |span: Span| -> Option<&str> {
        std::str::from_utf8(&bytes[span.start as usize..span.end as usize]).ok()
    };
    std::str::from_utf8(&bytes[hash.start as usize..hash.end as usize]).ok()?;
    Some(Cached {
        path: Span {
            start: at as u32,
            end: end as u32,
        },
        hash,
        size: number(size)?.parse().ok()?,
        mtime_ns: number(mtime)?.parse().ok()?,
        ctime_ns: number(ctime)?.parse().ok()?,
        ino: number(ino)?.parse().ok()?,
        executable: number(flag)? == "x",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, mtime_ns: i128) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File { executable: false },
            size: 3,
            mtime_ns,
            ctime_ns: mtime_ns,
            ino: 7,
        }
    }

    #[test]
    fn round_trips_odd_paths() {
        let a = entry("dir/with\ttab\nand newline", 10);
        let index = Index::build(5_000_000_000, &[(&a, "abc")]);
        let back = parse(index.to_bytes()).unwrap();
        assert!(back.same_entries(&index));
        assert_eq!(back.lookup(&a), Some("abc"));
    }

    #[test]
    fn racy_and_changed_entries_are_not_trusted() {
        let old = entry("a", 1_000);
        let index = Index::build(10_000_000_000, &[(&old, "h")]);
        assert_eq!(index.lookup(&old), Some("h"));
        let mut grown = old.clone();
        grown.size = 4;
        assert_eq!(index.lookup(&grown), None);
        let racy = entry("a", 9_500_000_000);
        let racy_index = Index::build(10_000_000_000, &[(&racy, "h")]);
        assert_eq!(
            racy_index.lookup(&racy),
            None,
            "stamped within the margin of the take"
        );
    }

    #[test]
    fn an_index_in_any_order_is_looked_up_by_path() {
        let (a, b) = (entry("a", 10), entry("b", 20));
        let index = Index::build(5_000_000_000, &[(&a, "ha"), (&b, "hb")]);
        let bytes = index.to_bytes();
        // Records swapped, as the hash-map order of an older pikaci may have them.
        let header_end = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
        let records: Vec<&[u8]> = bytes[header_end..].split_inclusive(|b| *b == 0).collect();
        let swapped = [&bytes[..header_end], records[1], records[0]].concat();
        let back = parse(swapped).unwrap();
        assert_eq!(back.lookup(&a), Some("ha"));
        assert_eq!(back.lookup(&b), Some("hb"));
        assert!(back.same_entries(&index));
    }

    #[test]
    fn garbage_is_no_index() {
        assert!(parse(b"nonsense".to_vec()).is_none());
        assert!(parse(b"pikaci-index 1 12\nabc\t1\0".to_vec()).is_none());
    }
}
