//! The SSH transport against a real sshd on loopback (scripts/testbed/sshd.sh).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, Instant};

use pikaci::argv::Argv;
use pikaci::cancel::Cancel;
use pikaci::transport::{Ssh, SshOptions, Transport, TransportError};
use proptest::prelude::*;

fn testbed() -> Option<SshOptions> {
    crate::harness::testbed_ssh()
}

fn connected() -> Option<Ssh> {
    let ssh = Ssh::new(testbed()?).unwrap();
    ssh.connect(&Cancel::new()).expect("master connection");
    Some(ssh)
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

/// Runs `printf '%s\0' ARGS…` remotely and splits what came back. (A leading fixed
/// argument, because printf with no arguments still prints its format once.)
fn echo_back(ssh: &Ssh, args: &[OsString]) -> Vec<OsString> {
    let argv = Argv::new("printf").arg("%s\\0").arg("first").args(args);
    let out = ssh.run(&argv, b"", soon(), &Cancel::new()).unwrap();
    let mut parts: Vec<OsString> = out
        .stdout
        .split(|b| *b == 0)
        .map(|p| OsString::from_vec(p.to_vec()))
        .collect();
    assert_eq!(parts.pop(), Some(OsString::new()), "output ends in NUL");
    assert_eq!(parts.remove(0), "first");
    parts
}

fn arg_bytes() -> impl Strategy<Value = OsString> {
    prop_oneof![
        // Arbitrary unicode text, NUL excluded (no argv can hold it).
        "[^\u{0}]{0,12}".prop_map(OsString::from),
        // Raw bytes, including invalid UTF-8.
        proptest::collection::vec(1u8..=255, 0..12).prop_map(OsString::from_vec),
        // The classics.
        prop::sample::select(vec![
            "", "'", "\"", "$(id)", "`id`", "\\", "a\nb", "*", "~", "-n", "--", ";", "&&", "é\t"
        ])
        .prop_map(OsString::from),
    ]
}

#[test]
fn hostile_argv_arrives_byte_identical() {
    let Some(ssh) = connected() else { return };
    let fixed: Vec<OsString> = [
        "",
        "it's",
        "$(rm -rf /)",
        "a\nb\r\n",
        "`x`",
        "back\\slash",
        "ünïcödé",
        "-e",
        "%s",
        "*",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    assert_eq!(echo_back(&ssh, &fixed), fixed);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(&proptest::collection::vec(arg_bytes(), 0..6), |args| {
            prop_assert_eq!(echo_back(&ssh, &args), args);
            Ok(())
        })
        .unwrap();
}

#[test]
fn cwd_env_and_stdin_reach_the_remote_command() {
    let Some(ssh) = connected() else { return };
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("a dir with 'quotes'");
    std::fs::create_dir(&odd).unwrap();
    let argv = Argv::new("sh")
        .args(["-c", "pwd; printf '%s\\n' \"$WEIRD\"; cat"])
        .cwd(&odd)
        .env("WEIRD", "$HOME 'x' \"y\"");
    let out = ssh
        .run(&argv, b"from stdin\n", soon(), &Cancel::new())
        .unwrap();
    let expected = format!("{}\n$HOME 'x' \"y\"\nfrom stdin\n", odd.display());
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn failure_names_host_command_status_and_stderr() {
    let Some(ssh) = connected() else { return };
    let argv = Argv::new("sh").args(["-c", "echo first >&2; echo boom >&2; exit 3"]);
    let err = ssh.run(&argv, b"", soon(), &Cancel::new()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, TransportError::Failed { .. }), "{text}");
    for part in [
        ssh.host().as_str(),
        "`sh -c …` failed",
        "exit status: 3",
        "first\nboom",
    ] {
        assert!(text.contains(part), "`{part}` missing in: {text}");
    }
    // The script is left out of the message; the error keeps it for the job's log.
    assert!(!text.contains("echo boom"), "{text}");
    let whole = &err.command_line().unwrap().full;
    assert!(whole.contains("echo boom >&2; exit 3"), "{whole}");
}

#[test]
fn unreachable_host_is_a_connection_error() {
    let Some(mut options) = testbed() else { return };
    options.port = Some(1); // nothing listens there
    options.connect_timeout = Duration::from_secs(3);
    let ssh = Ssh::new(options).unwrap();
    let err = ssh.connect(&Cancel::new()).unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err}");
    assert!(
        err.to_string().contains("127.0.0.1:1") || err.to_string().contains("port 1"),
        "{err}"
    );
}

#[test]
fn deadline_stops_the_local_client() {
    let Some(ssh) = connected() else { return };
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_millis(500);
    let err = ssh
        .run(&Argv::new("sleep").arg("30"), b"", deadline, &Cancel::new())
        .unwrap_err();
    assert!(matches!(err, TransportError::TimedOut { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn master_connection_ends_with_the_transport() {
    let Some(ssh) = connected() else { return };
    ssh.run(&Argv::new("true"), b"", soon(), &Cancel::new())
        .unwrap();
    let marker = ssh.client_argv(&Argv::new("true")).to_string();
    let control = marker
        .split("ControlPath=")
        .nth(1)
        .unwrap()
        .split('/')
        .take(3)
        .collect::<Vec<_>>()
        .join("/");
    let masters = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .filter(|cmd| {
                cmd.starts_with(b"ssh")
                    && cmd.windows(control.len()).any(|w| w == control.as_bytes())
            })
            .count()
    };
    assert_eq!(
        masters(),
        2,
        "the master and the command channel for {control}"
    );
    drop(ssh);
    let deadline = Instant::now() + Duration::from_secs(5);
    while masters() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(masters(), 0, "the master and the channel exited");
}

/// The pid of the remote grandparent of a command: the channel's loop, so the same for
/// two commands when both ran over the channel, not in sessions of their own.
fn remote_parent(ssh: &Ssh) -> String {
    let script = "read -r _ _ _ pp _ < /proc/$PPID/stat; echo $pp";
    let argv = Argv::new("sh").args(["-c", script, "parent"]);
    let out = ssh.run(&argv, b"", soon(), &Cancel::new()).unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn small_commands_share_one_channel_and_large_stdin_still_arrives() {
    let Some(ssh) = connected() else { return };
    let parent = remote_parent(&ssh);
    assert_eq!(
        remote_parent(&ssh),
        parent,
        "the second ran in the same loop"
    );
    // Beyond what the channel carries: a session of its own, and every byte arrives.
    let big = vec![b'x'; 17 << 20];
    let out = ssh
        .run(&Argv::new("wc").arg("-c"), &big, soon(), &Cancel::new())
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "17825792");
    assert_eq!(remote_parent(&ssh), parent, "the channel is still the one");
}

#[test]
fn after_a_command_past_its_deadline_the_next_gets_a_new_channel() {
    let Some(ssh) = connected() else { return };
    let parent = remote_parent(&ssh);
    let deadline = Instant::now() + Duration::from_millis(500);
    let err = ssh
        .run(&Argv::new("sleep").arg("30"), b"", deadline, &Cancel::new())
        .unwrap_err();
    assert!(matches!(err, TransportError::TimedOut { .. }), "{err}");
    let next = remote_parent(&ssh);
    assert_ne!(next, parent, "a new loop");
    assert_eq!(remote_parent(&ssh), next, "kept for the commands after it");
}

#[test]
fn a_channel_that_dies_under_a_command_is_its_error_and_the_next_reopens() {
    let Some(ssh) = connected() else { return };
    let parent = remote_parent(&ssh);
    let argv = Argv::new("sh").args(["-c", "kill -9 \"$1\"", "kill-loop", &parent]);
    let err = ssh.run(&argv, b"", soon(), &Cancel::new()).unwrap_err();
    assert!(matches!(err, TransportError::ChannelLost { .. }), "{err}");
    let text = err.to_string();
    for part in [
        ssh.host().as_str(),
        "`sh -c … kill-loop",
        "may or may not have run",
    ] {
        assert!(text.contains(part), "`{part}` missing in: {text}");
    }
    assert_ne!(remote_parent(&ssh), parent, "a new loop");
}
