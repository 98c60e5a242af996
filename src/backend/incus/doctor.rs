//! `pikaci doctor` for Incus jobs: what an Incus run uses on its host, through the same
//! argv builders (so `sudo` and the project apply) and the same image selection. incusd,
//! the project, each profile, the image (exactly the alias, of the type `instance-type`
//! asks for), and for containers (cheap to start) the guest agent inside an instance
//! made as the run makes one.

use std::time::{Duration, Instant};

use crate::backend::DoctorHost;
use crate::cancel::Cancel;
use crate::config::{IncusSettings, InstanceType};
use crate::doctor::{Check, fail, ok, run};
use crate::incus::{Incus, usable_image};
use crate::transport::Transport;

/// Whether the agent `$1` exists and is executable, inside the instance.
pub(crate) const AGENT_PRESENT: &str = r#"test -x "$1""#;

/// Creating and starting a container copies its image: more than a query.
const TRIAL_STEP: Duration = Duration::from_secs(120);

pub fn checks(host: &DoctorHost) -> Vec<Check> {
    let settings = &host.config.backends.incus;
    let incus = Incus::new(settings);
    let transport = host.transport;
    let mut checks = Vec::new();
    let name = match &settings.remote {
        Some(remote) => {
            let known = super::reach::remote_known(transport, &incus, remote, host.on);
            let failed = known.outcome == crate::doctor::Outcome::Fail;
            checks.push(known);
            if failed {
                return checks;
            }
            format!("Incus remote {remote}")
        }
        None => format!("incus on {}", host.on),
    };
    let server = match run(transport, incus.server()) {
        Ok(json) => json,
        Err(e) => {
            checks.push(fail(name, e, reach_fix(settings)));
            return checks;
        }
    };
    let (trusted, clustered) =
        super::reach::server_trusts(&server, settings.remote.as_deref(), name);
    let failed = trusted.outcome == crate::doctor::Outcome::Fail;
    checks.push(trusted);
    if failed {
        return checks;
    }
    checks.extend(super::reach::members(
        transport,
        &incus,
        host.config,
        clustered,
    ));
    let project = &settings.project;
    let name = format!("Incus project {project}");
    if let Err(e) = run(transport, incus.project_info()) {
        let fix = format!(
            "create it (`incus project create {project} -c features.images=false -c \
             features.profiles=false` shares the default project's images and profiles), or \
             set backends.incus.project to one that `incus project list` shows"
        );
        checks.push(fail(name, e, fix));
        return checks;
    }
    checks.push(ok(name, "exists"));
    for profile in &settings.profiles {
        let name = format!("Incus profile {profile}");
        checks.push(match run(transport, incus.profile_info(profile)) {
            Ok(_) => ok(name, format!("exists in project {project}")),
            Err(e) => fail(
                name,
                e,
                format!(
                    "create it (`incus profile create {profile} --project {project}`), or \
                     remove it from backends.incus.profiles (`incus profile list --project \
                     {project}` shows the profiles)"
                ),
            ),
        });
    }
    let alias = &settings.image;
    let name = format!("image {alias} in project {project}");
    let selected = run(transport, incus.image_list(alias)).and_then(|json| {
        usable_image(json.as_bytes(), settings).map_err(|e| crate::error::chain(&e))
    });
    let fingerprint = match selected {
        Ok(fingerprint) => fingerprint,
        Err(e) => {
            let fix = format!(
                "import an image with pikaci-guest in it (`pikaci image import --alias \
                 {alias}`, docs/incus.md#images), or set backends.incus.image and \
                 backends.incus.instance-type to match one that `incus image list --project \
                 {project}` shows"
            );
            checks.push(fail(name, e, fix));
            return checks;
        }
    };
    checks.push(ok(
        name,
        format!("present: {}", &fingerprint[..12.min(fingerprint.len())]),
    ));
    if settings.instance_type == InstanceType::Container {
        checks.push(agent_in_instance(transport, settings, host.cancel));
    }
    checks
}

fn reach_fix(settings: &IncusSettings) -> &'static str {
    if settings.remote.is_some() {
        "the remote's server does not answer: check that it runs and listens on the \
         address `incus remote list` shows (core.https_address), and that this machine \
         reaches it"
    } else if settings.sudo {
        "backends.incus.sudo runs `sudo -n incus`: let this user run incus through sudo \
         without a password, or set backends.incus.sudo = false and give the user access to \
         incusd's socket (the incus-admin group)"
    } else {
        "install Incus and start incusd; the user needs access to its socket"
    }
}

/// Makes a throwaway instance as the run does (image, profiles, limits), starts it and
/// looks for the agent where the run will execute it.
fn agent_in_instance(
    transport: &dyn Transport,
    settings: &IncusSettings,
    cancel: &Cancel,
) -> Check {
    let agent = &settings.guest_agent;
    let name = format!("guest agent {agent} in image {}", settings.image);
    let trial = Trial {
        transport,
        incus: Incus::new(settings),
        name: crate::backend::incus::instance_name(
            &format!("doctor-{}", std::process::id()),
            "agent",
        ),
    };
    let fix = "set backends.incus.guest-agent to where pikaci-guest is in the image, or import \
               an image that has it (docs/incus.md#images)";
    let steps = || -> Result<bool, String> {
        trial.run(&trial.incus.init(
            settings,
            &trial.name,
            "doctor",
            settings.target.as_deref(),
        ))?;
        trial.run(&trial.incus.start(&trial.name))?;
        let probe = trial.incus.exec(
            &trial.name,
            &["sh", "-c", AGENT_PRESENT, "pikaci-doctor", agent],
        );
        let answer = transport
            .run_unchecked(&probe, b"", Instant::now() + TRIAL_STEP, cancel)
            .map_err(|e| crate::error::chain(&e))?;
        Ok(answer.status.success())
    };
    match steps() {
        Ok(true) => ok(name, "present in a container started from it"),
        Ok(false) => fail(
            name,
            "does not exist in a container started from it (or cannot be executed)",
            fix,
        ),
        Err(e) => fail(
            name,
            format!("cannot start a container as the run does: {e}"),
            "check backends.incus (image, profiles, limits): a job's instance is made the same way",
        ),
    }
}

/// The doctor's instance, deleted however the check ends.
struct Trial<'a> {
    transport: &'a dyn Transport,
    incus: Incus<'a>,
    name: String,
}

impl Trial<'_> {
    fn run(&self, argv: &crate::argv::Argv) -> Result<(), String> {
        crate::doctor::run_within(self.transport, argv.clone(), TRIAL_STEP).map(drop)
    }
}

impl Drop for Trial<'_> {
    fn drop(&mut self) {
        let delete = self.incus.delete(&self.name);
        let deadline = Instant::now() + TRIAL_STEP;
        let _ = self
            .transport
            .run_unchecked(&delete, b"", deadline, &Cancel::new());
    }
}
