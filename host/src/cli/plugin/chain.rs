//! A chain as the command line spells it — `--chain MODULE[:NAME]…` with `--config
//! NAME=JSON`, or `--chain-file` holding the API's `{chain, failure?}` body — turned into
//! the links the admin API takes. Modules may be named by a prefix of their SHA-256, as
//! `lyceum plugin list` shows them; prefixes are resolved against the server's modules.

use std::path::Path;

use serde_json::{Map, Value};

use super::{
    api::Api,
    error::CliError,
    render::{Page, page_of},
};
use crate::service::plugins::links::{ChainBody, Link};

/// Fewest hex digits accepted as a SHA-256 prefix: fewer would often be ambiguous.
const MIN_PREFIX: usize = 8;
const BUILTIN: &str = "builtin:";

/// One `--chain` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkArg {
    /// `builtin:…`, a SHA-256 or a prefix of one (lowercase).
    pub module: String,
    pub name: Option<String>,
}

/// `MODULE[:NAME]`, where MODULE is `builtin:<name>`, a SHA-256 or a prefix of one.
pub fn parse_link(text: &str) -> Result<LinkArg, String> {
    let (module, name) = match text.strip_prefix(BUILTIN) {
        Some(rest) => match rest.split_once(':') {
            Some((builtin, name)) => (format!("{BUILTIN}{builtin}"), Some(name)),
            None => (text.to_owned(), None),
        },
        None => match text.split_once(':') {
            Some((module, name)) => (module.to_ascii_lowercase(), Some(name)),
            None => (text.to_ascii_lowercase(), None),
        },
    };
    let builtin = module.strip_prefix(BUILTIN).is_some_and(|b| !b.is_empty());
    let hex = module.len() >= MIN_PREFIX
        && module.len() <= 64
        && module.bytes().all(|b| b.is_ascii_hexdigit());
    if !builtin && !hex {
        return Err(format!(
            "`{module}` is not a module: give its SHA-256 (or its first {MIN_PREFIX}+ hex \
             digits), or builtin:chat-moderation, builtin:file-validation, \
             builtin:signaling-policy"
        ));
    }
    if name.is_some_and(|n| n.trim().is_empty()) {
        return Err(format!("`{text}` has an empty NAME after `:`"));
    }
    Ok(LinkArg {
        module,
        name: name.map(str::to_owned),
    })
}

/// `NAME=JSON`, JSON being an object.
pub fn parse_config(text: &str) -> Result<(String, Map<String, Value>), String> {
    let (name, json) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=JSON"))?;
    Ok((name.trim().to_owned(), json_object(json)?))
}

/// A plugin's configuration: a JSON object.
pub fn json_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!("`{text}` is JSON but not an object ({{…}})")),
        Err(e) => Err(format!("`{text}` is not JSON: {e}")),
    }
}

/// The links of `--chain`, each `--config` attached to the one plugin it names: a link's
/// NAME, else its MODULE as written (or a builtin's own name, its default plugin name).
pub fn links(
    args: &[LinkArg],
    configs: Vec<(String, Map<String, Value>)>,
) -> Result<Vec<Link>, CliError> {
    let mut links: Vec<Link> = args
        .iter()
        .map(|arg| Link {
            module: arg.module.clone(),
            name: arg.name.clone(),
            config: None,
            failure: None,
            limits: None,
        })
        .collect();
    for (key, config) in configs {
        let named: Vec<usize> = args
            .iter()
            .enumerate()
            .filter(|(_, arg)| answers_to(arg, &key))
            .map(|(i, _)| i)
            .collect();
        let index = match named[..] {
            [index] => index,
            [] => {
                let names: Vec<String> = args.iter().map(|a| format!("`{}`", label(a))).collect();
                return Err(CliError::usage(format!(
                    "--config {key}=…: no plugin of the chain is called `{key}` (they are {})",
                    names.join(", ")
                )));
            }
            _ => {
                return Err(CliError::usage(format!(
                    "--config {key}=…: several plugins answer to `{key}`; give them distinct \
                     names with MODULE:NAME"
                )));
            }
        };
        if links[index].config.replace(config).is_some() {
            return Err(CliError::usage(format!("--config {key}=… is given twice")));
        }
    }
    Ok(links)
}

fn answers_to(arg: &LinkArg, key: &str) -> bool {
    match &arg.name {
        Some(name) => name == key,
        None => arg.module == key || arg.module.strip_prefix(BUILTIN) == Some(key),
    }
}

fn label(arg: &LinkArg) -> &str {
    arg.name.as_deref().unwrap_or(&arg.module)
}

/// The `{chain, failure?}` body in a JSON file, checked as strictly as the server checks it.
pub fn read_file(path: &Path) -> Result<ChainBody, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." {
            String::new()
        } else {
            format!(" at {at}")
        };
        CliError::usage(format!(
            "{}{at}: {} (expected {{\"chain\": [{{\"module\": …}}], \"failure\"?: …}})",
            path.display(),
            e.inner()
        ))
    })
}

/// What prefix resolution reads of a module.
#[derive(serde::Deserialize)]
struct ModuleName {
    sha256: String,
}

