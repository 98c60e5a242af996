//! `pikaci doctor`'s view of the Incus server itself: the `incus remote` the config
//! names (known to the client, answering, trusting it) and the cluster members jobs are
//! placed on.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::config::Config;
use crate::doctor::{Check, fail, ok, run};
use crate::incus::Incus;
use crate::transport::Transport;

/// One record of `incus remote list --format json`, the field doctor shows.
#[derive(Debug, Deserialize)]
struct RemoteRecord {
    #[serde(rename = "Addr", default)]
    addr: String,
}

/// What doctor reads of `GET /1.0`.
#[derive(Debug, Deserialize)]
struct ServerRecord {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    environment: ServerEnvironment,
}

#[derive(Debug, Default, Deserialize)]
struct ServerEnvironment {
    #[serde(default)]
    server_clustered: bool,
}

/// How to trust this client on a remote's server, for the hints.
fn add_hint(remote: &str) -> String {
    format!(
        "on the server, `incus config trust add pikaci` prints a token; here, as the user \
         that runs pikaci: `incus remote add {remote} https://SERVER:8443 --token TOKEN \
         --accept-certificate` (docs/incus.md#remotes-and-clusters)"
    )
}

/// The remote is one the client knows: its address, or a failed check naming the
/// remotes it does know.
pub fn remote_known(transport: &dyn Transport, incus: &Incus, remote: &str, on: &str) -> Check {
    let name = format!("Incus remote {remote} on {on}");
    let listed = run(transport, incus.remote_list()).and_then(|json| {
        serde_json::from_str::<BTreeMap<String, RemoteRecord>>(&json)
            .map_err(|e| format!("`incus remote list` printed JSON pikaci cannot read: {e}"))
    });
    match listed {
        Err(e) => fail(name, e, "install the incus client; it lists its remotes"),
        Ok(remotes) => match remotes.get(remote) {
            Some(record) => ok(name, format!("known, at {}", record.addr)),
            None => fail(
                name,
                format!(
                    "not known to this user's incus client (it knows: {})",
                    remotes.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                add_hint(remote),
            ),
        },
    }
}

/// The server answered `GET /1.0` (`json`): whether it trusts this client, and whether
/// it is a cluster when jobs are placed on members.
pub fn server_trusts(json: &str, remote: Option<&str>, name: String) -> (Check, bool) {
    let server: ServerRecord = match serde_json::from_str(json) {
        Ok(server) => server,
        Err(e) => {
            let detail = format!("`incus query /1.0` printed JSON pikaci cannot read: {e}");
            return (fail(name, detail, "check that incusd is Incus"), false);
        }
    };
    if server.auth != "trusted" {
        let detail = format!(
            "answers, but does not trust this client (auth: {})",
            server.auth
        );
        let fix = match remote {
            Some(remote) => add_hint(remote),
            None => "give the user access to incusd's socket (the incus-admin group)".into(),
        };
        return (fail(name, detail, fix), false);
    }
    (
        ok(name, "incusd answers and trusts this client"),
        server.environment.server_clustered,
    )
}

/// Every member that `backends.incus.target` or a job's `incus-target` names exists.
pub fn members(
    transport: &dyn Transport,
    incus: &Incus,
    config: &Config,
    clustered: bool,
) -> Vec<Check> {
    let named: BTreeSet<&str> = config
        .backends
        .incus
        .target
        .iter()
        .chain(config.jobs.values().filter_map(|j| j.incus_target.as_ref()))
        .map(String::as_str)
        .collect();
    named
        .into_iter()
        .map(|member| {
            let name = format!("Incus cluster member {member}");
            if !clustered {
                return fail(
                    name,
                    "the server is not a cluster, so no instance can be placed on a member",
                    "make it one (`incus cluster enable NAME`), or remove backends.incus.target and the jobs' incus-target",
                );
            }
            match run(transport, incus.member_info(member)) {
                Ok(_) => ok(name, "exists"),
                Err(e) => fail(
                    name,
                    e,
                    "name a member that `incus cluster list` shows, in backends.incus.target or the job's incus-target",
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untrusted_client_is_told_how_to_be_trusted() {
        let (check, _) = server_trusts(r#"{"auth":"untrusted"}"#, Some("ci"), "incus".into());
        insta::assert_snapshot!(check, @"
        FAIL  incus: answers, but does not trust this client (auth: untrusted)
              fix: on the server, `incus config trust add pikaci` prints a token; here, as the user that runs pikaci: `incus remote add ci https://SERVER:8443 --token TOKEN --accept-certificate` (docs/incus.md#remotes-and-clusters)
        ");
        let (check, clustered) = server_trusts(
            r#"{"auth":"trusted","environment":{"server_clustered":true}}"#,
            Some("ci"),
            "incus".into(),
        );
        assert!(clustered);
        insta::assert_snapshot!(check, @"ok    incus: incusd answers and trusts this client");
    }
}
