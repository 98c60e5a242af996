//! The stat index: path → (stat data, content hash), as git's index does, so an unchanged
//! file is never read again. One index per workspace, rewritten atomically after a take;
//! an unreadable index is simply rebuilt. Symlinks are in it too (their hash is that of
//! the target), though a take reads them anyway: so that it holds every path of the
//! snapshot it names.
//!
//! It names the snapshot whose file list is exactly its entries: a take that finds every
//! entry unchanged, and nothing else listed, is that snapshot without making a list of
//! its own.
//!
//! Format (binary, so that loading 20,000 entries is a few copies, not 80,000 number
//! parses): the line `pikaci-index 4`, `racy_from_ns` as i128 (a file stamped at or
//! after it is racy: [`super::clock`]), the snapshot's id (64 hex digits, or 64 spaces
//! for none), then one record per path: the content hash (64 hex digits), size (u64),
//! mtime_ns and ctime_ns (i128), ino (u64), the kind (u8: 0 a file, 1 an executable, 2 a
//! symlink), the path's length (u32) and its bytes; numbers
//! little-endian. An index of an older format does not parse and is rebuilt.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::files::{Entry, Kind};
use super::store::Stat;

const HEADER: &[u8] = b"pikaci-index 4\n";
/// Where the records start: after the header, `racy_from_ns` and the snapshot's id.
const BODY: usize = HEADER.len() + 16 + 64;
/// A record up to its path: hash, size, mtime, ctime, ino, kind, path length.
const FIXED: usize = 64 + 8 + 16 + 16 + 8 + 1 + 4;

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
    kind: Kind,
}

#[derive(Default)]
pub struct Index {
    racy_from_ns: i128,
    /// The snapshot of exactly these entries, hex.
    tree: Option<Span>,
    /// The file as read; entries point into it.
    bytes: Vec<u8>,
    /// Sorted by path bytes, as listings are: a lookup is a binary search, and the index
    /// is written in the order it is read (no hash map to fill for 20,000 paths).
    entries: Vec<Cached>,
    /// Where the next lookup most likely is.
    next: std::cell::Cell<usize>,
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

    /// The id of the snapshot whose file list is exactly this index's entries.
    pub fn tree(&self) -> Option<&str> {
        std::str::from_utf8(self.bytes_of(self.tree?)).ok()
    }

    /// The content hash of `entry` if its stat data is unchanged and not racy.
    pub fn lookup(&self, entry: &Entry) -> Option<&str> {
        let path = entry.path.as_os_str().as_bytes();
        let at = find_sorted(&self.entries, &self.next, |c| self.path_of(c), path)?;
        let stat = Stat {
            size: entry.size,
            mtime_ns: entry.mtime_ns,
            ctime_ns: entry.ctime_ns,
            ino: entry.ino,
        };
        self.vouches(at, entry.kind, &stat)
            .then(|| std::str::from_utf8(self.bytes_of(self.entries[at].hash)).ok())?
    }

    /// Whether the entry at `at` still holds for a file found as `kind` with `stat`: the
    /// same stat data, stamped before the take that wrote it began.
    pub fn vouches(&self, at: usize, kind: Kind, stat: &Stat) -> bool {
        let Some(cached) = self.entries.get(at) else {
            return false;
        };
        cached.size == stat.size
            && cached.mtime_ns == stat.mtime_ns
            && cached.ctime_ns == stat.ctime_ns
            && cached.ino == stat.ino
            && cached.kind == kind
            && stat.mtime_ns < self.racy_from_ns
    }

