//! What every command needs: the daemon's client, the home's subscription, defaults, and printing.

use std::collections::BTreeMap;

use galleon_client::Client;
use serde_json::Value;

use crate::args::{CreateCommon, Global, GroupArg};
use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::output::{self, Shaped};

/// What a command gives back to print.
pub enum Out {
    /// An ARM resource or list of them: flattened as `az` prints them.
    Resource(Value),
    /// Printed as it is.
    Raw(Value),
    Nothing,
}

pub struct Ctx {
    pub global: Global,
    pub client: Client,
    pub config: Config,
    subscription: tokio::sync::OnceCell<String>,
}

impl Ctx {
    pub fn new(global: Global) -> CliResult<Ctx> {
        let socket = global.home.join("galleon.sock");
        if socket.as_os_str().len() > 107 {
            return Err(CliError::new(format!(
                "the socket path {} is longer than a Unix socket allows (107 bytes); use a shorter --home",
                socket.display()
            )));
        }
        let config = Config::load(&global.home)?;
        let client = Client::for_home(&global.home);
        Ok(Ctx { global, client, config, subscription: tokio::sync::OnceCell::new() })
    }

    /// The home's subscription id (asked of the daemon once per command).
    pub async fn sub(&self) -> CliResult<&str> {
        let sub = self
            .subscription
            .get_or_try_init(|| async {
                let list: galleon_api::List<galleon_api::Subscription> = self.client.get("/subscriptions").await?;
                list.value
                    .into_iter()
                    .next()
                    .map(|s| s.subscription_id)
                    .ok_or_else(|| CliError::new("the daemon reports no subscription"))
            })
            .await?;
        Ok(sub.as_str())
    }

    /// The resource group: `-g`, else the configured default.
    pub fn group(&self, arg: &GroupArg) -> CliResult<String> {
        arg.resource_group
            .clone()
            .or_else(|| std::env::var("GALLEON_DEFAULTS_GROUP").ok().filter(|g| !g.is_empty()))
            .or_else(|| self.config.default_value("group").map(String::from))
            .ok_or_else(|| {
                CliError::usage(
                    "the following arguments are required: --resource-group/-g (or set a default with \
                     `galleon configure --defaults group=NAME`)",
                )
            })
    }

    /// `/subscriptions/{sub}/resourceGroups/{rg}`.
    pub async fn group_path(&self, rg: &str) -> CliResult<String> {
        Ok(format!("/subscriptions/{}/resourceGroups/{}", self.sub().await?, enc(rg)))
    }

    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{rest}`.
    pub async fn provider_path(&self, rg: &str, ns: &str, rest: &str) -> CliResult<String> {
        Ok(format!("{}/providers/{ns}/{rest}", self.group_path(rg).await?))
    }

    /// Prints a result with `--query` and `-o`.
    pub fn print(&self, out: Out) -> CliResult<()> {
        let value = match out {
            Out::Nothing => return Ok(()),
            Out::Resource(v) => output::flatten(v),
            Out::Raw(v) => v,
        };
        let shaped = match &self.global.query {
            Some(q) => output::query(&value, q)?,
            None => Shaped::plain(value),
        };
        let text = output::render(shaped, self.global.output);
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth a message.
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
        Ok(())
    }

    /// A warning on stderr, unless `--only-show-errors`.
    pub fn warn(&self, message: &str) {
        if !self.global.only_show_errors {
            eprintln!("WARNING: {message}");
        }
    }
}

/// Percent-encodes a name for a path segment.
pub fn enc(name: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'(')
        .remove(b')');
    percent_encoding::utf8_percent_encode(name, SET).to_string()
}

/// `--tags a=b c` as ARM's map (`c` gets an empty value, as az does).
pub fn tags(common: &CreateCommon) -> Option<BTreeMap<String, String>> {
    common.tags.as_ref().map(|t| {
        t.iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    })
}

/// A resource id given where a name was expected (`--ids`, or a name that is an id).
pub fn is_id(s: &str) -> bool {
    s.starts_with("/subscriptions/") || s.starts_with("/SUBSCRIPTIONS/")
}
