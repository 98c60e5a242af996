//! The `needs` graph as SVG: a column per depth (a job sits right of every job it needs),
//! with the same facts as a list beside it for readers without SVG.

use std::collections::BTreeMap;

use maud::{Markup, html};

use crate::serve::model::RunView;

const BOX_W: usize = 160;
const BOX_H: usize = 26;
const COL: usize = 200;
const ROW: usize = 38;

pub fn needs_graph(view: &RunView) -> Markup {
    let mut names: Vec<&str> = view.jobs.iter().map(|(n, _)| n.as_str()).collect();
    let planned_only: Vec<&str> = view
        .needs
        .keys()
        .map(String::as_str)
        .filter(|n| !names.contains(n))
        .collect();
    names.extend(planned_only);
    let mut depth = BTreeMap::new();
    for name in &names {
        depth_of(name, &view.needs, &mut depth, 0);
    }
    let mut rows: BTreeMap<usize, usize> = BTreeMap::new();
    let place: BTreeMap<&str, (usize, usize)> = names
        .iter()
        .map(|n| {
            let col = depth.get(*n).copied().unwrap_or(0);
            let row = rows.entry(col).or_default();
            *row += 1;
            (*n, (col * COL + 4, (*row - 1) * ROW + 4))
        })
        .collect();
    let width = (rows.len().max(1) - 1) * COL + BOX_W + 8;
    let height = rows.values().max().copied().unwrap_or(1) * ROW + 4;
    let status = |name: &str| {
        view.jobs.iter().find(|(n, _)| n == name).map_or(
            ("unknown".to_string(), false),
            |(_, j)| {
                j.as_ref().map_or(("unreadable".into(), true), |j| {
                    (j.status.to_string(), j.status.is_failure())
                })
            },
        )
    };
    let edges: Vec<(&str, &str)> = view
        .needs
        .iter()
        .flat_map(|(job, needs)| needs.iter().map(move |n| (n.as_str(), job.as_str())))
        .filter(|(from, to)| place.contains_key(from) && place.contains_key(to))
        .collect();
    html! {
        svg.needs xmlns="http://www.w3.org/2000/svg" role="img" viewBox={ "0 0 " (width) " " (height) } width=(width) height=(height) {
            title { "Which job needs which" }
            @for (from, to) in &edges {
                @let (fx, fy) = place[from];
                @let (tx, ty) = place[to];
                line.edge data-from=(from) data-to=(to) x1=(fx + BOX_W) y1=(fy + BOX_H / 2) x2=(tx) y2=(ty + BOX_H / 2) {}
            }
            @for (name, (x, y)) in &place {
                @let (status, failure) = status(name);
                g.node.failure[failure] data-job=(name) data-status=(status) {
                    rect class={ "node status-" (status) } x=(x) y=(y) width=(BOX_W) height=(BOX_H) rx="4" {}
                    text x=(x + 8) y=(y + 17) { (name) }
                }
            }
        }
        @if edges.is_empty() {
            p.empty { "No job needs another." }
        } @else {
            ul.needs-list {
                @for (job, needs) in view.needs.iter().filter(|(_, n)| !n.is_empty()) {
                    li { (job) " needs " (needs.join(", ")) }
                }
            }
        }
    }
}

/// 0 for a job that needs none, else one more than the deepest it needs; a cycle (which
/// the config refuses, so only a damaged plan) is cut at a fixed depth.
fn depth_of(
    name: &str,
    needs: &BTreeMap<String, Vec<String>>,
    memo: &mut BTreeMap<String, usize>,
    guard: usize,
) -> usize {
    if let Some(&d) = memo.get(name) {
        return d;
    }
    if guard > 64 {
        return 0;
    }
    let d = needs.get(name).map_or(0, |ns| {
        ns.iter()
            .map(|n| depth_of(n, needs, memo, guard + 1) + 1)
            .max()
            .unwrap_or(0)
    });
    memo.insert(name.to_string(), d);
    d
}
