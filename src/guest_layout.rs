//! Where things are inside every guest (microVM or Incus instance), and the virtiofs
//! shares that put them there in a microVM. The one place these paths and tags are
//! spelled: backends, the guest flake and the agent's defaults all name them from here.

/// The job's workspace (its working directory).
pub const WORKSPACE: &str = "/workspace";
/// Where the agent writes `guest.log`, `result.json` and the job's artifacts.
pub const ARTIFACTS: &str = "/artifacts";
/// The directory holding the request.
pub const REQUEST_DIR: &str = "/run/pikaci";
/// The request the agent runs.
pub const REQUEST: &str = "/run/pikaci/request.json";
/// The host's Nix store, read-only, under the guest's own store.
pub const RO_STORE: &str = "/nix/.ro-store";

/// A virtiofs share a microVM mounts; pikaci starts one virtiofsd per share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShareTag {
    Workspace,
    Artifacts,
    Request,
    RoStore,
}

impl ShareTag {
    pub const ALL: [ShareTag; 4] = [
        ShareTag::Workspace,
        ShareTag::Artifacts,
        ShareTag::Request,
        ShareTag::RoStore,
    ];

    /// The tag the runner declares (`share/microvm/virtiofs/<tag>/`) and the guest mounts.
    pub const fn tag(self) -> &'static str {
        match self {
            ShareTag::Workspace => "workspace",
            ShareTag::Artifacts => "artifacts",
            ShareTag::Request => "request",
            ShareTag::RoStore => "ro-store",
        }
    }

    /// Where the guest mounts the share.
    pub const fn mount_point(self) -> &'static str {
        match self {
            ShareTag::Workspace => WORKSPACE,
            ShareTag::Artifacts => ARTIFACTS,
            ShareTag::Request => REQUEST_DIR,
            ShareTag::RoStore => RO_STORE,
        }
    }

    /// The share with this tag, if pikaci provides one.
    pub fn from_tag(tag: &str) -> Option<ShareTag> {
        ShareTag::ALL.into_iter().find(|s| s.tag() == tag)
    }
}

impl std::fmt::Display for ShareTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.tag())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_the_request_is_in_its_share() {
        for share in ShareTag::ALL {
            assert_eq!(ShareTag::from_tag(share.tag()), Some(share));
        }
        assert_eq!(ShareTag::from_tag("secrets"), None);
        let dir = std::path::Path::new(REQUEST).parent().unwrap();
        assert_eq!(dir, std::path::Path::new(ShareTag::Request.mount_point()));
    }
}
