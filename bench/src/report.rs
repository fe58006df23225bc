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
    /// Every round's rate, in the order the rounds ran: a row compared with
    /// another is compared round by round, because the rounds of one
    /// invocation run round-robin and a shared machine's speed drifts
    /// between them more than it does within one.
    pub round_rates: Vec<Option<f64>>,
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
    let bases = Bases {
        core: Base::of(rows, "nats-template"),
        wasm: Base::of(rows, "nats-wasm"),
    };
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
                let (met, text) = verdict(target, row, measured, of_raw, times_reference, bases);
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
struct Base<'a> {
    name: &'static str,
    /// Its median rate.
    rate: Option<f64>,
    rounds: &'a [Option<f64>],
}

impl<'a> Base<'a> {
    fn of(rows: &'a [Row], name: &'static str) -> Base<'a> {
        let row = find(rows, name);
        Base {
            name,
            rate: row.and_then(Row::rate),
            rounds: row.map_or(&[], |r| &r.round_rates),
        }
    }
}

/// The rows others are judged against.
#[derive(Debug, Clone, Copy)]
struct Bases<'a> {
    /// `nats-template`.
    core: Base<'a>,
    /// `nats-wasm`.
    wasm: Base<'a>,
}

/// A row's rate as a fraction of its base's.
#[derive(Debug, Clone, PartialEq)]
enum Fraction {
    /// The median of the per-round fractions, each round against the base's
    /// run of the same round (listed in run order).
    Paired { median: f64, rounds: Vec<f64> },
    /// Median against median: fewer than two rounds could be paired.
    OfMedians(f64),
}

impl Fraction {
    fn of(rate: Option<f64>, rounds: &[Option<f64>], base: &Base) -> Option<Fraction> {
        let paired: Vec<f64> = rounds
            .iter()
            .zip(base.rounds)
            .filter_map(|(row, base)| match (row, base) {
                (Some(row), Some(base)) if *base > 0.0 => Some(row / base),
                _ => None,
            })
            .collect();
        if paired.len() >= 2 {
            let mut sorted = paired.clone();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len();
            let median = if n % 2 == 1 {
                sorted[n / 2]
            } else {
                (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
            };
            return Some(Fraction::Paired {
                median,
                rounds: paired,
            });
        }
        match (rate, base.rate) {
            (Some(rate), Some(base)) if base > 0.0 => Some(Fraction::OfMedians(rate / base)),
            _ => None,
        }
    }

    fn value(&self) -> f64 {
        match self {
            Fraction::Paired { median, .. } => *median,
            Fraction::OfMedians(f) => *f,
        }
    }
}

fn percent(f: f64) -> String {
    format!("{:.0}%", f * 100.0)
}

fn verdict(
    target: Target,
    row: &Row,
    m: &Measured,
    of_raw: Option<f64>,
    times_reference: Option<f64>,
    bases: Bases,
) -> (bool, String) {
    let word = |met: bool| if met { "met" } else { "**missed**" };
    let vs = |base: Base, need: f64| match Fraction::of(m.rate, &row.round_rates, &base) {
        Some(fraction) => {
            let f = fraction.value();
            let how = match &fraction {
                Fraction::Paired { rounds, .. } => {
                    format!(" (median of {} rounds paired)", rounds.len())
                }
                Fraction::OfMedians(_) => String::new(),
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
        Target::WasmVsTemplate | Target::HealthyVsWasm | Target::DurableVsCore => {
            match base_of(target, bases) {
                Some((base, need)) => vs(base, need),
                None => (false, "n/a: no row to compare with".into()),
            }
        }
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
fn base_of<'a>(target: Target, bases: Bases<'a>) -> Option<(Base<'a>, f64)> {
    match target {
        Target::WasmVsTemplate => Some((bases.core, 0.8)),
        Target::DurableVsCore => Some((bases.core, 0.5)),
        Target::HealthyVsWasm => Some((bases.wasm, 0.9)),
        Target::RawAndReference | Target::P99Under5ms | Target::RssUnder150 => None,
    }
}

/// `against nats-wasm round by round: 98%, 104%, 93%`, for a row whose
/// verdict paired its rounds.
fn paired_note(row: &Row, bases: Bases) -> Option<String> {
    let (base, _) = base_of(row.scenario.target?, bases)?;
    match Fraction::of(row.rate(), &row.round_rates, &base)? {
        Fraction::Paired { rounds, .. } => Some(format!(
            "of {} round by round: {}",
            base.name,
            rounds
                .iter()
                .map(|f| percent(*f))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Fraction::OfMedians(_) => None,
    }
}

/// Skips, failures and anything unusual, one bullet per row.
pub fn notes(rows: &[Row]) -> String {
    let bases = Bases {
        core: Base::of(rows, "nats-template"),
        wasm: Base::of(rows, "nats-wasm"),
    };
    let mut out = String::new();
    for row in rows {
        let name = row.scenario.name;
        let lines: Vec<String> = match &row.outcome {
            Ok(m) => m
                .notes
                .iter()
                .cloned()
                .chain(paired_note(row, bases))
                .collect(),
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
         answers 200 at once and checks the HMAC of one request in 50. A target that compares \
         two rows (\"of nats-template\", \"of nats-wasm\") takes the median of their \
         round-by-round fractions, each round against the other row's run of the same round, \
         because the machine's speed drifts more between rounds than within one.\n"
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

    fn base(rate: Option<f64>, rounds: &[Option<f64>]) -> Base<'_> {
        Base {
            name: "nats-wasm",
            rate,
            rounds,
        }
    }

    #[test]
    fn a_row_is_judged_round_by_round_against_its_base() {
        // The base's second round ran on a slow machine, and so did the
        // row's: paired, that round reads 100%, where the medians
        // (9,000 against 9,500) would read 95%.
        let rounds = [Some(10_000.0), Some(5_000.0), Some(9_500.0)];
        let row = [Some(9_000.0), Some(5_000.0), Some(9_500.0)];
        let fraction = Fraction::of(Some(9_000.0), &row, &base(Some(9_500.0), &rounds));
        assert_eq!(
            fraction,
            Some(Fraction::Paired {
                median: 1.0,
                rounds: vec![0.9, 1.0, 1.0]
            })
        );
        // An even count takes the mean of the middle two.
        let fraction = Fraction::of(None, &row[..2], &base(None, &rounds[..2]));
        let value = fraction.map_or(0.0, |f| f.value());
        assert!((value - 0.95).abs() < 1e-12, "{value}");
    }

    #[test]
    fn rounds_that_cannot_be_paired_fall_back_to_the_medians() {
        let rounds = [Some(10_000.0), None];
        let row = [Some(8_000.0), Some(9_000.0)];
        let fraction = Fraction::of(Some(8_000.0), &row, &base(Some(10_000.0), &rounds));
        assert_eq!(fraction, Some(Fraction::OfMedians(0.8)));
        assert_eq!(Fraction::of(Some(1.0), &row, &base(None, &[])), None);
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
