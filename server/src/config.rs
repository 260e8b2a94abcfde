//! Command line and configuration: flags, `QUANTATOM_*` environment variables and an optional
//! TOML file, in that order of precedence, over documented defaults.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5433";
/// The default data folder.
pub const DEFAULT_DATA_DIR: &str = "./quantatom-data";
/// The default size of the demo model loaded into an empty data folder.
pub const DEFAULT_DEMO_CELLS: usize = 1_000_000;

/// The `quantatom` command line.
#[derive(Debug, Parser)]
#[command(
    name = "quantatom",
    version,
    about = "Quantatom: a SQL engine for planning cubes, reached over the PostgreSQL wire protocol.",
    after_help = "Logging: set QUANTATOM_LOG to a tracing filter (default: info), e.g. QUANTATOM_LOG=debug."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the Postgres-wire server (loads the demo model into an empty data folder).
    Serve(ServeArgs),
    /// Write the demo planning model into an empty data folder, then exit.
    Demo(DemoArgs),
}

/// Flags of `quantatom serve`; each also reads a `QUANTATOM_*` variable and a config-file key.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys: listen, data_dir, demo_cells).
    #[arg(long, env = "QUANTATOM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on, HOST:PORT [default: 127.0.0.1:5433].
    #[arg(long, env = "QUANTATOM_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Folder for cubes and metadata, created if missing [default: ./quantatom-data].
    #[arg(long, env = "QUANTATOM_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Cells in the demo model loaded when the data folder is empty; 0 loads none
    /// [default: 1000000].
    #[arg(long, env = "QUANTATOM_DEMO_CELLS", value_name = "N")]
    pub demo_cells: Option<usize>,
}

/// Flags of `quantatom demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder to write the model into; must be empty or missing [default: ./quantatom-data].
    #[arg(long, env = "QUANTATOM_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// About how many cells the `finance` cube gets [default: 1000000].
    #[arg(long, value_name = "N")]
    pub cells: Option<usize>,
}

/// The settings a config file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    demo_cells: Option<usize>,
}

/// Everything `serve` needs, resolved and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The data folder.
    pub data_dir: PathBuf,
    /// Demo size for an empty data folder; `None` loads no demo.
    pub demo_cells: Option<usize>,
}

/// A setting that cannot be used; the message names it and how it was given.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {message}")]
pub struct ConfigError {
    /// The setting, with its flag, variable and file key.
    pub setting: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(setting: &str, flag: &str, message: impl Into<String>) -> Self {
        let variable = format!("QUANTATOM_{}", setting.to_uppercase());
        Self {
            setting: format!(
                "`{setting}` (--{flag}, {variable}, or `{setting}` in the config file)"
            ),
            message: message.into(),
        }
    }
}

impl ServeArgs {
    /// Merges flags and environment over the config file over the defaults, and checks them.
    pub fn resolve(self) -> Result<ServeConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => read_config_file(path)?,
            None => FileSettings::default(),
        };
        let listen_text = self
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = parse_listen(&listen_text)?;
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if data_dir.as_os_str().is_empty() {
            return Err(ConfigError::new(
                "data_dir",
                "data-dir",
                "the data folder must not be empty",
            ));
        }
        let demo_cells = match self
            .demo_cells
            .or(file.demo_cells)
            .unwrap_or(DEFAULT_DEMO_CELLS)
        {
            0 => None,
            cells => Some(cells),
        };
        Ok(ServeConfig {
            listen,
            data_dir,
            demo_cells,
        })
    }
}

fn read_config_file(path: &std::path::Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "config",
            "config",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    toml::from_str(&text).map_err(|e| {
        ConfigError::new(
            "config",
            "config",
            format!("{} is not valid: {e}", path.display()),
        )
    })
}

fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    let invalid = |why: String| ConfigError::new("listen", "listen", format!("{text:?} {why}"));
    text.to_socket_addrs()
        .map_err(|e| invalid(format!("is not a usable HOST:PORT ({e})")))?
        .next()
        .ok_or_else(|| invalid("resolves to no address".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: Option<&str>, config: Option<PathBuf>) -> ServeArgs {
        ServeArgs {
            config,
            listen: listen.map(Into::into),
            data_dir: None,
            demo_cells: None,
        }
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = args(None, None).resolve().unwrap();
        assert_eq!(config.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(config.demo_cells, Some(DEFAULT_DEMO_CELLS));
    }

    #[test]
    fn bad_listen_names_the_setting() {
        let error = args(Some("nowhere"), None)
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(error.contains("--listen"), "{error}");
        assert!(error.contains("QUANTATOM_LISTEN"), "{error}");
        assert!(error.contains("\"nowhere\""), "{error}");
    }

    #[test]
    fn file_settings_sit_under_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quantatom.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\ndemo_cells = 0\ndata_dir = \"/tmp/q\"\n",
        )
        .unwrap();
        let from_file = args(None, Some(path.clone())).resolve().unwrap();
        assert_eq!(from_file.listen.port(), 7000);
        assert_eq!(from_file.demo_cells, None);
        assert_eq!(from_file.data_dir, PathBuf::from("/tmp/q"));
        let flag_wins = args(Some("127.0.0.1:7001"), Some(path)).resolve().unwrap();
        assert_eq!(flag_wins.listen.port(), 7001);
    }

    #[test]
    fn unknown_file_keys_are_rejected_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quantatom.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:7000\"\n").unwrap();
        let error = args(None, Some(path)).resolve().unwrap_err().to_string();
        assert!(error.contains("lisen"), "{error}");
    }
}
