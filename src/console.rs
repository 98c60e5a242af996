//! Writing to stdout and stderr when they may go away: a pipe whose reader exited, a
//! full disk behind a redirect. `println!` panics then, which in a job thread hung the
//! run; these write what they can and remember the stream is gone, so the command goes
//! on (a run records and cleans up as usual) and stays quiet.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// Writes `bytes` to stdout and flushes; false once stdout cannot take more.
pub fn out(bytes: &[u8]) -> bool {
    write_to(&STDOUT_GONE, &mut std::io::stdout().lock(), bytes)
}

/// Writes `bytes` to stderr; false once stderr cannot take more.
pub fn err(bytes: &[u8]) -> bool {
    write_to(&STDERR_GONE, &mut std::io::stderr().lock(), bytes)
}

/// Whether a write to stdout has failed: commands that print a lot stop early.
pub fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

pub fn out_line(text: fmt::Arguments) -> bool {
    out(format!("{text}\n").as_bytes())
}

pub fn err_line(text: fmt::Arguments) -> bool {
    err(format!("{text}\n").as_bytes())
}

fn write_to(gone: &AtomicBool, stream: &mut impl Write, bytes: &[u8]) -> bool {
    if gone.load(Ordering::Relaxed) {
        return false;
    }
    let written = stream
        .write_all(bytes)
        .and_then(|()| stream.flush())
        .is_ok();
    if !written {
        gone.store(true, Ordering::Relaxed);
    }
    written
}

/// `println!` that never panics (see the module).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
{
        $crate::console::out_line(format_args!($($arg)*));
    }};
}

/// `eprintln!` that never panics (see the module).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
{
        $crate::console::err_line(format_args!($($arg)*));
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that takes `room` bytes, then fails like a closed pipe.
    struct Closing {
        room: usize,
        taken: Vec<u8>,
    }

    impl Write for Closing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.taken.extend(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_marks_the_stream_gone_and_later_writes_are_skipped() {
        let gone = AtomicBool::new(false);
        let mut stream = Closing {
            room: 4,
            taken: Vec::new(),
        };
        assert!(write_to(&gone, &mut stream, b"abc"));
        assert!(!write_to(&gone, &mut stream, b"defg"));
        assert!(gone.load(Ordering::Relaxed));
        stream.room = 100;
        assert!(!write_to(&gone, &mut stream, b"h"), "not tried again");
        assert_eq!(stream.taken, b"abcd");
    }
}
