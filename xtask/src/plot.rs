//! Latency-over-time plots (PNG) for the bench report.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use plotters::prelude::*;

use crate::loadgen::{PacePoint, Sample};

/// Buckets along the time axis; each point is the largest latency of its bucket.
const N_BUCKETS: usize = 800;

/// A shaded span of the time axis.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    /// Start and end, since the load started.
    pub window: (Duration, Duration),
    /// Legend text.
    pub label: &'static str,
    /// Fill colour.
    pub color: RGBColor,
}

/// An instant of the run marked by a vertical line (the end of a compaction's copy, its pause).
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    /// When, since the load started.
    pub at: Duration,
    /// Legend text.
    pub label: &'static str,
    /// Line colour.
    pub color: RGBColor,
}

/// The end of an online compaction's snapshot copy (its catch-up rounds follow).
pub fn copied_mark(at: Duration) -> Mark {
    Mark {
        at,
        label: "snapshot copied",
        color: RGBColor(0, 150, 0),
    }
}

/// The final pause of an online compaction (the swap).
pub fn pause_mark(at: Duration) -> Mark {
    Mark {
        at,
        label: "final pause (swap)",
        color: RGBColor(170, 0, 170),
    }
}

/// The start of a backup's step (`check`, `hash`), or the end of its file work
/// (`written`: retention and the change log's pruning follow).
pub fn phase_mark(at: Duration, phase: &str) -> Mark {
    let (label, color) = match phase {
        "check" => ("integrity check begins", RGBColor(0, 150, 0)),
        "hash" => ("hash begins", RGBColor(0, 120, 200)),
        _ => ("backup file written", RGBColor(170, 0, 170)),
    };
    Mark { at, label, color }
}

/// The last instant the maintenance I/O pacer moved bytes (the end of the copy, or of the
/// freeing of the file a compaction replaced).
pub fn io_end_mark(at: Duration) -> Mark {
    Mark {
        at,
        label: "last maintenance I/O",
        color: RGBColor(120, 120, 120),
    }
}

/// The compaction (or backup) window, shaded orange.
pub fn busy_span(window: (Duration, Duration), label: &'static str) -> Span {
    Span {
        window,
        label,
        color: RGBColor(255, 210, 160),
    }
}

/// The settling period after it, shaded light orange.
pub fn settle_span(window: (Duration, Duration)) -> Span {
    Span {
        window,
        label: "settling (counted as during)",
        color: RGBColor(255, 238, 215),
    }
}

/// The baseline window, shaded green.
pub fn baseline_span(window: (Duration, Duration)) -> Span {
    Span {
        window,
        label: "baseline window",
        color: RGBColor(190, 235, 190),
    }
}

/// Plot the worst latency per time bucket of `samples` (log scale), with `spans` shaded,
/// `marks` as vertical lines and, when given, the I/O pacer's rate over time (`pace`, MiB/s on
/// the right axis; unpaced instants are left out).
pub fn latency_over_time(
    path: &Path,
    title: &str,
    samples: &[Sample],
    pace: &[PacePoint],
    spans: &[Span],
    marks: &[Mark],
) -> anyhow::Result<()> {
    let end = samples
        .last()
        .map_or(1.0, |s| s.at.as_secs_f64())
        .max(0.001);
    let width = end / N_BUCKETS as f64;
    let mut worst = vec![0f64; N_BUCKETS + 1];
    for s in samples {
        let bucket = ((s.at.as_secs_f64() / width) as usize).min(N_BUCKETS);
        worst[bucket] = worst[bucket].max(s.latency.as_secs_f64() * 1e3);
    }
    let floor = 0.01;
    let top = worst.iter().copied().fold(1.0, f64::max) * 2.0;
    let points: Vec<(f64, f64)> = worst
        .iter()
        .enumerate()
        .filter(|(_, v)| **v > 0.0)
        .map(|(i, v)| (i as f64 * width, v.max(floor)))
        .collect();

    let mib = |rate: u64| rate as f64 / (1u64 << 20) as f64;
    let pace_points: Vec<(f64, f64)> = pace
        .iter()
        .filter_map(|p| p.rate.map(|r| (p.at.as_secs_f64().min(end), mib(r))))
        .collect();
    let pace_top = pace_points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;

    let root = BitMapBackend::new(path, (960, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .right_y_label_area_size(if pace_points.is_empty() { 0 } else { 60 })
        .build_cartesian_2d(0f64..end, (floor..top).log_scale())?
        .set_secondary_coord(0f64..end, 0f64..pace_top);
    chart
        .configure_mesh()
        .x_desc("seconds since the load started")
        .y_desc("worst latency per bucket (ms, log)")
        .draw()?;
    for span in spans {
        let (from, to) = span.window;
        let color = span.color;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(from.as_secs_f64(), floor), (to.as_secs_f64(), top)],
                color.filled(),
            )))?
            .label(span.label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
    }
    for mark in marks {
        let at = mark.at.as_secs_f64();
        let color = mark.color;
        chart
            .draw_series(LineSeries::new(
                [(at, floor), (at, top)],
                color.stroke_width(2),
            ))?
            .label(mark.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    chart
        .draw_series(LineSeries::new(points, &BLUE))?
        .label("operation latency")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
    // Drawn after the shaded spans, which would cover it.
    if !pace_points.is_empty() {
        chart
            .configure_secondary_axes()
            .y_desc("maintenance I/O pace (MiB/s)")
            .draw()?;
        chart
            .draw_secondary_series(LineSeries::new(pace_points, RED.stroke_width(2)))?
            .label("I/O pace (right axis)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerLeft)
        .draw()?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
