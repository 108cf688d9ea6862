//! `netd network …`: docker's network verbs, output and errors.

use std::{collections::BTreeMap, io::BufRead as _, process::ExitCode};

use hyper::Method;

use crate::{
    api::types::{IpamConfig, NetworkCreateResponse, NetworkResource, NetworksPruneResponse},
    client::Client,
};

use super::{fail, table};

#[derive(clap::Subcommand)]
pub enum NetworkCommand {
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// Filter: name=, id=, driver=, type=custom|builtin, label=, scope=.
        #[arg(short, long = "filter")]
        filter: Vec<String>,
        /// Full ids.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Create a network; prints its id.
    Create(CreateArgs),
    /// Show networks as JSON.
    Inspect { names: Vec<String> },
    /// Remove networks.
    #[command(alias = "remove")]
    Rm { names: Vec<String> },
    /// Connect a sandbox to a network.
    Connect {
        #[arg(long)]
        ip: Option<String>,
        /// Another name for the sandbox on the network's DNS (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        network: String,
        sandbox: String,
    },
    /// Disconnect a sandbox from a network.
    Disconnect {
        #[arg(short, long)]
        force: bool,
        network: String,
        sandbox: String,
    },
    /// Remove all unused user-defined networks.
    Prune {
        /// Do not prompt.
        #[arg(short, long)]
        force: bool,
        #[arg(long = "filter")]
        filter: Vec<String>,
    },
}

#[derive(clap::Args)]
pub struct CreateArgs {
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    #[arg(long)]
    subnet: Vec<String>,
    #[arg(long)]
    gateway: Vec<String>,
    #[arg(long = "ip-range")]
    ip_range: Vec<String>,
    /// name=IP, reserved in the subnet.
    #[arg(long = "aux-address")]
    aux_address: Vec<String>,
    #[arg(long)]
    internal: bool,
    #[arg(long)]
    attachable: bool,
    #[arg(long)]
    ipv6: bool,
    #[arg(long = "label")]
    label: Vec<String>,
    /// Driver option key=value.
    #[arg(short = 'o', long = "opt")]
    opt: Vec<String>,
    name: String,
}

fn key_values(items: &[String], what: &str) -> Result<BTreeMap<String, String>, String> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ if what == "label" => Ok((kv.clone(), String::new())),
            _ => Err(format!("invalid {what} {kv:?}: expected key=value")),
        })
        .collect()
}

/// A filters JSON object from `key=value` flags.
pub fn filters_json(filters: &[String]) -> Result<String, String> {
    let mut map: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for f in filters {
        let (k, v) = f.split_once('=').ok_or_else(|| format!("bad format of filter (expected name=value): {f}"))?;
        map.entry(k.to_owned()).or_default().insert(v.to_owned(), true);
    }
    Ok(serde_json::to_string(&map).expect("serialisable"))
}

/// `?filters=…` for `key=value` flags, or nothing without any.
pub fn filters_query(filters: &[String]) -> Result<String, String> {
    if filters.is_empty() {
        return Ok(String::new());
    }
    Ok(format!("?filters={}", urlencoding::encode(&filters_json(filters)?)))
}

/// Pretty JSON with docker's 4-space indentation.
pub fn pretty<T: serde::Serialize>(v: &T) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    v.serialize(&mut ser).expect("serialisable");
    String::from_utf8(out).expect("JSON is UTF-8")
}

