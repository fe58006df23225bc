//! The table: each row judged against the rows it is compared with (the
//! raw ceiling, the reference subscriber, the core NATS path), printed, and
//! written into docs/BENCHMARKS.md under a heading of its own.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::events::Pace;
use crate::scenarios::{Kind, Measured, Problem, Scenario, Target};

/// The heading of the generated section; everything from it to the next
/// `## ` heading is replaced on each write.
pub const HEADING: &str = "## End-to-end (wasmhook-bench)";

/// One scenario's outcome.
pub struct Row {
    pub scenario: Scenario,
    /// The median round (or the first problem).
    pub outcome: Result<Measured, Problem>,
    /// For a row compared with another: each round's fraction of the base
    /// runs right before and after it ([`crate::scenarios::bracketed`]).
    pub fractions: Vec<f64>,
}

impl Row {
    fn measured(&self) -> Option<&Measured> {
        self.outcome.as_ref().ok()
    }

    fn rate(&self) -> Option<f64> {
        self.measured().and_then(|m| m.rate)
    }

    /// Whether the harness (or wasmhook) broke on this row.
    pub fn failed(&self) -> bool {
        matches!(self.outcome, Err(Problem::Fail(_)))
    }
}

/// The comparisons of one row.
#[derive(Debug, Default)]
struct Judged {
    of_raw: Option<f64>,
    times_reference: Option<f64>,
    /// Met or not, and the sentence that says so.
    verdict: Option<(bool, String)>,
}

fn find<'a>(rows: &'a [Row], name: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.scenario.name == name)
}

/// The raw ceiling a row compares with: the one for its entity size, and
/// only for full-speed rows (a paced row's rate is its pace).
fn raw_for(rows: &[Row], kind: &Kind) -> Option<f64> {
    let entity = match kind {
        Kind::Wasmhook(run) if matches!(run.pace, Pace::Flood) => run.entity_bytes,
        Kind::Reference { .. } => 1024,
        _ => return None,
    };
    rows.iter()
        .find(|r| matches!(r.scenario.kind, Kind::Raw { entity_bytes } if entity_bytes == entity))
        .and_then(Row::rate)
}

fn judge(rows: &[Row]) -> Vec<Judged> {
    let reference = find(rows, "reference").and_then(Row::rate);
    rows.iter()
        .map(|row| {
            let Some(measured) = row.measured() else {
                return Judged::default();
            };
            let rate = measured.rate;
            let of_raw = rate
                .zip(raw_for(rows, &row.scenario.kind))
                .map(|(r, raw)| r / raw);
            // The reference moves 1 KB entities at full speed; other rows
            // are not the same work.
            let times_reference = match row.scenario.kind {
                Kind::Wasmhook(run)
                    if run.entity_bytes == 1024 && matches!(run.pace, Pace::Flood) =>
                {
                    rate.zip(reference).map(|(r, x)| r / x)
                }
                Kind::Reference { .. } => rate.zip(reference).map(|(r, x)| r / x),
                _ => None,
            };
            let verdict = row.scenario.target.map(|target| {
                let (met, text) = verdict(target, rows, row, of_raw, times_reference);
                if measured.stuck {
                    (false, "**STUCK**: see notes".into())
                } else if measured.incomplete {
                    (false, format!("{text} (incomplete)"))
                } else {
                    (met, text)
                }
            });
            Judged {
                of_raw,
                times_reference,
                verdict,
            }
        })
        .collect()
}

/// A row others are judged against.
#[derive(Debug, Clone, Copy)]
struct Base {
    name: &'static str,
    /// Its median rate.
    rate: Option<f64>,
}

impl Base {
    fn of(rows: &[Row], name: &'static str) -> Base {
        Base {
            name,
            rate: find(rows, name).and_then(Row::rate),
        }
    }
}

/// A row's rate as a fraction of its base's.
#[derive(Debug, Clone, PartialEq)]
enum Fraction {
    /// The median of the per-round fractions, each run against the base's
    /// runs beside it (listed in run order).
    Bracketed { median: f64, rounds: Vec<f64> },
    /// Median against median: no run had a base run beside it.
    OfMedians(f64),
}

