//! Log output in DCMTK's style: one line per event, prefixed `E:`, `W:`, `I:`, `D:`.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Verbosity flags shared by every tool.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct Verbosity {
    /// Verbose mode: print processing details.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Debug mode: print debug information (PDUs, state machine).
    #[arg(short, long, global = true)]
    pub debug: bool,
    /// Quiet mode: print only errors.
    #[arg(short, long, global = true, conflicts_with_all = ["verbose", "debug"])]
    pub quiet: bool,
}

impl Verbosity {
    fn level(&self) -> Level {
        if self.debug {
            Level::DEBUG
        } else if self.verbose {
            Level::INFO
        } else if self.quiet {
            Level::ERROR
        } else {
            Level::WARN
        }
    }
}

/// Installs the stderr logger for `verbosity` (RUST_LOG, if set, overrides it).
pub fn init(verbosity: Verbosity) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(verbosity.level().to_string()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(DcmtkStyle)
        .init();
}

struct DcmtkStyle;

impl<S, N> FormatEvent<S, N> for DcmtkStyle
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let prefix = match *event.metadata().level() {
            Level::ERROR => "E",
            Level::WARN => "W",
            Level::INFO => "I",
            Level::DEBUG => "D",
            Level::TRACE => "T",
        };
        write!(writer, "{prefix}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        if *event.metadata().level() >= Level::DEBUG
            && let Some(scope) = ctx.event_scope()
        {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, " [{}: {}]", span.name(), fields)?;
                }
            }
        }
        writeln!(writer)
    }
}