pub async fn exec(client: &Client, cmd: NetworkCommand) -> ExitCode {
    match cmd {
        NetworkCommand::Ls { quiet, filter, no_trunc } => ls(client, quiet, &filter, no_trunc).await,
        NetworkCommand::Create(args) => create(client, args).await,
        NetworkCommand::Inspect { names } => inspect(client, &names).await,
        NetworkCommand::Rm { names } => {
            let mut code = ExitCode::SUCCESS;
            for name in names {
                let path = format!("/networks/{}", urlencoding::encode(&name));
                match client.call::<serde_json::Value>(Method::DELETE, &path, None::<&()>).await {
                    Ok(_) => println!("{name}"),
                    Err(e) => code = fail(&e),
                }
            }
            code
        }
        NetworkCommand::Connect { ip, aliases, network, sandbox } => {
            let body = serde_json::json!({
                "Container": sandbox,
                "EndpointConfig": { "IPAMConfig": { "IPv4Address": ip.unwrap_or_default() }, "Aliases": aliases },
            });
            let path = format!("/networks/{}/connect", urlencoding::encode(&network));
            match client.call::<serde_json::Value>(Method::POST, &path, Some(&body)).await {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        NetworkCommand::Disconnect { force, network, sandbox } => {
            let body = serde_json::json!({ "Container": sandbox, "Force": force });
            let path = format!("/networks/{}/disconnect", urlencoding::encode(&network));
            match client.call::<serde_json::Value>(Method::POST, &path, Some(&body)).await {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        NetworkCommand::Prune { force, filter } => prune(client, force, &filter).await,
    }
}

async fn ls(client: &Client, quiet: bool, filter: &[String], no_trunc: bool) -> ExitCode {
    let q = match filters_query(filter) {
        Ok(q) => q,
        Err(e) => return fail(&e),
    };
    let mut nets: Vec<NetworkResource> = match client.call(Method::GET, &format!("/networks{q}"), None::<&()>).await {
        Ok(n) => n,
        Err(e) => return fail(&e),
    };
    nets.sort_by(|a, b| table::natural_cmp(&a.name, &b.name));
    let id = |n: &NetworkResource| {
        if no_trunc {
            n.id.clone()
        } else {
            n.id[..12.min(n.id.len())].to_owned()
        }
    };
    if quiet {
        for n in &nets {
            println!("{}", id(n));
        }
        return ExitCode::SUCCESS;
    }
    let rows: Vec<Vec<String>> =
        nets.iter().map(|n| vec![id(n), n.name.clone(), n.driver.clone(), n.scope.clone()]).collect();
    print!("{}", table::render(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows));
    ExitCode::SUCCESS
}

async fn create(client: &Client, a: CreateArgs) -> ExitCode {
    match create_body(&a) {
        Ok(body) => match client.call::<NetworkCreateResponse>(Method::POST, "/networks/create", Some(&body)).await {
            Ok(r) => {
                println!("{}", r.id);
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Err(e) => fail(&e),
    }
}

fn create_body(a: &CreateArgs) -> Result<serde_json::Value, String> {
    if a.subnet.len() > 1 || a.gateway.len() > 1 || a.ip_range.len() > 1 {
        return Err("netd supports one IPv4 subnet per network".into());
    }
    let aux = key_values(&a.aux_address, "aux-address")?;
    let config: Vec<IpamConfig> =
        if a.subnet.is_empty() && a.gateway.is_empty() && a.ip_range.is_empty() && aux.is_empty() {
            Vec::new()
        } else {
            vec![IpamConfig {
                subnet: a.subnet.first().cloned(),
                ip_range: a.ip_range.first().cloned(),
                gateway: a.gateway.first().cloned(),
                aux: (!aux.is_empty()).then_some(aux),
            }]
        };
    Ok(serde_json::json!({
        "Name": a.name,
        "CheckDuplicate": true,
        "Driver": a.driver,
        "Internal": a.internal,
        "Attachable": a.attachable,
        "EnableIPv6": a.ipv6,
        "IPAM": { "Driver": "default", "Config": config, "Options": {} },
        "Options": key_values(&a.opt, "option")?,
        "Labels": key_values(&a.label, "label")?,
    }))
}

async fn inspect(client: &Client, names: &[String]) -> ExitCode {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        let path = format!("/networks/{}", urlencoding::encode(name));
        match client.call::<NetworkResource>(Method::GET, &path, None::<&()>).await {
            Ok(v) => found.push(v),
            Err(e) => errors.push(e.to_string()),
        }
    }
    println!("{}", pretty(&found));
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        for e in errors {
            eprintln!("{e}");
        }
        ExitCode::from(1)
    }
}

async fn prune(client: &Client, force: bool, filter: &[String]) -> ExitCode {
    if !force {
        eprint!("WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!();
            return ExitCode::SUCCESS;
        }
    }
    let q = match filters_query(filter) {
        Ok(q) => q,
        Err(e) => return fail(&e),
    };
    match client.call::<NetworksPruneResponse>(Method::POST, &format!("/networks/prune{q}"), None::<&()>).await {
        Ok(r) => {
            if !r.networks_deleted.is_empty() {
                println!("Deleted Networks:");
                for n in r.networks_deleted {
                    println!("{n}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}
