//! The `pgveil encrypt` command line (clap), kept next to the command so
//! `main.rs` only names it.

use std::path::PathBuf;
use std::process::ExitCode;

use super::plan::Request;
use super::{run, Options};

/// Bring existing plaintext under encryption, or re-encrypt, online and resumably.
///
/// Converts every column of --table whose rule says `encrypt` and whose stored values are
/// not yet ciphertext under the right name (and, with --rekey, the active key). Credentials
/// come from PGUSER, PGPASSWORD, PGDATABASE, as for `pgveil check`. Re-running the same
/// command after a crash, Ctrl-C or kill -9 continues where it stopped.
#[derive(clap::Args, Debug, Clone)]
pub struct EncryptArgs {
    /// The database (postgres://HOST:PORT), directly, not through pgveil.
    #[arg(long, value_name = "URL")]
    pub upstream: String,
    /// Directory of rule files (*.toml): the rules as they will be once converted.
    #[arg(long, value_name = "DIR")]
    pub rules: PathBuf,
    /// Keyring (or PGVEIL_KEYRING). Without one, nothing is changed.
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// The table, schema-qualified (public.customers).
    #[arg(long, value_name = "SCHEMA.TABLE")]
    pub table: String,
    /// Only these encrypted columns (comma-separated); default: all of the table's.
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Rows per batch (one transaction each).
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub batch_size: usize,
    /// Average rows per second at most (throttle for busy databases).
    #[arg(long, value_name = "ROWS_PER_S")]
    pub max_rate: Option<f64>,
    /// Report what would change and how many values; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Convert with ALTER TABLE … TYPE bytea (exclusive lock for the whole rewrite).
    #[arg(long)]
    pub offline: bool,
    /// Re-encrypt values under older key versions with the active key.
    #[arg(long)]
    pub rekey: bool,
    /// The name the values were encrypted under before a rename: OLD_COLUMN,
    /// SCHEMA.TABLE.OLD_COLUMN (with one --columns), or SCHEMA.OLD_TABLE.
    #[arg(long, value_name = "OLD")]
    pub renamed_from: Option<String>,
    /// Fill the shadow columns and keep them in sync, but do not swap them in yet.
    #[arg(long)]
    pub no_swap: bool,
    /// Only add the (empty) shadow columns and the sync trigger, then stop:
    /// deploy the final rules to pgveil next, then run again to fill them.
    #[arg(long, conflicts_with_all = ["offline", "rekey", "renamed_from"])]
    pub install_only: bool,
}

impl EncryptArgs {
    pub fn options(&self) -> Options {
        Options {
            upstream: self.upstream.clone(),
            rules_dir: self.rules.clone(),
            keyring: self.keyring.clone(),
            request: Request {
                table: self.table.clone(),
                columns: self.columns.clone(),
                offline: self.offline,
                rekey: self.rekey,
                renamed_from: self.renamed_from.clone(),
            },
            batch_size: self.batch_size,
            max_rate: self.max_rate,
            dry_run: self.dry_run,
            no_swap: self.no_swap,
            install_only: self.install_only,
        }
    }
}

/// Runs the command: summary on stdout, errors on stderr; exit 1 on error
/// or when some values could not be converted.
pub fn main(args: &EncryptArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgveil encrypt: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(&args.options())) {
        Ok(s) => {
            print!("{s}");
            if s.incomplete {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("pgveil encrypt: {e}");
            ExitCode::from(1)
        }
    }
}
