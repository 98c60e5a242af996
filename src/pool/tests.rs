use super::*;
use crate::config::HostSpec;

fn host(name: &str, labels: &[&str]) -> PoolHost {
    PoolHost {
        name: Id::new(name).unwrap(),
        spec: HostSpec::Local,
        slots: None,
        labels: labels.iter().map(|l| l.to_string()).collect(),
        work_dir: None,
    }
}

fn job(runs_on: &[&str]) -> Job {
    let toml = format!(
        "[jobs.j]\ncommand = \"true\"\nruns-on = {runs_on:?}\n[hosts.a]\nurl = \"local\"\nlabels = [\"gpu\"]\n"
    );
    let config = crate::config::parse(std::path::Path::new("pikaci.toml"), &toml).unwrap();
    config.jobs.values().next().unwrap().clone()
}

fn id(name: &str) -> Id {
    Id::new(name).unwrap()
}

#[test]
fn jobs_spread_to_the_host_with_most_free_slots_and_wait_when_all_are_full() {
    let mut pool = Pool::default();
    pool.add_up(&host("a", &[]), vec!["x86_64-linux".into()], 1);
    pool.add_up(&host("b", &[]), vec!["x86_64-linux".into()], 2);
    let any = job(&[]);
    assert_eq!(pool.place(&any), Placement::On(id("b")));
    assert_eq!(pool.place(&any), Placement::On(id("a")));
    assert_eq!(pool.place(&any), Placement::On(id("b")));
    assert_eq!(pool.place(&any), Placement::Wait);
    pool.release(&id("a"));
    assert_eq!(pool.place(&any), Placement::On(id("a")));
}

#[test]
fn a_declared_kvm_the_probe_does_not_find_is_not_trusted() {
    let mut pool = Pool::default();
    pool.add_up(&host("a", &["kvm", "gpu"]), vec!["x86_64-linux".into()], 1);
    assert_eq!(pool.labels(&id("a")), ["gpu", "x86_64-linux"]);
    assert!(matches!(pool.place(&job(&["kvm"])), Placement::Never(_)));
}

#[test]
fn labels_pick_hosts_and_a_job_no_host_can_run_says_why_for_each() {
    let mut pool = Pool::default();
    pool.add_up(&host("a", &["gpu"]), vec!["x86_64-linux".into()], 1);
    pool.add_up(
        &host("b", &[]),
        vec!["x86_64-linux".into(), "kvm".into()],
        1,
    );
    assert_eq!(pool.place(&job(&["gpu"])), Placement::On(id("a")));
    assert_eq!(pool.place(&job(&["kvm"])), Placement::On(id("b")));
    pool.release(&id("b"));
    pool.mark_down(&id("b"), "its connection dropped".into());
    let Placement::Never(why) = pool.place(&job(&["kvm"])) else {
        panic!("placed")
    };
    assert_eq!(
        why.to_string(),
        "no host can run it: a lacks `kvm`; b is down (its connection dropped)"
    );
}
