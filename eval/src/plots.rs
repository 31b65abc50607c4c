//! The SVG figures, drawn with `plotters` (SVG backend only): `latency.svg` (mean and p99
//! against p, one panel per request type, cache on and off), `cache-trace.svg` (which stocks
//! sit in the cache after every cache event) and `failover.svg` (the probe's orders and the
//! clients' runs on a log scale, the faults shaded). Every legend sits in its own strip under
//! the plot, so that it never covers data.
//!
//! Caveats:
//!
//! - Text widths in the legend strip are estimated (about 8 px a character): SVG leaves the
//!   font to the viewer, so a very different font may crowd the legend.
//! - Error bars are drawn only for points with more than one run; a single run has no range.

use std::path::Path;

use bazaar::error::{Error, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::failover::Failover;
use crate::stats::{Point, Spread, Stat, KINDS};
use crate::trace::TraceLine;

fn plot_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::Internal(format!("plot: {e:?}"))
}

/// Cache on in blue, off in red.
const ON_COLOR: RGBColor = RGBColor(31, 119, 180);
const OFF_COLOR: RGBColor = RGBColor(214, 39, 40);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
/// Height of the legend strip under every plot, in pixels.
const LEGEND_STRIP: u32 = 36;

/// One entry of a legend strip.
enum Key {
    Line(RGBColor),
    Dot(RGBColor),
    Cell(RGBAColor),
    Cross(RGBColor),
    Triangle(RGBColor),
    Bar(RGBColor),
}

/// A legend in its own strip under the plot, so that it never covers data.
fn draw_legend_strip(area: &DrawingArea<SVGBackend, Shift>, keys: &[(Key, &str)]) -> Result<()> {
    let (_, height) = area.dim_in_pixel();
    let y = height as i32 / 2;
    let font = ("sans-serif", 15)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let mut x = 60;
    for (key, label) in keys {
        let result = match key {
            Key::Line(c) => area.draw(&PathElement::new(
                vec![(x, y), (x + 18, y)],
                c.stroke_width(2),
            )),
            Key::Dot(c) => area.draw(&Circle::new((x + 9, y), 4, c.filled())),
            Key::Cell(c) => area.draw(&Rectangle::new([(x, y - 6), (x + 18, y + 6)], c.filled())),
            Key::Cross(c) => area.draw(&Cross::new((x + 9, y), 6, c.stroke_width(2))),
            Key::Triangle(c) => area.draw(&TriangleMarker::new((x + 9, y), 6, c.filled())),
            Key::Bar(c) => area.draw(&PathElement::new(
                vec![(x + 9, y - 8), (x + 9, y + 8)],
                c.stroke_width(2),
            )),
        };
        result.map_err(plot_err)?;
        area.draw(&Text::new(label.to_string(), (x + 26, y), font.clone()))
            .map_err(plot_err)?;
        // About 8 px a character at this size, and a gap.
        x += 26 + 8 * label.chars().count() as i32 + 30;
    }
    Ok(())
}

/// The x range of a plot against p: the measured p values and a little margin, no more.
fn p_range(points: &[Point]) -> std::ops::Range<f64> {
    let lo = points.iter().map(|p| p.p).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.p).fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.06).max(0.03);
    (lo - pad)..(hi + pad)
}

