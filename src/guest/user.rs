//! The unprivileged user jobs run as: `pikaci` from `/etc/passwd`.

use std::path::Path;

pub const JOB_USER: &str = "pikaci";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// Looks `name` up in a passwd file (`name:x:uid:gid:gecos:home:shell`).
pub fn lookup(passwd: &Path, name: &str) -> Option<User> {
    let text = std::fs::read_to_string(passwd).ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || fields[0] != name {
            return None;
        }
        Some(User {
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            home: fields[5].to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_user() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/sh\npikaci:x:1000:100::/home/pikaci:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(
            lookup(&passwd, "pikaci"),
            Some(User {
                uid: 1000,
                gid: 100,
                home: "/home/pikaci".into()
            })
        );
        assert_eq!(lookup(&passwd, "nobody"), None);
    }
}
