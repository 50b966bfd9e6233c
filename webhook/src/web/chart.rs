//! Line charts as SVG, drawn on the server with plotters (its SVG backend writes text as
//! `<text>` with a generic font family: no font files are read). A page shows each chart
//! as an `<img>` with a text alternative and a table of the latest numbers beside it.

use crate::store::Sample;
use plotters::prelude::*;
use std::collections::BTreeMap;

/// One line: its label and its points (time in ms, count).
#[derive(Debug, Clone)]
pub struct Line {
    pub label: String,
    pub points: Vec<(i64, i64)>,
}

/// Colours that stay apart for people with the common colour-vision deficiencies (Okabe–Ito),
/// and against the white background.
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
    RGBColor(0, 0, 0),
    RGBColor(120, 120, 120),
];

/// At most this many lines; the rest are summed into `other`.
const MAX_LINES: usize = 7;

/// Samples → one line per label, a point at every sampled time (0 where a label has no
/// row then). Labels ordered as `order` says (absent ones after, by name); past
/// [`MAX_LINES`], the smallest by their last count are summed into `other`.
pub fn lines(samples: &[Sample], order: &[&str]) -> Vec<Line> {
    let times: Vec<i64> = {
        let mut t: Vec<i64> = samples.iter().map(|s| s.at).collect();
        t.dedup();
        t
    };
    let mut by_label: BTreeMap<&str, BTreeMap<i64, i64>> = BTreeMap::new();
    for s in samples {
        by_label.entry(&s.label).or_default().insert(s.at, s.count);
    }
    let last = |m: &BTreeMap<i64, i64>| times.last().and_then(|t| m.get(t)).copied().unwrap_or(0);
    let mut labels: Vec<&str> = by_label.keys().copied().collect();
    labels.sort_by_key(|l| {
        (
            order.iter().position(|o| o == l).unwrap_or(usize::MAX),
            std::cmp::Reverse(last(&by_label[l])),
            l.to_string(),
        )
    });
    let (keep, rest) = if labels.len() > MAX_LINES {
        labels.split_at(MAX_LINES - 1)
    } else {
        (&labels[..], &[][..])
    };
    let line = |label: String, pick: &dyn Fn(i64) -> i64| Line {
        label,
        points: times.iter().map(|&t| (t, pick(t))).collect(),
    };
    let mut out: Vec<Line> = keep
        .iter()
        .map(|l| {
            let m = &by_label[l];
            line((*l).to_owned(), &|t| m.get(&t).copied().unwrap_or(0))
        })
        .collect();
    if !rest.is_empty() {
        out.push(line(format!("{} others", rest.len()), &|t| {
            rest.iter()
                .map(|l| by_label[l].get(&t).copied().unwrap_or(0))
                .sum()
        }));
    }
    out
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// The SVG of `lines` over time, titled `title`, the y axis counting `unit`.
pub fn svg(title: &str, unit: &str, lines: &[Line]) -> anyhow::Result<String> {
    let err = |e: &dyn std::fmt::Debug| anyhow::anyhow!("drawing the chart {title:?}: {e:?}");
    let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let (mut x0, mut x1) = (xs.clone().min().unwrap_or(0), xs.max().unwrap_or(0));
    if x1 <= x0 {
        x0 -= 1_800_000;
        x1 += 1_800_000;
    }
    let ymax = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .max()
        .unwrap_or(0)
        .max(1);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (760, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(52)
            .build_cartesian_2d(x0..x1, 0i64..(ymax + ymax / 8 + 1))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|x| when(*x))
            .y_desc(unit)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, l) in lines.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(l.points.clone(), colour.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(l.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(3))
                });
            chart
                .draw_series(l.points.iter().map(|p| Circle::new(*p, 3, colour.filled())))
                .map_err(|e| err(&e))?;
        }
        if !lines.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at: i64, label: &str, count: i64) -> Sample {
        Sample {
            at,
            label: label.into(),
            count,
        }
    }

    #[test]
    fn a_label_absent_at_a_time_counts_zero_there() {
        let l = lines(&[s(1, "a", 2), s(1, "b", 1), s(2, "a", 3)], &[]);
        assert_eq!(l[0].label, "a");
        assert_eq!(l[1].points, vec![(1, 1), (2, 0)]);
    }

    #[test]
    fn many_labels_keep_the_largest_and_sum_the_rest() {
        let samples: Vec<Sample> = (0..10).map(|i| s(1, &format!("v{i}"), i)).collect();
        let l = lines(&samples, &[]);
        assert_eq!(l.len(), MAX_LINES);
        assert_eq!(l[0].label, "v9");
        assert_eq!(l.last().unwrap().label, "4 others");
        assert_eq!(l.last().unwrap().points, vec![(1, 6)]);
    }

    #[test]
    fn the_svg_names_its_title_and_lines_and_escapes_them() {
        let svg = svg(
            "adoption of <x>",
            "instances",
            &[Line {
                label: "1.0.0&<b>".into(),
                points: vec![(0, 1), (60_000, 2)],
            }],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("adoption of &lt;x&gt;"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
    }
}