impl Fraction {
    fn of(rate: Option<f64>, fractions: &[f64], base: &Base) -> Option<Fraction> {
        if !fractions.is_empty() {
            let mut sorted = fractions.to_vec();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len();
            let median = if n % 2 == 1 {
                sorted[n / 2]
            } else {
                (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
            };
            return Some(Fraction::Bracketed {
                median,
                rounds: fractions.to_vec(),
            });
        }
        match (rate, base.rate) {
            (Some(rate), Some(base)) if base > 0.0 => Some(Fraction::OfMedians(rate / base)),
            _ => None,
        }
    }

    fn value(&self) -> f64 {
        match self {
            Fraction::Bracketed { median, .. } => *median,
            Fraction::OfMedians(f) => *f,
        }
    }
}

fn percent(f: f64) -> String {
    format!("{:.0}%", f * 100.0)
}

fn verdict(
    target: Target,
    rows: &[Row],
    row: &Row,
    of_raw: Option<f64>,
    times_reference: Option<f64>,
) -> (bool, String) {
    let word = |met: bool| if met { "met" } else { "**missed**" };
    let Some(m) = row.measured() else {
        return (false, "n/a: no measurement".into());
    };
    let vs = |base: Base, need: f64| match Fraction::of(m.rate, &row.fractions, &base) {
        Some(fraction) => {
            let f = fraction.value();
            let how = match &fraction {
                Fraction::Bracketed { rounds, .. } if rounds.len() == 1 => {
                    " (1 bracketed run)".into()
                }
                Fraction::Bracketed { rounds, .. } => {
                    format!(" (median of {} bracketed runs)", rounds.len())
                }
                Fraction::OfMedians(_) => " (median against median)".into(),
            };
            (
                f >= need,
                format!(
                    "{}: {} of {}{how} (≥ {})",
                    word(f >= need),
                    percent(f),
                    base.name,
                    percent(need)
                ),
            )
        }
        None => (false, format!("n/a: no {} rate to compare with", base.name)),
    };
    match target {
        Target::RawAndReference => {
            let raw_ok = of_raw.map(|f| f >= 0.6);
            let ref_ok = times_reference.map(|x| x >= 50.0);
            let mut parts = Vec::new();
            if let Some(f) = of_raw {
                parts.push(format!("{:.0}% of raw (≥ 60%)", f * 100.0));
            } else {
                parts.push("no raw ceiling".into());
            }
            if let Some(x) = times_reference {
                parts.push(format!("{x:.0}× reference (≥ 50×)"));
            } else {
                parts.push("no reference".into());
            }
            let met = raw_ok.unwrap_or(false) && ref_ok.unwrap_or(false);
            let label = match (raw_ok, ref_ok) {
                (Some(true), Some(true)) => "met".to_string(),
                (Some(false), Some(true)) => "**missed** (raw)".to_string(),
                (Some(true), Some(false)) => "**missed** (reference)".to_string(),
                (Some(false), Some(false)) => "**missed**".to_string(),
                _ => "partly n/a".to_string(),
            };
            (met, format!("{label}: {}", parts.join(", ")))
        }
        Target::WasmVsTemplate
        | Target::HealthyVsWasm
        | Target::DurableVsCore
        | Target::LogCost => match base_of(target, rows) {
            Some((base, need)) => vs(base, need),
            None => (false, "n/a: no row to compare with".into()),
        },
        Target::P99Under5ms => match m.latency {
            Some(l) => {
                let met = l.p99 < Duration::from_millis(5);
                (
                    met,
                    format!("{}: p99 {} (< 5 ms)", word(met), duration(l.p99)),
                )
            }
            None => (false, "n/a: no latencies recorded".into()),
        },
        Target::RssUnder150 => match m.rss_mb {
            Some(mb) => {
                let met = mb < 150.0;
                (met, format!("{}: {mb:.0} MB (< 150 MB)", word(met)))
            }
            None => (false, "n/a: no RSS".into()),
        },
    }
}

/// `850 µs`, `4.2 ms`, `1.3 s`.
fn duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// `12,345`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}×")
    } else if x >= 0.1 {
        format!("{x:.1}×")
    } else {
        format!("{x:.3}×")
    }
}

