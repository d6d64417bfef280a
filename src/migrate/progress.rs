//! Progress and pacing. On a terminal: an `indicatif` bar (rows done /
//! total, rows/s, ETA). Otherwise (cron, CI, `| tee`): one log line every
//! few seconds on stderr, which a log collector can keep. Either way only
//! counts are shown, never a value or a key.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Seconds between log lines when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(3);

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    done: u64,
    /// Rows done before this run (a resumed conversion); excluded from rates.
    resumed: u64,
    start: Instant,
    last_log: Instant,
}

impl Progress {
    pub fn new(label: &str, total: u64, resumed: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total.max(resumed));
            let style = ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} rows, {per_sec}, ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            b.set_style(style);
            b.set_message(label.to_string());
            b.set_position(resumed);
            b
        });
        let now = Instant::now();
        Progress {
            bar,
            label: label.to_string(),
            total,
            done: resumed,
            resumed,
            start: now,
            last_log: now,
        }
    }

    pub fn add(&mut self, rows: u64) {
        self.done += rows;
        match &self.bar {
            Some(b) => b.set_position(self.done),
            None if self.last_log.elapsed() >= LOG_EVERY => {
                self.last_log = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    pub fn rate(&self) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        if secs <= 0.0 {
            0.0
        } else {
            (self.done - self.resumed) as f64 / secs
        }
    }

    fn line(&self) -> String {
        let rate = self.rate();
        let left = self.total.saturating_sub(self.done);
        let eta = if rate > 0.0 {
            format!("{:.0}s", left as f64 / rate)
        } else {
            "?".into()
        };
        let pct = if self.total == 0 {
            100.0
        } else {
            100.0 * self.done.min(self.total) as f64 / self.total as f64
        };
        format!(
            "pgveil encrypt: {}: {}/{} rows ({pct:.0}%), {rate:.0} rows/s, ETA {eta}",
            self.label, self.done, self.total
        )
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// `--max-rate`: sleeps after a batch so that the run's average stays at or
/// under the limit. The average, not each batch, so a slow batch (lock wait)
/// does not cost throughput later.
pub struct Throttle {
    rate: Option<f64>,
    start: Instant,
    done: u64,
}

impl Throttle {
    pub fn new(rate: Option<f64>) -> Throttle {
        Throttle {
            rate: rate.filter(|r| *r > 0.0),
            start: Instant::now(),
            done: 0,
        }
    }

    pub fn delay_for(&mut self, rows: u64) -> Duration {
        self.done += rows;
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let due = Duration::from_secs_f64(self.done as f64 / rate);
        due.saturating_sub(self.start.elapsed())
    }

    pub async fn pace(&mut self, rows: u64) {
        let d = self.delay_for(rows);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_holds_the_average_rate() {
        let mut t = Throttle::new(Some(1000.0));
        let d = t.delay_for(500);
        assert!(
            d > Duration::from_millis(400) && d <= Duration::from_millis(500),
            "{d:?}"
        );
        assert_eq!(Throttle::new(None).delay_for(1_000_000), Duration::ZERO);
    }

    #[test]
    fn log_line_has_counts_only() {
        let mut p = Progress::new("public.t", 200, 50);
        p.add(50);
        let l = p.line();
        assert!(l.contains("100/200 rows (50%)"), "{l}");
    }
}
