//! Charts drawn on the server as inline SVG: no script, no outside library,
//! and nothing that a strict content security policy would block (colours
//! come from classes in the stylesheet, never from `style` attributes).

use maud::{html, Markup};

/// Drawing area of a chart, in SVG units; the stylesheet scales it.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 36.0;

/// Most labels under the horizontal axis; more would overlap.
const MAX_X_LABELS: usize = 8;

/// One bar: its bucket's label and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// The bucket, as shown under the axis and in the tooltip.
    pub label: String,
    /// Clicks in the bucket.
    pub count: i64,
}

/// A bar chart of counts over time, with a title and a description for
/// screen readers, a tooltip per bar, and the figures as a table beneath.
pub fn time_chart(id: &str, title: &str, bars: &[Bar]) -> Markup {
    let max = bars.iter().map(|bar| bar.count).max().unwrap_or(0).max(1);
    let total: i64 = bars.iter().map(|bar| bar.count).sum();
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let step = plot_width / bars.len().max(1) as f64;
    let label_every = bars.len().div_ceil(MAX_X_LABELS).max(1);
    let busiest = bars
        .iter()
        .filter(|bar| bar.count > 0)
        .max_by_key(|bar| bar.count);
    let description = match busiest {
        Some(bar) => format!(
            "{total} clicks in all; the busiest was {} with {}.",
            bar.label, bar.count
        ),
        None => "No clicks in this period.".to_owned(),
    };
    let y = |count: i64| TOP + plot_height - plot_height * count as f64 / max as f64;
    let ticks = [0, max / 2, max];
    html! {
        figure class="chart-figure" {
            svg class="chart" id=(id) viewBox={ "0 0 " (WIDTH) " " (HEIGHT) }
                role="img" aria-labelledby={ (id) "-title " (id) "-desc" }
                data-total=(total) {
                title id={ (id) "-title" } { (title) }
                desc id={ (id) "-desc" } { (description) }
                @for tick in ticks {
                    line class="grid-line" x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(tick)) y2=(y(tick)) {}
                    text x=(LEFT - 6.0) y=(y(tick) + 4.0) text-anchor="end" { (tick) }
                }
                line class="axis" x1=(LEFT) x2=(WIDTH - RIGHT)
                    y1=(TOP + plot_height) y2=(TOP + plot_height) {}
                @for (i, bar) in bars.iter().enumerate() {
                    @let x = LEFT + step * i as f64;
                    @let top = y(bar.count);
                    rect class="bar" x=(round(x + step * 0.1)) y=(round(top))
                        width=(round(step * 0.8)) height=(round(TOP + plot_height - top))
                        data-bucket=(bar.label) data-count=(bar.count) {
                        title { (bar.label) ": " (bar.count) " " (clicks_word(bar.count)) }
                    }
                    @if i % label_every == 0 {
                        text x=(round(x + step / 2.0)) y=(HEIGHT - BOTTOM + 16.0)
                            text-anchor="middle" { (short_label(&bar.label)) }
                    }
                }
            }
            details {
                summary { "Figures as a table" }
                table {
                    thead { tr { th scope="col" { "Period (UTC)" } th scope="col" class="num" { "Clicks" } } }
                    tbody {
                        @for bar in bars.iter().filter(|bar| bar.count > 0) {
                            tr { td { (bar.label) } td class="num" { (bar.count) } }
                        }
                    }
                }
            }
        }
    }
}

/// A ranked list of counts with a meter per row, such as top referrers.
pub fn ranking(caption: &str, heading: &str, rows: &[(String, i64)]) -> Markup {
    let max = rows
        .iter()
        .map(|(_, count)| *count)
        .max()
        .unwrap_or(0)
        .max(1);
    html! {
        div class="table-wrap" {
            table {
                caption { (caption) }
                thead {
                    tr {
                        th scope="col" { (heading) }
                        th scope="col" class="num" { "Clicks" }
                        th scope="col" class="hide-narrow" { span class="sr-only" { "Share" } }
                    }
                }
                tbody {
                    @if rows.is_empty() {
                        tr { td colspan="3" class="empty" { "No clicks yet." } }
                    }
                    @for (name, count) in rows {
                        tr {
                            td class="target" { (name) }
                            td class="num" { (count) }
                            td class="hide-narrow" {
                                meter min="0" max=(max) value=(count)
                                    aria-label={ (name) ": " (count) " " (clicks_word(*count)) } {
                                    (count)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn clicks_word(count: i64) -> &'static str {
    if count == 1 {
        "click"
    } else {
        "clicks"
    }
}

/// A bucket label shortened for the axis: `MM-DD` for days, `HH:00` for hours.
fn short_label(label: &str) -> String {
    match label.split_once('T') {
        Some((_, hour)) => format!("{hour}:00"),
        None => label.get(5..).unwrap_or(label).to_owned(),
    }
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(counts: &[i64]) -> Vec<Bar> {
        counts
            .iter()
            .enumerate()
            .map(|(i, &count)| Bar {
                label: format!("2026-12-{:02}", i + 1),
                count,
            })
            .collect()
    }

    #[test]
    fn bars_scale_to_the_busiest_bucket() {
        let svg = time_chart("c", "Clicks", &bars(&[0, 2, 4])).into_string();
        assert!(svg.contains(r#"data-count="4""#), "{svg}");
        assert!(svg.contains(r#"data-total="6""#));
        assert!(svg.contains("the busiest was 2026-12-03 with 4"));
        // The busiest bar fills the plot height, an empty one has none.
        let plot = HEIGHT - TOP - BOTTOM;
        assert!(svg.contains(&format!(r#"height="{plot}" data-bucket="2026-12-03""#)));
        assert!(svg.contains(r#"height="0" data-bucket="2026-12-01""#));
        assert!(!svg.contains("style="));
    }

    #[test]
    fn empty_periods_say_so() {
        let svg = time_chart("c", "Clicks", &bars(&[0, 0])).into_string();
        assert!(svg.contains("No clicks in this period."));
    }

    #[test]
    fn labels_are_shortened_for_the_axis() {
        assert_eq!(short_label("2026-12-04"), "12-04");
        assert_eq!(short_label("2026-12-04T09"), "09:00");
    }
}