/// The table in Markdown (it reads as a plain table in a terminal too).
pub fn table(rows: &[Row]) -> String {
    let judged = judge(rows);
    let mut out = String::from(
        "| scenario | events | deliveries/s | of raw | × reference | p50 | p99 | max | peak RSS MB | CPU s | target |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    let dash = || "–".to_string();
    for (row, j) in rows.iter().zip(&judged) {
        let name = row.scenario.name;
        match &row.outcome {
            Ok(m) => {
                let _ = writeln!(
                    out,
                    "| `{name}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    m.events,
                    m.rate.map_or_else(dash, thousands),
                    j.of_raw.map_or_else(dash, |f| format!("{:.0}%", f * 100.0)),
                    j.times_reference.map_or_else(dash, ratio),
                    m.latency.map_or_else(dash, |l| duration(l.p50)),
                    m.latency.map_or_else(dash, |l| duration(l.p99)),
                    m.latency.map_or_else(dash, |l| duration(l.max)),
                    m.rss_mb.map_or_else(dash, |v| format!("{v:.0}")),
                    m.cpu_s.map_or_else(dash, |v| format!("{v:.2}")),
                    match &j.verdict {
                        Some((_, text)) => text.clone(),
                        None if m.stuck => "**STUCK**: see notes".into(),
                        None if m.incomplete => "**incomplete**: see notes".into(),
                        None => String::new(),
                    },
                );
            }
            Err(Problem::Skip(_)) => {
                let _ = writeln!(out, "| `{name}` | | skipped | | | | | | | | see notes |");
            }
            Err(Problem::Fail(_)) => {
                let _ = writeln!(out, "| `{name}` | | **FAILED** | | | | | | | | see notes |");
            }
        }
    }
    out
}

/// The row a target compares with and the fraction of it the target asks
/// for, if it compares with one.
fn base_of(target: Target, rows: &[Row]) -> Option<(Base, f64)> {
    let (name, need) = target.compared_with()?;
    Some((Base::of(rows, name), need))
}

/// `of nats-wasm runs beside each run, in run order: 98%, 104%, 93%`, for
/// a row whose verdict used bracketed runs.
fn bracketed_note(row: &Row) -> Option<String> {
    if row.fractions.is_empty() {
        return None;
    }
    let (base, _) = row.scenario.target?.compared_with()?;
    let runs: Vec<String> = row.fractions.iter().map(|f| percent(*f)).collect();
    let interval = median_interval(&row.fractions).map_or(String::new(), |(low, high, cover)| {
        format!(
            "; the median lies in {}-{} with {:.0}% confidence",
            percent(low),
            percent(high),
            cover * 100.0
        )
    });
    Some(format!(
        "of {base} runs beside each run, in run order: {}{interval}",
        runs.join(", ")
    ))
}

/// A distribution-free confidence interval for the median of `runs`: the
/// k-th smallest and k-th largest run, with the largest k that still covers
/// the true median with at least 95% probability (the sign test: each run
/// falls below the median with probability 1/2, whatever the spread of
/// this machine's speed looks like). Returns (low, high, coverage); `None`
/// under 6 runs, where no interval reaches 95%.
fn median_interval(runs: &[f64]) -> Option<(f64, f64, f64)> {
    let n = runs.len();
    // P(X <= j) for X ~ Binomial(n, 1/2), accumulated term by term; each
    // term from its logarithm, since 2^-n underflows for long runs.
    let half_n = n as f64 * std::f64::consts::LN_2;
    let mut ln_choose = 0.0; // ln C(n, j)
    let mut below = 0.0;
    let mut best = None;
    for k in 1..=n / 2 {
        // Coverage of [x_(k), x_(n+1-k)] is 1 - 2 P(X <= k-1).
        let j = k - 1;
        below += (ln_choose - half_n).exp();
        ln_choose += ((n - j) as f64).ln() - (k as f64).ln();
        let cover = 1.0 - 2.0 * below;
        if cover < 0.95 {
            break;
        }
        best = Some((k, cover));
    }
    let (k, cover) = best?;
    let mut sorted = runs.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some((sorted[k - 1], sorted[n - k], cover))
}

/// Skips, failures and anything unusual, one bullet per row.
pub fn notes(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        let name = row.scenario.name;
        let lines: Vec<String> = match &row.outcome {
            Ok(m) => m.notes.iter().cloned().chain(bracketed_note(row)).collect(),
            Err(Problem::Skip(why)) => vec![format!("skipped: {why}")],
            Err(Problem::Fail(error)) => vec![format!("FAILED: {error:#}")],
        };
        for line in lines {
            let mut text = line.lines();
            let first = text.next().unwrap_or("");
            let _ = writeln!(out, "- `{name}`: {first}");
            let rest: Vec<&str> = text.collect();
            if !rest.is_empty() {
                let _ = writeln!(out, "\n  ```\n  {}\n  ```", rest.join("\n  "));
            }
        }
    }
    out
}