    /// The index file for `hashed` (sorted by path bytes, as listings are), written
    /// straight from the take's own list rather than through a second index in memory.
    /// It names `tree` only when it holds every one of `hashed`.
    pub fn encode(racy_from_ns: i128, hashed: &[(&Entry, &str)], tree: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(BODY + hashed.len() * (FIXED + 16));
        out.extend_from_slice(HEADER);
        out.extend_from_slice(&racy_from_ns.to_le_bytes());
        out.extend_from_slice(&[b' '; 64]);
        let mut all = tree.len() == 64;
        for (entry, hash) in hashed {
            let path = entry.path.as_os_str().as_bytes();
            let len = u32::try_from(path.len());
            match len {
                Ok(len) if hash.len() == 64 => {
                    out.extend_from_slice(hash.as_bytes());
                    out.extend_from_slice(&entry.size.to_le_bytes());
                    out.extend_from_slice(&entry.mtime_ns.to_le_bytes());
                    out.extend_from_slice(&entry.ctime_ns.to_le_bytes());
                    out.extend_from_slice(&entry.ino.to_le_bytes());
                    out.push(kind_byte(entry.kind));
                    out.extend_from_slice(&len.to_le_bytes());
                    out.extend_from_slice(path);
                }
                _ => all = false,
            }
        }
        if all {
            out[BODY - 64..BODY].copy_from_slice(tree.as_bytes());
        }
        out
    }

    #[cfg(test)]
    pub fn build(racy_from_ns: i128, hashed: &[(&Entry, &str)]) -> Index {
        parse(Index::encode(racy_from_ns, hashed, "")).expect("an encoded index parses")
    }
}

/// Where `key` is in `items` (sorted by `key_of`), looked for at `next` first: listings
/// ask in path order, the order of the index, so mostly the next item is the one.
/// `next` then points past it.
pub(super) fn find_sorted<'a, T>(
    items: &'a [T],
    next: &std::cell::Cell<usize>,
    key_of: impl Fn(&'a T) -> &'a [u8],
    key: &[u8],
) -> Option<usize> {
    let at = match items.get(next.get()) {
        Some(item) if key_of(item) == key => next.get(),
        _ => items.binary_search_by(|item| key_of(item).cmp(key)).ok()?,
    };
    next.set(at + 1);
    Some(at)
}

fn parse(bytes: Vec<u8>) -> Option<Index> {
    let body = bytes.strip_prefix(HEADER)?;
    let racy_from_ns = i128::from_le_bytes(body.get(..16)?.try_into().ok()?);
    let tree = body.get(16..16 + 64)?;
    let tree = tree.iter().all(u8::is_ascii_hexdigit).then_some(Span {
        start: (BODY - 64) as u32,
        end: BODY as u32,
    });
    // Spans are u32 offsets.
    u32::try_from(bytes.len()).ok()?;
    let mut entries = Vec::new();
    let mut at = BODY;
    while at < bytes.len() {
        let (cached, end) = parse_record(&bytes, at)?;
        entries.push(cached);
        at = end;
    }
    let path = |c: &Cached| &bytes[c.path.start as usize..c.path.end as usize];
    if !entries.is_sorted_by(|a, b| path(a) < path(b)) {
        entries.sort_by(|a, b| path(a).cmp(path(b)));
    }
    Some(Index {
        racy_from_ns,
        tree,
        bytes,
        entries,
        next: Default::default(),
    })
}

fn kind_byte(kind: Kind) -> u8 {
    match kind {
        Kind::File { executable } => executable as u8,
        Kind::Symlink => 2,
    }
}

fn kind_of(byte: u8) -> Option<Kind> {
    match byte {
        0 | 1 => Some(Kind::File {
            executable: byte == 1,
        }),
        2 => Some(Kind::Symlink),
        _ => None,
    }
}

