//! The report of a run, written to a directory: `report.json` (every level), `report.md` (the
//! command and the table) and two PNG plots against offered load (latency percentiles; completed
//! requests and goodput per second), drawn with plotters and the bundled DejaVu Sans.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::stats::Report;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Writes `reports` (made by `command`) into `dir`.
pub fn write(dir: &Path, command: &str, reports: &[Report]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(reports)?,
    )?;
    let mut md = format!(
        "# Load test\n\n```sh\n{command}\n```\n\n{}\n",
        Report::header()
    );
    for r in reports {
        md.push_str(&r.row());
        md.push('\n');
    }
    let behind: Vec<&str> = reports
        .iter()
        .filter(|r| !r.generator_kept_up)
        .map(|r| r.level.as_str())
        .collect();
    if !behind.is_empty() {
        md.push_str(&format!(
            "\n**The load generator fell behind its schedule** (arrival lag p99 over {} ms) at: {}. \
             It offered less than asked there, so those levels measure the client as well as the \
             server; run the generator on other cores or machines for them.\n",
            crate::stats::ARRIVAL_LAG_LIMIT_MS,
            behind.join(", ")
        ));
    }
    md.push_str("\n![latency](latency.png)\n![goodput](goodput.png)\n");
    std::fs::write(dir.join("report.md"), md)?;
    let x: Vec<f64> = reports.iter().map(|r| r.offered_rps).collect();
    let pick = |f: &dyn Fn(&Report) -> f64| -> Vec<(f64, f64)> {
        x.iter().zip(reports).map(|(&x, r)| (x, f(r))).collect()
    };
    plot(
        &dir.join("latency.png"),
        "latency of completed requests",
        "ms",
        &[
            ("TTFB p50", pick(&|r| r.time_to_first_block_ms.p50)),
            ("TTFB p99", pick(&|r| r.time_to_first_block_ms.p99)),
            ("end-to-end p50", pick(&|r| r.latency_ms.p50)),
            ("end-to-end p99", pick(&|r| r.latency_ms.p99)),
        ],
    )?;
    plot(
        &dir.join("goodput.png"),
        "completed requests and goodput",
        "requests / s",
        &[
            ("offered", pick(&|r| r.offered_rps)),
            ("completed", pick(&|r| r.completed_rps)),
            ("completed in window", pick(&|r| r.completed_in_window_rps)),
            ("goodput (within SLO)", pick(&|r| r.goodput_rps)),
        ],
    )
}

fn plot(
    path: &Path,
    title: &str,
    y_desc: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    // Registering twice is harmless; the font is static.
    let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    let root = BitMapBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let points = series.iter().flat_map(|s| s.1.iter());
    let (max_x, max_y) = points.fold((1.0f64, 1.0f64), |(mx, my), p| (mx.max(p.0), my.max(p.1)));
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_x * 1.05, 0f64..max_y * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("offered load (requests / s)")
        .y_desc(y_desc)
        .draw()?;
    for (i, (label, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
