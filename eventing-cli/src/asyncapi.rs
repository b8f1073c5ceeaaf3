//! `eventing asyncapi`: the AsyncAPI document of the registry linked into this binary.

use std::io::Write;

use eventing::asyncapi::Info;

use crate::CliError;

/// How `eventing asyncapi` prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// YAML, as AsyncAPI documents are usually kept.
    #[default]
    Yaml,
    /// JSON.
    Json,
}

/// The arguments of `eventing asyncapi`.
#[derive(Debug, clap::Args)]
pub(crate) struct AsyncapiArgs {
    /// How to print it.
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    format: Format,
    /// The service (default: EVENTING_SERVICE, else the listeners' crate).
    #[arg(long)]
    service: Option<String>,
    /// The exchange (default: EVENTING_EXCHANGE, else `eventing`).
    #[arg(long)]
    exchange: Option<String>,
    /// The configuration file (default: EVENTING_CONFIG, else ./eventing.toml when present).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// The document's title (default: the service).
    #[arg(long)]
    title: Option<String>,
    /// The application's version in the document's `info`.
    #[arg(long, default_value = "0.0.0")]
    app_version: String,
}

/// Prints the document of the registry with the names the builder resolves; the URL (from
/// `--url` or `EVENTING_URL`) gives the servers, without its password.
pub(crate) fn print(args: AsyncapiArgs, url: Option<String>, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let mut builder = eventing::builder();
    if let Some(service) = args.service {
        builder = builder.service(service);
    }
    if let Some(exchange) = args.exchange {
        builder = builder.exchange(exchange);
    }
    if let Some(url) = url {
        builder = builder.url(url);
    }
    if let Some(config) = args.config {
        builder = builder.config_file(config);
    }
    let mut info = Info::new(args.app_version);
    if let Some(title) = args.title {
        info = info.title(title);
    }
    let document = builder.asyncapi(&info)?;
    if document.is_empty() {
        return Err(CliError::NothingToDescribe);
    }
    match args.format {
        Format::Json => writeln!(out, "{}", document.to_json_pretty())?,
        Format::Yaml => {
            let yaml =
                serde_norway::to_string(&document).map_err(|source| CliError::Render { format: "YAML", source })?;
            write!(out, "{yaml}")?;
        }
    }
    Ok(())
}
