//! Small SVG line charts for the report: linear or log axes, shaded windows, a legend.

use std::fmt::Write as _;

use super::junit::escape;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 44.0;

/// One line of a chart.
pub struct Line {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
    /// Draw a dot at each point (for lines of few points).
    pub markers: bool,
}

impl Line {
    /// A line named `name` drawn in `color`.
    pub fn new(name: &str, color: &'static str, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            color,
            points,
            markers: false,
        }
    }

    /// The same line with a dot at each point.
    pub fn with_markers(mut self) -> Self {
        self.markers = true;
        self
    }
}

/// A shaded span of the x axis (a fault in effect).
pub struct Window {
    pub from: f64,
    pub to: f64,
    pub label: String,
}

/// A chart's titles.
pub struct Chart {
    title: String,
    x_label: String,
    y_label: String,
    /// Points further apart than this in x are not joined.
    break_after: f64,
}

/// Maps data to pixels on one axis.
struct Scale {
    min: f64,
    max: f64,
    log: bool,
    from: f64,
    to: f64,
}

impl Scale {
    fn at(&self, value: f64) -> f64 {
        let (v, lo, hi) = if self.log {
            (value.max(1e-9).log10(), self.min.log10(), self.max.log10())
        } else {
            (value, self.min, self.max)
        };
        let span = (hi - lo).max(1e-12);
        self.from + (v - lo) / span * (self.to - self.from)
    }
}

/// About five round tick values covering `min..=max`.
fn linear_ticks(min: f64, max: f64) -> Vec<f64> {
    let span = (max - min).max(1e-9);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * magnitude);
    let first = (min / step).ceil() * step;
    (0..)
        .map(|i| first + step * f64::from(i))
        .take_while(|v| *v <= max + step * 1e-9)
        .collect()
}

/// Powers of ten covering `min..=max`.
fn log_ticks(min: f64, max: f64) -> Vec<f64> {
    let (lo, hi) = (min.log10().floor() as i32, max.log10().ceil() as i32);
    (lo..=hi).map(|e| 10f64.powi(e)).collect()
}

/// "0%", "90%", "99%", "99.9%"... for 1/(1-p) = 1, 10, 100, 1000...
fn percentile_label(inverse: f64) -> String {
    let nines = inverse.log10().round() as usize;
    match nines {
        0 => "0%".into(),
        1 => "90%".into(),
        n => format!("99.{}%", "9".repeat(n - 2)).replace("99.%", "99%"),
    }
}

fn label(value: f64) -> String {
    if value == 0.0 {
        "0".into()
    } else if value.abs() >= 1000.0 {
        format!("{:.0}", value)
    } else if value.abs() >= 1.0 {
        format!("{}", (value * 100.0).round() / 100.0)
    } else {
        format!("{}", (value * 10000.0).round() / 10000.0)
    }
}