/// "0.25" for 0.25, "0.2" for 0.2000001: axis labels at up to two decimals, no trailing zeros.
fn axis_prob(x: f64) -> String {
    let text = format!("{x:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// Two rows (mean, p99) by three columns (lookup, order, order query), latency against p; a
/// dot per point at the mean of its runs, an error bar from the lowest to the highest run.
pub(crate) fn plot_latency(points: &[Point], clients: usize, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let runs = points.iter().map(|p| p.runs.len()).max().unwrap_or(0);
    let root = root
        .titled(
            &format!(
                "Latency against order probability p ({clients} clients; {runs} run(s) per point, \
                 bars from the lowest to the highest run)"
            ),
            ("sans-serif", 20),
        )
        .map_err(plot_err)?;
    let (body, strip) = root.split_vertically(800 - 30 - LEGEND_STRIP);
    let panels = body.split_evenly((2, 3));
    let stats: [(&str, Stat); 2] = [("mean", |l| l.mean), ("p99", |l| l.p99)];
    let x_range = p_range(points);
    for (row, (stat_name, stat)) in stats.iter().enumerate() {
        for (col, (kind, _)) in KINDS.iter().enumerate() {
            latency_panel(
                &panels[row * 3 + col],
                points,
                col,
                &format!("{kind}: {stat_name} latency"),
                *stat,
                x_range.clone(),
            )?;
        }
    }
    let mut keys = Vec::new();
    if points.iter().any(|p| p.cache) {
        keys.push((Key::Line(ON_COLOR), "cache on (mean of the runs)"));
    }
    if points.iter().any(|p| !p.cache) {
        keys.push((Key::Line(OFF_COLOR), "cache off (mean of the runs)"));
    }
    keys.push((Key::Bar(BLACK), "lowest to highest run"));
    draw_legend_strip(&strip, &keys)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// One panel of the latency figure: one statistic of one request type against p, cache on
/// and off, a dot per point at the mean of its runs and a bar from the lowest to the highest.
fn latency_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    points: &[Point],
    col: usize,
    caption: &str,
    stat: Stat,
    x_range: std::ops::Range<f64>,
) -> Result<()> {
    let series = |cache: bool| -> Vec<(f64, Spread)> {
        points
            .iter()
            .filter(|pt| pt.cache == cache)
            .filter_map(|pt| pt.lat(col, stat).map(|s| (pt.p, s)))
            .collect()
    };
    let (on, off) = (series(true), series(false));
    let y_max = on
        .iter()
        .chain(&off)
        .map(|(_, s)| s.max)
        .fold(0.0, f64::max)
        .max(0.01)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(38)
        .y_label_area_size(55)
        .build_cartesian_2d(x_range, 0f64..y_max)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("p (order probability)")
        .y_desc("ms")
        .x_labels(6)
        .x_label_formatter(&|x| axis_prob(*x))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()
        .map_err(plot_err)?;
    for (data, color) in [(on, ON_COLOR), (off, OFF_COLOR)] {
        chart
            .draw_series(LineSeries::new(
                data.iter().map(|&(p, s)| (p, s.mean)),
                color.stroke_width(2),
            ))
            .map_err(plot_err)?;
        chart
            .draw_series(
                data.iter()
                    .map(|&(p, s)| Circle::new((p, s.mean), 4, color.filled())),
            )
            .map_err(plot_err)?;
        chart
            .draw_series(data.iter().filter(|(_, s)| s.n > 1).map(|&(p, s)| {
                PathElement::new(vec![(p, s.min), (p, s.max)], color.stroke_width(2))
            }))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// One row per stock, one column per cache event: a cell is filled while the stock is in the
/// cache after that event; evictions and invalidations are marked.
pub(crate) fn plot_trace(trace: &[TraceLine], cache_size: usize, path: &Path) -> Result<()> {
    let names = trace_rows(trace);
    let n = trace.len().max(1) as f64;
    let root = SVGBackend::new(path, (1200, 580)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let (body, strip) = root.split_vertically(580 - LEGEND_STRIP);
    let span_s = match (trace.first(), trace.last()) {
        (Some(a), Some(b)) => b.ts_ms.saturating_sub(a.ts_ms) as f64 / 1000.0,
        _ => 0.0,
    };
    let mut chart = ChartBuilder::on(&body)
        .caption(
            format!(
                "Front-end cache over time (capacity {cache_size}, {} stocks; {} events in {span_s:.2} s)",
                names.len(),
                trace.len()
            ),
            ("sans-serif", 20),
        )
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(95)
        .build_cartesian_2d(0f64..n, -0.5f64..(names.len() as f64 - 0.5))
        .map_err(plot_err)?;
    let label_names = names.clone();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("cache event (insert, hit, evict, invalidate), in order")
        .y_labels(names.len())
        .y_label_formatter(&move |y| {
            let k = y.round();
            if (y - k).abs() < 1e-6 && k >= 0.0 {
                label_names.get(k as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(plot_err)?;
    draw_trace_events(&mut chart, trace, &names, cache_size)?;
    draw_legend_strip(
        &strip,
        &[
            (
                Key::Cell(ON_COLOR.mix(0.85)),
                "in the cache (darker = more recently used)",
            ),
            (Key::Cross(OFF_COLOR), "evicted (least recently used)"),
            (Key::Triangle(ORANGE), "invalidated (a trade on that stock)"),
        ],
    )?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// The rows of the cache figure: the shipped stocks, then any other name the trace shows.
fn trace_rows(trace: &[TraceLine]) -> Vec<String> {
    let mut names: Vec<String> = bazaar::config::SHIPPED_STOCKS.clone();
    for line in trace {
        for name in line.items.iter().chain([&line.key]) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

/// The cache's content after each event (a cell per cached stock, darker for more recently
/// used), evictions as crosses and invalidations as triangles.
fn draw_trace_events(
    chart: &mut ChartContext<SVGBackend, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    trace: &[TraceLine],
    names: &[String],
    cache_size: usize,
) -> Result<()> {
    let row = |name: &str| names.iter().position(|n| n == name).unwrap_or(0) as f64;
    let cells = trace.iter().enumerate().flat_map(|(i, line)| {
        let x = i as f64;
        line.items.iter().enumerate().map(move |(rank, name)| {
            // Most recently used darkest: the LRU order is visible in each column.
            let shade = 0.85 - 0.6 * rank as f64 / cache_size.max(1) as f64;
            (x, name.clone(), ON_COLOR.mix(shade.clamp(0.2, 0.9)))
        })
    });
    chart
        .draw_series(cells.map(|(x, name, color)| {
            let y = row(&name);
            Rectangle::new([(x, y - 0.38), (x + 1.0, y + 0.38)], color.filled())
        }))
        .map_err(plot_err)?;
    let marks = |event: &str| -> Vec<(f64, f64)> {
        trace
            .iter()
            .enumerate()
            .filter(|(_, l)| l.event == event)
            .map(|(i, l)| (i as f64 + 0.5, row(&l.key)))
            .collect()
    };
    chart
        .draw_series(
            marks("evict")
                .into_iter()
                .map(|pt| Cross::new(pt, 6, OFF_COLOR.stroke_width(2))),
        )
        .map_err(plot_err)?;
    chart
        .draw_series(
            marks("invalidate")
                .into_iter()
                .map(|pt| TriangleMarker::new(pt, 6, ORANGE.filled())),
        )
        .map_err(plot_err)?;
    Ok(())
}

/// The probe's orders and the clients' runs over the phase on a log scale (normal orders take
/// a few ms, a fail-over seconds), the fault windows shaded.
pub(crate) fn plot_failover(f: &Failover, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let (body, strip) = root.split_vertically(520 - LEGEND_STRIP);
    let x_max = f
        .timeline
        .iter()
        .map(|s| s.at_s)
        .chain(f.runs.iter().map(|r| r.end_s))
        .fold(0.0, f64::max)
        .max(1.0);
    let values = || {
        f.timeline
            .iter()
            .map(|s| s.ms)
            .chain(f.runs.iter().map(|r| r.result.longest_ms()))
            .chain(f.runs.iter().map(|r| r.result.order_ms.mean))
            .filter(|&ms| ms > 0.0)
    };
    let y_lo = values().fold(f64::INFINITY, f64::min).clamp(0.01, 1.0) * 0.7;
    let y_hi = values().fold(1.0, f64::max) * 2.5;
    let mut chart = ChartBuilder::on(&body)
        .caption(
            "Orders during the fail-over experiment (log scale)",
            ("sans-serif", 20),
        )
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (y_lo..y_hi).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("seconds since the load started")
        .y_desc("order latency, ms (log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(f.faults.iter().map(|fault| {
            Rectangle::new(
                [(fault.down_s, y_lo), (fault.up_s, y_hi)],
                OFF_COLOR.mix(0.12).filled(),
            )
        }))
        .map_err(plot_err)?;
    chart
        .draw_series(f.faults.iter().map(|fault| {
            Text::new(
                fault.label,
                (fault.down_s, y_hi / 1.6),
                ("sans-serif", 13).into_font().color(&BLACK),
            )
        }))
        .map_err(plot_err)?;
    draw_failover_orders(&mut chart, f)?;
    draw_legend_strip(
        &strip,
        &[
            (Key::Cell(OFF_COLOR.mix(0.25)), "replica(s) down"),
            (Key::Dot(ON_COLOR), "probe order answered"),
            (Key::Cross(OFF_COLOR), "probe order failed"),
            (Key::Line(GREEN), "client run: mean order"),
            (Key::Triangle(PURPLE), "client run: longest request"),
        ],
    )?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// The orders of the fail-over figure: each client run's mean order latency over its
/// duration and its longest request, and every probe order, answered or failed.
fn draw_failover_orders(
    chart: &mut ChartContext<SVGBackend, Cartesian2d<RangedCoordf64, LogCoord<f64>>>,
    f: &Failover,
) -> Result<()> {
    // Each client run: its mean order latency as a segment over its duration, and its longest
    // request (retries included) as a mark.
    chart
        .draw_series(f.runs.iter().filter(|r| r.result.orders > 0).map(|r| {
            PathElement::new(
                vec![
                    (r.start_s, r.result.order_ms.mean),
                    (r.end_s, r.result.order_ms.mean),
                ],
                GREEN.stroke_width(2),
            )
        }))
        .map_err(plot_err)?;
    chart
        .draw_series(f.runs.iter().map(|r| {
            TriangleMarker::new(
                ((r.start_s + r.end_s) / 2.0, r.result.longest_ms()),
                4,
                PURPLE.filled(),
            )
        }))
        .map_err(plot_err)?;
    chart
        .draw_series(
            f.timeline
                .iter()
                .filter(|s| s.ok)
                .map(|s| Circle::new((s.at_s, s.ms), 2, ON_COLOR.filled())),
        )
        .map_err(plot_err)?;
    chart
        .draw_series(
            f.timeline
                .iter()
                .filter(|s| !s.ok)
                .map(|s| Cross::new((s.at_s, s.ms), 5, OFF_COLOR.stroke_width(2))),
        )
        .map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::fmt_prob;
    use crate::test_data::{failover, point};
    use std::fs;

    #[test]
    fn probabilities_print_as_given() {
        assert_eq!(fmt_prob(0.25), "0.25");
        assert_eq!(fmt_prob(0.2), "0.2");
        assert_eq!(fmt_prob(0.0), "0");
        assert_eq!(fmt_prob(1.0), "1");
        assert_eq!(fmt_prob(0.125), "0.125");
        assert_eq!(axis_prob(0.25), "0.25");
        assert_eq!(axis_prob(0.2000001), "0.2");
        assert_eq!(axis_prob(0.0), "0");
    }

    #[test]
    fn plots_render_to_svg() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let points = vec![
            point(0.0, true, 0, &[1.0, 1.2], &[]),
            point(0.4, true, 4, &[1.0, 1.1], &[]),
            point(0.0, false, 0, &[1.4, 1.5], &[]),
            point(0.4, false, 4, &[1.4, 1.6], &[]),
        ];
        plot_latency(&points, 5, &dir.join("l.svg")).unwrap();
        let line = |ts_ms, event: &str, key: &str, items: &[&str]| TraceLine {
            ts_ms,
            event: event.into(),
            key: key.into(),
            items: items.iter().map(|s| s.to_string()).collect(),
        };
        let trace = vec![
            line(1, "insert", "AAPL", &["AAPL"]),
            line(2, "insert", "IBM", &["IBM", "AAPL"]),
            line(3, "evict", "AAPL", &["IBM"]),
            line(3, "insert", "GOOG", &["GOOG", "IBM"]),
            line(4, "invalidate", "IBM", &["GOOG"]),
        ];
        plot_trace(&trace, 2, &dir.join("t.svg")).unwrap();
        plot_failover(&failover(0), &dir.join("f.svg")).unwrap();
        for name in ["l.svg", "t.svg", "f.svg"] {
            let svg = fs::read_to_string(dir.join(name)).unwrap();
            assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{name}");
        }
        let latency = fs::read_to_string(dir.join("l.svg")).unwrap();
        assert!(latency.contains("order query: mean latency"));
        assert!(latency.contains("lowest to highest run"));
        assert!(fs::read_to_string(dir.join("t.svg"))
            .unwrap()
            .contains("GameStart"));
        assert!(fs::read_to_string(dir.join("f.svg"))
            .unwrap()
            .contains("log scale"));
    }
}
