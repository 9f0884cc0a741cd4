//! `<home>/config`: the CLI's defaults, in the INI shape of `~/.azure/config` (`[defaults] group = rg`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{CliError, CliResult};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Config {
    /// section -> key -> value, in file order within BTreeMaps (small, sorted is fine).
    pub sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl Config {
    pub fn path(home: &Path) -> PathBuf {
        home.join("config")
    }

    pub fn load(home: &Path) -> CliResult<Config> {
        match std::fs::read_to_string(Config::path(home)) {
            Ok(text) => Ok(Config::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(CliError::new(format!("cannot read {}: {e}", Config::path(home).display()))),
        }
    }

    pub fn parse(text: &str) -> Config {
        let mut cfg = Config::default();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_string();
            } else if let Some((k, v)) = line.split_once('=') {
                cfg.sections.entry(section.clone()).or_default().insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        cfg
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (section, keys) in &self.sections {
            if keys.is_empty() {
                continue;
            }
            out.push_str(&format!("[{section}]\n"));
            for (k, v) in keys {
                out.push_str(&format!("{k} = {v}\n"));
            }
            out.push('\n');
        }
        out
    }

    pub fn save(&self, home: &Path) -> CliResult<()> {
        std::fs::create_dir_all(home)?;
        let path = Config::path(home);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.render())?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    pub fn default_value(&self, key: &str) -> Option<&str> {
        self.sections.get("defaults").and_then(|d| d.get(key)).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn set_default(&mut self, key: &str, value: &str) {
        let defaults = self.sections.entry("defaults".into()).or_default();
        if value.is_empty() {
            defaults.remove(key);
        } else {
            defaults.insert(key.to_string(), value.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_clears() {
        let mut cfg = Config::parse("# comment\n[defaults]\ngroup = rg\n\n[core]\noutput=table\n");
        assert_eq!(cfg.default_value("group"), Some("rg"));
        cfg.set_default("location", "local");
        cfg.set_default("group", "");
        let again = Config::parse(&cfg.render());
        assert_eq!(again.default_value("group"), None);
        assert_eq!(again.default_value("location"), Some("local"));
        assert_eq!(again.sections["core"]["output"], "table");
    }
}
