//! The one place an argv becomes a shell string: what `ssh` hands to the remote login
//! shell (which must be POSIX: sh, bash, dash, zsh).

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::argv::Argv;

/// `env [-C DIR] -- [KEY=VALUE…] PROGRAM ARGS…`, each word single-quoted unless it is
/// plainly safe. `env` sets the directory and variables without any shell syntax. (A
/// program name containing `=` would read as an assignment there; none of ours does.)
pub fn quote_argv(argv: &Argv) -> OsString {
    let mut words: Vec<&[u8]> = Vec::new();
    let env_words: Vec<Vec<u8>> = argv
        .env
        .iter()
        .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
        .collect();
    let prefix = argv.cwd.is_some() || !env_words.is_empty();
    if prefix {
        words.push(b"env");
    }
    if let Some(cwd) = &argv.cwd {
        words.push(b"-C");
        words.push(cwd.as_os_str().as_bytes());
    }
    if prefix {
        // Ends env's options: a value or program starting with `-` is not an option.
        words.push(b"--");
    }
    words.extend(env_words.iter().map(Vec::as_slice));
    words.push(argv.program.as_bytes());
    words.extend(argv.args.iter().map(|a| a.as_bytes()));
    let mut out = Vec::new();
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        quote_word(word, &mut out);
    }
    OsString::from_vec(out)
}

fn quote_word(word: &[u8], out: &mut Vec<u8>) {
    let safe = !word.is_empty()
        && word
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./=:,@%+".contains(b));
    if safe {
        out.extend_from_slice(word);
        return;
    }
    // Inside single quotes every byte is literal except `'`, which becomes '\''.
    out.push(b'\'');
    for &b in word {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let plain = Argv::new("nix").args(["build", "--json", "-o", "/w/gcroots/r", ".#x"]);
        let hostile = Argv::new("printf")
            .args([
                "%s\\0",
                "",
                "it's",
                "$(rm -rf /)",
                "a\nb",
                "`x`",
                "back\\slash",
                "ünï",
            ])
            .cwd("/work dir")
            .env("K", "v w");
        let text = [plain, hostile]
            .map(|a| String::from_utf8_lossy(quote_argv(&a).as_bytes()).into_owned());
        insta::assert_snapshot!(text.join("\n---\n"), @r"
        nix build --json -o /w/gcroots/r '.#x'
        ---
        env -C '/work dir' -- 'K=v w' printf '%s\0' '' 'it'\''s' '$(rm -rf /)' 'a
        b' '`x`' 'back\slash' 'ünï'
        ");
    }
}
