//! The timeline as SVG: one bar per job on the run's time axis, one piece per phase.

use maud::{Markup, html};

use crate::report::short_duration;
use crate::serve::timeline::{Bar, Timeline};

const WIDTH: u64 = 960;
const LABEL: u64 = 180;
const CHART: u64 = WIDTH - LABEL - 20;
const ROW: u64 = 24;
const AXIS: u64 = 22;
const TICKS: u64 = 4;

pub fn timeline_svg(timeline: &Timeline) -> Markup {
    if timeline.bars.is_empty() {
        return html! { p.empty { "No job has started." } };
    }
    let height = AXIS + ROW * timeline.bars.len() as u64 + 4;
    // Tenths of a unit are finer than any screen shows.
    let x = |ms: u64| {
        let at = LABEL as f64 + ms as f64 * CHART as f64 / timeline.total_ms as f64;
        (at * 10.0).round() / 10.0
    };
    html! {
        svg.timeline xmlns="http://www.w3.org/2000/svg" role="img"
            viewBox={ "0 0 " (WIDTH) " " (height) } width=(WIDTH) height=(height) {
            title { "Jobs over the run's " (short_duration(timeline.total_ms)) }
            @for tick in 0..=TICKS {
                @let ms = timeline.total_ms * tick / TICKS;
                line.tick x1=(x(ms)) x2=(x(ms)) y1=(AXIS - 4) y2=(height) {}
                text.tick x=(x(ms)) y=(AXIS - 8) text-anchor="middle" { (short_duration(ms)) }
            }
            @for (row, bar) in timeline.bars.iter().enumerate() {
                (bar_group(bar, AXIS + ROW * row as u64, &x))
            }
        }
        (legend(timeline))
    }
}

fn bar_group(bar: &Bar, y: u64, x: &dyn Fn(u64) -> f64) -> Markup {
    html! {
        g.bar.failure[bar.failure] data-job=(bar.job) data-status=(bar.status) {
            text.label x=(LABEL - 8) y=(y + 15) text-anchor="end" {
                @if bar.failure { "✗ " } (bar.job)
            }
            @if bar.segments.is_empty() {
                rect.phase.phase-none x=(x(bar.start_ms)) y=(y + 4) width="2" height="14" {
                    title { (bar.job) ": no phase recorded (" (bar.status) ")" }
                }
            }
            @for s in &bar.segments {
                rect class={ "phase phase-" (s.phase) } data-phase=(s.phase)
                    x=(x(s.start_ms)) y=(y + 4) width=(f64::max(((x(s.start_ms + s.ms) - x(s.start_ms)) * 10.0).round() / 10.0, 1.0)) height="14" {
                    title { (bar.job) " · " (s.phase) " " (short_duration(s.ms)) }
                }
            }
        }
    }
}

/// The phases drawn, each with its colour, so the bars can be read without hovering.
fn legend(timeline: &Timeline) -> Markup {
    let mut phases: Vec<&str> = Vec::new();
    for s in timeline.bars.iter().flat_map(|b| &b.segments) {
        if !phases.contains(&s.phase.as_str()) {
            phases.push(&s.phase);
        }
    }
    html! {
        ul.legend {
            @for phase in phases {
                li { svg width="12" height="12" { rect class={ "phase phase-" (phase) } width="12" height="12" {} } " " (phase) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::timeline::Segment;

    #[test]
    fn each_job_is_a_bar_of_its_phases_on_the_runs_axis() {
        let segment = |phase: &str, start_ms, ms| Segment {
            phase: phase.into(),
            start_ms,
            ms,
        };
        let timeline = Timeline {
            total_ms: 4000,
            bars: vec![
                Bar {
                    job: "lint".into(),
                    status: "passed".into(),
                    failure: false,
                    start_ms: 0,
                    segments: vec![segment("setup", 0, 500), segment("run", 500, 1500)],
                },
                Bar {
                    job: "test <all>".into(),
                    status: "timed_out".into(),
                    failure: true,
                    start_ms: 1000,
                    segments: vec![segment("boot", 1000, 1000), segment("run", 2000, 2000)],
                },
            ],
        };
        let svg = timeline_svg(&timeline).into_string().replace("><", ">\n<");
        insta::assert_snapshot!("timeline_svg", svg);
    }
}