/// Where and how the numbers were taken.
pub struct Provenance {
    pub command: String,
    pub cores: usize,
    pub cpu: String,
    pub date: String,
    pub versions: Vec<String>,
    /// `git describe --always --dirty` of the tree the binary was built from
    /// (as far as the harness can tell: the tree now).
    pub revision: String,
}

/// The whole generated section.
pub fn section(rows: &[Row], p: &Provenance) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{HEADING}\n");
    let _ = writeln!(
        out,
        "Written by the harness (`bench/`), replaced on every run with `--write`. \
         Every row comes from the same invocation; the comparisons are \
         only meaningful within it.\n"
    );
    let _ = writeln!(out, "Command: `{}`", p.command);
    let _ = writeln!(
        out,
        "Machine: {} cores ({}), {}. Loopback only; wasmhook from `cargo build --release -p wasmhook` \
         at {}, `max_concurrent = 100` (also per destination), log level warn.{}\n",
        p.cores,
        p.cpu,
        p.date,
        p.revision,
        if p.versions.is_empty() {
            String::new()
        } else {
            format!(" Servers: {}.", p.versions.join("; "))
        }
    );
    out.push_str(&table(rows));
    let notes = notes(rows);
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes:\n\n{notes}");
    } else {
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "Columns: deliveries/s counts deliveries received from the first publish to the last \
         arrival, after a warm-up that is not counted; \"of raw\" compares with the raw row of \
         the same entity size and \"× reference\" with `reference` (1 KB, full-speed rows only); \
         latency runs from the publish (the event's `sent_ns`, sent back in a templated header) \
         to arrival at the receiver; peak RSS is wasmhook's VmHWM (the Python process's for the \
         reference rows); CPU s is user + system time during the measurement. The receiver \
         answers 200 at once and checks the HMAC of one request in 50. A row judged against \
         another (\"of nats-template\", \"of nats-wasm\") runs, in every round, between two \
         runs of that other row, which count for this comparison only; its target takes the \
         median over the rounds of its rate as a fraction of the mean of those two, because a \
         run lasts seconds and the machine's speed moves on that scale. Such rows get more \
         rounds than the rest (`--compared-rounds`, 10 by default) and, from 6 runs, a note \
         with the interval that holds their median with at least 95% confidence.\n"
    );
    for row in rows {
        let _ = writeln!(out, "- `{}`: {}", row.scenario.name, row.scenario.what);
    }
    out
}

/// Replaces the generated section of `path` (or appends it), leaving the
/// rest of the file as it is.
pub fn write_section(path: &Path, section: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    std::fs::write(path, replace_section(&text, section))
        .with_context(|| format!("writing {}", path.display()))
}