/// Replaces SHA-256 prefixes by the one module each names, among the uploaded modules and
/// the plugins the slots run (the builtins among them).
pub async fn resolve_prefixes(api: &Api, links: &mut [Link]) -> Result<(), CliError> {
    let is_prefix = |link: &Link| !link.module.starts_with(BUILTIN) && link.module.len() < 64;
    if !links.iter().any(is_prefix) {
        return Ok(());
    }
    let known = known_modules(api).await?;
    for link in links.iter_mut().filter(|l| is_prefix(l)) {
        let prefix = link.module.to_ascii_lowercase();
        let mut matches: Vec<&String> = known.iter().filter(|s| s.starts_with(&prefix)).collect();
        matches.dedup();
        link.module = match matches[..] {
            [one] => one.clone(),
            [] => {
                return Err(CliError::Refused {
                    reason: "unknown_module".into(),
                    message: format!(
                        "no module's SHA-256 starts with `{prefix}`: upload it with `lyceum \
                         plugin install`, or see `lyceum plugin modules`"
                    ),
                    imports: Vec::new(),
                });
            }
            _ => {
                return Err(CliError::usage(format!(
                    "`{prefix}` starts the SHA-256 of {} modules; give more digits",
                    matches.len()
                )));
            }
        };
    }
    Ok(())
}

async fn known_modules(api: &Api) -> Result<Vec<String>, CliError> {
    let mut known = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "100".to_owned())];
        query.extend(cursor.map(|c| ("cursor", c)));
        let page: Page<ModuleName> = page_of(&api.get("/plugins/modules", &query).await?)?;
        known.extend(page.items.into_iter().map(|m| m.sha256));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let overview = api.get("/plugins", &[]).await?;
    for slot in overview["slots"].as_array().into_iter().flatten() {
        let shadow = slot["shadow"]["chain"].as_array().into_iter().flatten();
        for plugin in slot["chain"].as_array().into_iter().flatten().chain(shadow) {
            if let Some(sha) = plugin["sha256"].as_str() {
                known.push(sha.to_owned());
            }
        }
    }
    known.sort();
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA: &str = "3f1c2a9b7e0d44aa3f1c2a9b7e0d44aa3f1c2a9b7e0d44aa3f1c2a9b7e0d44aa";

    fn arg(module: &str, name: Option<&str>) -> LinkArg {
        LinkArg {
            module: module.into(),
            name: name.map(Into::into),
        }
    }

    #[test]
    fn a_link_is_a_module_and_an_optional_name() {
        assert_eq!(parse_link(SHA), Ok(arg(SHA, None)));
        assert_eq!(
            parse_link(&format!("{}:strict", SHA.to_uppercase())),
            Ok(arg(SHA, Some("strict")))
        );
        assert_eq!(
            parse_link("builtin:chat-moderation"),
            Ok(arg("builtin:chat-moderation", None))
        );
        assert_eq!(
            parse_link("builtin:chat-moderation:strict"),
            Ok(arg("builtin:chat-moderation", Some("strict")))
        );
        assert_eq!(parse_link("3f1c2a9b"), Ok(arg("3f1c2a9b", None)));
    }

    #[test]
    fn short_prefixes_paths_and_empty_names_are_refused() {
        for bad in [
            "3f1c",
            "plugins/x.wasm",
            "builtin:",
            "g000000000",
            "3f1c2a9b:",
        ] {
            assert!(parse_link(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_config_is_a_name_and_a_json_object() {
        let (name, config) = parse_config(r#"filter={"blocked": ["spam"]}"#).unwrap();
        assert_eq!(name, "filter");
        assert_eq!(Value::Object(config), json!({"blocked": ["spam"]}));
        assert!(parse_config("filter").is_err());
        assert!(parse_config("filter=[1]").is_err());
        assert!(parse_config("filter={").is_err());
    }

    #[test]
    fn each_config_goes_to_the_plugin_it_names() {
        let args = [
            arg("builtin:chat-moderation", None),
            arg(SHA, Some("filter")),
        ];
        let configs = vec![
            (
                "filter".into(),
                json_object(r#"{"blocked": ["spam"]}"#).unwrap(),
            ),
            (
                "chat-moderation".into(),
                json_object(r#"{"x": 1}"#).unwrap(),
            ),
        ];
        let links = links(&args, configs).unwrap();
        assert_eq!(links[0].config, Some(json_object(r#"{"x": 1}"#).unwrap()));
        assert_eq!(links[1].module, SHA);
        assert_eq!(links[1].name.as_deref(), Some("filter"));
        assert_eq!(
            links[1].config,
            Some(json_object(r#"{"blocked": ["spam"]}"#).unwrap())
        );
    }

    #[test]
    fn a_config_for_no_plugin_twice_or_for_two_is_a_usage_error() {
        let one = [arg(SHA, Some("filter"))];
        let error = links(&one, vec![("other".into(), Map::new())]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("`filter`"), "{error}");
        let twice = vec![("filter".into(), Map::new()), ("filter".into(), Map::new())];
        assert!(links(&one, twice).is_err());
        let same = [arg(SHA, None), arg(SHA, None)];
        assert!(links(&same, vec![(SHA.into(), Map::new())]).is_err());
    }

    #[test]
    fn a_chain_file_is_the_api_body_and_its_mistakes_are_located() {
        let dir = std::env::temp_dir().join(format!("lyceum-chain-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(
            &good,
            json!({"chain": [{"module": "builtin:chat-moderation", "config": {"x": 1}}], "failure": "fail-open"})
                .to_string(),
        )
        .unwrap();
        let body = read_file(&good).unwrap();
        assert_eq!(body.chain[0].module, "builtin:chat-moderation");
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"chain": [{"modul": "builtin:chat-moderation"}]}"#).unwrap();
        let error = read_file(&bad).unwrap_err().to_string();
        assert!(error.contains("chain[0]"), "{error}");
        assert!(error.contains("modul"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
