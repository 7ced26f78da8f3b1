//! PNG plots (plotters, bitmap backend, with the bundled DejaVu Sans so no system font is
//! needed): accuracy against steps per block, and the accuracy / tokens-per-forward frontier,
//! one line per model or objective.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::frontier::{pareto_optimal, Point};

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// One line of the plot: a label and (steps per block, accuracy in %) points.
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points, x = steps per block, y = accuracy (%).
    pub points: Vec<(f64, f64)>,
}

/// Draws accuracy (%) against steps per block for every series into a PNG at `path`.
pub fn accuracy_vs_steps(path: &Path, title: &str, series: &[Series]) -> anyhow::Result<()> {
    // Registering twice is harmless; the font is static.
    let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    let root = BitMapBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_x = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5f64..max_x + 0.5, 0f64..100f64)?;
    chart
        .configure_mesh()
        .x_desc("denoising steps per block (S)")
        .y_desc("answer accuracy (%)")
        .x_labels(max_x as usize)
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One model's settings on the frontier plot: (tokens per forward, accuracy %, standard error
/// in points, Pareto-optimal among all models).
pub struct FrontierSeries {
    /// Legend label.
    pub label: String,
    /// Its settings.
    pub points: Vec<(f64, f64, f64, bool)>,
}

/// Draws answer accuracy (%) against tokens per forward: every setting as a dot with ±1 standard
/// error bars, filled where no model's setting beats it; a line per model along its own frontier.
pub fn frontier(path: &Path, title: &str, series: &[FrontierSeries]) -> anyhow::Result<()> {
    let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    let root = BitMapBackend::new(path, (800, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let all = || series.iter().flat_map(|s| s.points.iter());
    let max_x = all().map(|p| p.0).fold(1.0f64, f64::max).ceil();
    let min_y = all().map(|p| p.1 - p.2).fold(100.0f64, f64::min);
    let floor = ((min_y - 5.0) / 10.0).floor().max(0.0) * 10.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0f64..max_x + 0.25, floor..100f64)?;
    chart
        .configure_mesh()
        .x_desc("tokens per forward (speed)")
        .y_desc("answer accuracy (%)")
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        // The line is the model's own frontier: its settings no other of its settings beats.
        let own: Vec<Point> = s
            .points
            .iter()
            .map(|p| Point {
                tokens_per_forward: p.0,
                accuracy: p.1,
            })
            .collect();
        let mut line: Vec<(f64, f64)> = own
            .iter()
            .zip(pareto_optimal(&own))
            .filter(|(_, keep)| *keep)
            .map(|(p, _)| (p.tokens_per_forward, p.accuracy))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(s.points.iter().map(|&(x, y, se, _)| {
            PathElement::new(vec![(x, y - se), (x, y + se)], color.stroke_width(1))
        }))?;
        chart.draw_series(s.points.iter().map(|&(x, y, _, best)| {
            let style = if best {
                color.filled()
            } else {
                color.stroke_width(2)
            };
            Circle::new((x, y), if best { 6 } else { 4 }, style)
        }))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