/// The record at `start`, and where the next one starts.
fn parse_record(bytes: &[u8], start: usize) -> Option<(Cached, usize)> {
    let fixed = bytes.get(start..start + FIXED)?;
    let mut at = 64;
    let mut take = |n: usize| {
        let field = &fixed[at..at + n];
        at += n;
        field
    };
    let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let i128_of = |b: &[u8]| i128::from_le_bytes(b.try_into().expect("16 bytes"));
    let size = u64_of(take(8));
    let (mtime_ns, ctime_ns) = (i128_of(take(16)), i128_of(take(16)));
    let ino = u64_of(take(8));
    let kind = kind_of(take(1)[0])?;
    let len = u32::from_le_bytes(take(4).try_into().expect("4 bytes")) as usize;
    std::str::from_utf8(&fixed[..64]).ok()?;
    let (path_start, end) = (start + FIXED, start + FIXED + len);
    (end <= bytes.len()).then_some(())?;
    let span = |start: usize, end: usize| Span {
        start: start as u32,
        end: end as u32,
    };
    let cached = Cached {
        path: span(path_start, end),
        hash: span(start, start + 64),
        size,
        mtime_ns,
        ctime_ns,
        ino,
        kind,
    };
    Some((cached, end))
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

    /// A content hash as the store writes them: 64 hex digits.
    fn hash(digit: char) -> String {
        digit.to_string().repeat(64)
    }

    #[test]
    fn round_trips_odd_paths() {
        let a = entry("dir/with\ttab\nand newline\0nul", 10);
        let index = Index::build(5_000_000_000, &[(&a, &hash('a'))]);
        assert_eq!(index.lookup(&a), Some(hash('a').as_str()));
        assert_eq!(
            index.paths(),
            [b"dir/with\ttab\nand newline\0nul".as_slice()]
        );
    }

    #[test]
    fn racy_and_changed_entries_are_not_trusted() {
        let old = entry("a", 1_000);
        let index = Index::build(10_000_000_000, &[(&old, &hash('1'))]);
        assert_eq!(index.lookup(&old), Some(hash('1').as_str()));
        let mut grown = old.clone();
        grown.size = 4;
        assert_eq!(index.lookup(&grown), None);
        for stamped in [10_000_000_000, 10_000_000_001] {
            let racy = entry("a", stamped);
            let racy_index = Index::build(10_000_000_000, &[(&racy, &hash('1'))]);
            assert_eq!(racy_index.lookup(&racy), None, "stamped as the take began");
        }
        let just_before = entry("a", 9_999_999_999);
        let index = Index::build(10_000_000_000, &[(&just_before, &hash('1'))]);
        assert!(index.lookup(&just_before).is_some());
    }

    #[test]
    fn an_index_in_any_order_is_looked_up_by_path_in_any_order() {
        let (a, b, c) = (entry("a", 10), entry("b", 20), entry("c", 30));
        let index = Index::build(
            5_000_000_000,
            &[(&c, &hash('c')), (&a, &hash('a')), (&b, &hash('b'))],
        );
        assert_eq!(index.paths(), [b"a".as_slice(), b"b", b"c"]);
        for entry in [&b, &c, &a, &a, &c] {
            let name = entry.path.to_str().unwrap().chars().next().unwrap();
            assert_eq!(index.lookup(entry), Some(hash(name).as_str()));
        }
        assert_eq!(index.lookup(&entry("d", 10)), None);
    }

    #[test]
    fn names_its_snapshot_only_when_it_holds_every_path_of_it() {
        let (a, b) = (entry("a", 10), entry("b", 20));
        let tree = hash('e');
        let files = [(&a, hash('a')), (&b, hash('b'))];
        let pairs: Vec<_> = files.iter().map(|(e, h)| (*e, h.as_str())).collect();
        let both = parse(Index::encode(5, &pairs, &tree)).unwrap();
        assert_eq!(both.tree(), Some(tree.as_str()));
        let link = Entry {
            kind: Kind::Symlink,
            ..entry("l", 30)
        };
        let target = hash('f');
        let with_link = [pairs[0], (&link, target.as_str())];
        let with_link = parse(Index::encode(5_000_000_000, &with_link, &tree)).unwrap();
        assert_eq!(
            (with_link.tree(), with_link.len()),
            (Some(tree.as_str()), 2)
        );
        assert_eq!(with_link.lookup(&link), Some(target.as_str()));
        let file_there = entry("l", 30);
        assert_eq!(
            with_link.lookup(&file_there),
            None,
            "a file where the link was"
        );
        let unheld = parse(Index::encode(5, &[pairs[0], (&b, "not a hash")], &tree)).unwrap();
        assert_eq!((unheld.tree(), unheld.len()), (None, 1));
        assert_eq!(Index::build(5, &pairs).tree(), None, "no snapshot named");
    }

    #[test]
    fn garbage_is_no_index() {
        assert!(parse(b"nonsense".to_vec()).is_none());
        assert!(parse(b"pikaci-index 1 12\nabc\t1\0".to_vec()).is_none());
        let mut cut = Index::encode(5, &[(&entry("a", 1), &hash('a'))], "");
        cut.pop();
        assert!(parse(cut).is_none(), "a record cut short");
    }
}