impl Chart {
    /// A chart with these titles.
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            break_after: f64::INFINITY,
        }
    }

    /// Leaves gaps where consecutive points are more than `gap` apart in x.
    pub fn breaking_after(mut self, gap: f64) -> Self {
        self.break_after = gap;
        self
    }

    /// A time chart: x linear, y linear or log, windows shaded.
    pub fn render(&self, lines: &[Line], windows: &[Window], y_log: bool) -> String {
        let all: Vec<(f64, f64)> = lines
            .iter()
            .flat_map(|l| l.points.iter().copied())
            .filter(|(_, y)| !y_log || *y > 0.0)
            .collect();
        let x_max = all
            .iter()
            .map(|p| p.0)
            .chain(windows.iter().map(|w| w.to))
            .fold(1.0f64, f64::max);
        let (y_min, y_max) = if y_log {
            let lo = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let hi = all.iter().map(|p| p.1).fold(0.0f64, f64::max);
            if lo.is_finite() {
                (
                    10f64.powf(lo.log10().floor()),
                    10f64.powf(hi.log10().ceil()).max(lo * 10.0),
                )
            } else {
                (0.1, 10.0)
            }
        } else {
            (0.0, all.iter().map(|p| p.1).fold(1.0f64, f64::max) * 1.05)
        };
        let xs = Scale {
            min: 0.0,
            max: x_max,
            log: false,
            from: LEFT,
            to: WIDTH - RIGHT,
        };
        let ys = Scale {
            min: y_min,
            max: y_max,
            log: y_log,
            from: HEIGHT - BOTTOM,
            to: TOP,
        };
        let x_ticks: Vec<(f64, String)> = linear_ticks(0.0, x_max)
            .into_iter()
            .map(|v| (v, label(v)))
            .collect();
        let y_ticks: Vec<(f64, String)> = if y_log {
            log_ticks(y_min, y_max)
        } else {
            linear_ticks(y_min, y_max)
        }
        .into_iter()
        .map(|v| (v, label(v)))
        .collect();
        let mut out = self.frame(&xs, &ys, &x_ticks, &y_ticks);
        for window in windows {
            let (x1, x2) = (xs.at(window.from), xs.at(window.to));
            let _ = write!(
                out,
                "<rect x=\"{x1:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#d62728\" fill-opacity=\"0.12\"><title>{}</title></rect>",
                (x2 - x1).max(1.0),
                HEIGHT - TOP - BOTTOM,
                escape(&window.label)
            );
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#a00\">{}</text>",
                x1 + 2.0,
                HEIGHT - BOTTOM - 4.0,
                escape(&window.label)
            );
        }
        self.lines(&mut out, lines, &xs, &ys);
        out.push_str("</svg>\n");
        out
    }

    /// A percentile chart: x is 1/(1-percentile) on a log scale (0%, 90%, 99%, ...), y log.
    pub fn render_percentiles(&self, lines: &[Line]) -> String {
        let to_x = |percentile: f64| 1.0 / (1.0 - (percentile / 100.0).min(0.999_999));
        let mapped: Vec<Line> = lines
            .iter()
            .map(|l| Line {
                name: l.name.clone(),
                color: l.color,
                points: l.points.iter().map(|(p, v)| (to_x(*p), *v)).collect(),
                markers: l.markers,
            })
            .collect();
        let all: Vec<(f64, f64)> = mapped
            .iter()
            .flat_map(|l| l.points.iter().copied())
            .collect();
        let x_max = all.iter().map(|p| p.0).fold(10.0f64, f64::max).min(1e6);
        let lo = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = all.iter().map(|p| p.1).fold(0.0f64, f64::max);
        let (y_min, y_max) = if lo.is_finite() {
            (
                10f64.powf(lo.log10().floor()),
                10f64.powf(hi.log10().ceil()).max(lo * 10.0),
            )
        } else {
            (0.1, 10.0)
        };
        let xs = Scale {
            min: 1.0,
            max: 10f64.powf(x_max.log10().ceil()),
            log: true,
            from: LEFT,
            to: WIDTH - RIGHT,
        };
        let ys = Scale {
            min: y_min,
            max: y_max,
            log: true,
            from: HEIGHT - BOTTOM,
            to: TOP,
        };
        let x_ticks: Vec<(f64, String)> = log_ticks(1.0, xs.max)
            .into_iter()
            .map(|v| (v, percentile_label(v)))
            .collect();
        let y_ticks: Vec<(f64, String)> = log_ticks(y_min, y_max)
            .into_iter()
            .map(|v| (v, label(v)))
            .collect();
        let mut out = self.frame(&xs, &ys, &x_ticks, &y_ticks);
        self.lines(&mut out, &mapped, &xs, &ys);
        out.push_str("</svg>\n");
        out
    }

    fn frame(
        &self,
        xs: &Scale,
        ys: &Scale,
        x_ticks: &[(f64, String)],
        y_ticks: &[(f64, String)],
    ) -> String {
        let mut out = format!(
            "<svg width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{t}\"><text x=\"{LEFT}\" y=\"16\" font-size=\"13\" font-weight=\"bold\">{t}</text>",
            t = escape(&self.title)
        );
        for (value, text) in y_ticks {
            let y = ys.at(*value);
            let _ = write!(
                out,
                "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 4.0,
                y + 3.0,
                escape(text)
            );
        }
        for (value, text) in x_ticks {
            let x = xs.at(*value);
            let _ = write!(
                out,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
                HEIGHT - BOTTOM,
                HEIGHT - BOTTOM + 14.0,
                escape(text)
            );
        }
        let _ = write!(
            out,
            "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#999\"/>",
            WIDTH - LEFT - RIGHT,
            HEIGHT - TOP - BOTTOM
        );
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            (LEFT + WIDTH - RIGHT) / 2.0,
            HEIGHT - 8.0,
            escape(&self.x_label)
        );
        let _ = write!(
            out,
            "<text x=\"14\" y=\"{:.1}\" font-size=\"11\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">{}</text>",
            (TOP + HEIGHT - BOTTOM) / 2.0,
            (TOP + HEIGHT - BOTTOM) / 2.0,
            escape(&self.y_label)
        );
        out
    }

    fn lines(&self, out: &mut String, lines: &[Line], xs: &Scale, ys: &Scale) {
        let mut legend_x = LEFT + 8.0;
        for line in lines {
            if line.points.is_empty() {
                continue;
            }
            // A line breaks where data is missing (points further apart than `break_after`).
            let mut segments: Vec<Vec<String>> = vec![Vec::new()];
            let mut last_x: Option<f64> = None;
            for (x, y) in line.points.iter().filter(|(_, y)| !ys.log || *y > 0.0) {
                if last_x.is_some_and(|last| x - last > self.break_after) {
                    segments.push(Vec::new());
                }
                last_x = Some(*x);
                if let Some(segment) = segments.last_mut() {
                    segment.push(format!("{:.1},{:.1}", xs.at(*x), ys.at(*y)));
                }
                if line.markers {
                    let _ = write!(
                        out,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>",
                        xs.at(*x),
                        ys.at(*y),
                        line.color
                    );
                }
            }
            for segment in segments.iter().filter(|s| !s.is_empty()) {
                let _ = write!(
                    out,
                    "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>",
                    line.color,
                    segment.join(" "),
                    escape(&line.name)
                );
            }
            let _ = write!(
                out,
                "<rect x=\"{legend_x:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>",
                TOP + 4.0,
                line.color,
                legend_x + 13.0,
                TOP + 13.0,
                escape(&line.name)
            );
            legend_x += 20.0 + 6.0 * line.name.len() as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(linear_ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(log_ticks(0.5, 20.0), vec![0.1, 1.0, 10.0, 100.0]);
    }

    #[test]
    fn charts_draw_lines_and_windows() {
        let chart = Chart::new("t", "x", "y");
        let svg = chart.render(
            &[Line::new("a", "#000", vec![(0.0, 1.0), (1.0, 2.0)])],
            &[Window {
                from: 0.2,
                to: 0.4,
                label: "f".into(),
            }],
            false,
        );
        assert!(
            svg.contains("<polyline") && svg.contains("fill-opacity") && svg.ends_with("</svg>\n")
        );
        let percentiles = chart.render_percentiles(&[Line::new(
            "p",
            "#000",
            vec![(0.0, 0.5), (99.0, 3.0), (99.99, 9.0)],
        )]);
        assert!(percentiles.contains("99.99%"), "{percentiles}");
    }
}