fn replace_section(text: &str, section: &str) -> String {
    let section = section.trim_end();
    let Some(start) = text.find(&format!("\n{HEADING}\n")).map(|i| i + 1) else {
        return format!("{}\n\n{section}\n", text.trim_end());
    };
    let after = start + HEADING.len();
    let end = text[after..]
        .find("\n## ")
        .map_or(text.len(), |i| after + i + 1);
    let rest = &text[end..];
    if rest.is_empty() {
        format!("{}{section}\n", &text[..start])
    } else {
        format!("{}{section}\n\n{rest}", &text[..start])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_appended_then_replaced_in_place() {
        let doc = "# Benchmarks\n\n## Other\n\nkeep\n";
        let once = replace_section(doc, &format!("{HEADING}\n\nfirst\n"));
        assert_eq!(
            once,
            format!("# Benchmarks\n\n## Other\n\nkeep\n\n{HEADING}\n\nfirst\n")
        );
        let with_tail = format!("{once}\n## Analysis\n\nby hand\n");
        let twice = replace_section(&with_tail, &format!("{HEADING}\n\nsecond"));
        assert_eq!(
            twice,
            format!("# Benchmarks\n\n## Other\n\nkeep\n\n{HEADING}\n\nsecond\n\n## Analysis\n\nby hand\n")
        );
    }

    fn base(rate: Option<f64>) -> Base {
        Base {
            name: "nats-wasm",
            rate,
        }
    }

    #[test]
    fn a_row_is_judged_on_the_median_of_its_bracketed_runs() {
        let fraction = Fraction::of(Some(9_000.0), &[0.9, 1.1, 1.0], &base(Some(20_000.0)));
        assert_eq!(
            fraction,
            Some(Fraction::Bracketed {
                median: 1.0,
                rounds: vec![0.9, 1.1, 1.0]
            })
        );
        // An even count takes the mean of the middle two.
        let value = Fraction::of(None, &[1.0, 0.9], &base(None)).map_or(0.0, |f| f.value());
        assert!((value - 0.95).abs() < 1e-12, "{value}");
    }

    #[test]
    fn without_bracketed_runs_the_medians_are_compared() {
        let fraction = Fraction::of(Some(8_000.0), &[], &base(Some(10_000.0)));
        assert_eq!(fraction, Some(Fraction::OfMedians(0.8)));
        assert_eq!(Fraction::of(Some(1.0), &[], &base(None)), None);
    }

    #[test]
    fn the_medians_interval_widens_to_keep_95_percent() {
        // Five runs cannot give 95%: even min..max covers 1 - 2/32.
        assert_eq!(median_interval(&[1.0, 0.9, 0.95, 0.92, 0.97]), None);
        // Six runs: min..max, 1 - 2/64.
        let (low, high, cover) = median_interval(&[0.93, 0.9, 1.0, 0.95, 0.97, 0.99]).unwrap();
        assert_eq!((low, high), (0.9, 1.0));
        assert!((cover - (1.0 - 2.0 / 64.0)).abs() < 1e-12, "{cover}");
        // Ten runs: the second smallest and largest, 1 - 2 * 11/1024;
        // the third would cover only 1 - 2 * 56/1024 (89%).
        let runs = [0.85, 0.99, 0.91, 0.93, 0.95, 0.97, 0.92, 1.02, 0.94, 0.96];
        let (low, high, cover) = median_interval(&runs).unwrap();
        assert_eq!((low, high), (0.91, 0.99));
        assert!((cover - (1.0 - 22.0 / 1024.0)).abs() < 1e-12, "{cover}");
        // Long runs: the normal approximation puts k near
        // n/2 - 1.96 sqrt(n)/2 (956 of 2,000), not at the middle.
        let runs: Vec<f64> = (0..2000).map(f64::from).collect();
        let (low, high, cover) = median_interval(&runs).unwrap();
        assert!((950.0..=960.0).contains(&low), "{low}");
        assert_eq!(high, 1999.0 - low);
        assert!((0.95..0.96).contains(&cover), "{cover}");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(duration(Duration::from_micros(4200)), "4.2 ms");
        assert_eq!(ratio(57.4), "57×");
        assert_eq!(ratio(0.031), "0.031×");
    }
}
