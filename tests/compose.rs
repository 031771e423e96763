//! Static checks of `docker-compose.yml`.
//!
//! Docker is not available where the tests run, so nothing here starts a
//! container. Instead the compose file is read and cross-checked against the
//! repository: every host path it builds from or mounts exists, the files the
//! services are told to use (config, scenarios, call list) exist at the path
//! the mounts make them appear under, and the addresses, ports, domain and
//! SIPp keys on the three sides agree with each other and with the gateway
//! config, which must itself load (with its inventory) through cidgate's own
//! loader. Each of these is a way the lab would fail only after a long image
//! build; catching them here is the point.
//!
//! The checks return a list of problems instead of panicking at the first,
//! so one run names everything, and the mutation tests at the bottom prove
//! that each kind of breakage is seen.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Component, Path, PathBuf};

use cidgate::callerid::policy::Resolver;
use cidgate::config::Config;
use cidgate::sip::Transport;
use ipnet::Ipv4Net;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compose_text() -> String {
    std::fs::read_to_string(root().join("docker-compose.yml")).expect("docker-compose.yml exists")
}

/// Lexically normalises `a/./b/../c` (no file system access: the path may
/// be a container path or a missing host path).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A service's bind mounts: container path -> host path.
#[derive(Default)]
struct Mounts(Vec<(PathBuf, PathBuf)>);

impl Mounts {
    /// The host path a container path shows, through the longest mount that
    /// contains it.
    fn host(&self, container: &Path) -> Option<PathBuf> {
        let container = normalize(container);
        self.0
            .iter()
            .filter(|(c, _)| container.starts_with(c))
            .max_by_key(|(c, _)| c.components().count())
            .map(|(c, h)| {
                // joining an empty rest would add a trailing slash to a file
                let rest = container.strip_prefix(c).unwrap();
                if rest.as_os_str().is_empty() {
                    h.clone()
                } else {
                    h.join(rest)
                }
            })
    }
}

/// One parsed SIPp command line.
struct Sipp {
    args: Vec<String>,
}

impl Sipp {
    fn opt(&self, name: &str) -> Option<&str> {
        let i = self.args.iter().position(|a| a == name)?;
        self.args.get(i + 1).map(String::as_str)
    }

    /// `-key NAME VALUE` pairs.
    fn keys(&self) -> HashMap<&str, &str> {
        self.args
            .windows(3)
            .filter(|w| w[0] == "-key")
            .map(|w| (w[1].as_str(), w[2].as_str()))
            .collect()
    }

    /// The remote host:port: the positional argument, found by skipping
    /// each option with its values (`-key` has two, flags none, others one).
    fn remote(&self) -> Option<&str> {
        let mut i = 0;
        let mut positional = None;
        while i < self.args.len() {
            let a = self.args[i].as_str();
            i += match a {
                "-key" => 3,
                _ if is_flag(a) => 1,
                _ if a.starts_with('-') => 2,
                _ => {
                    positional = Some(a);
                    1
                }
            };
        }
        positional
    }

    fn transport(&self) -> Option<Transport> {
        match self.opt("-t")? {
            "u1" | "un" | "ui" => Some(Transport::Udp),
            "t1" | "tn" => Some(Transport::Tcp),
            _ => None,
        }
    }
}

/// SIPp options used in the compose file that are flags (no value).
fn is_flag(opt: &str) -> bool {
    matches!(
        opt,
        "-nostdin" | "-trace_stat" | "-trace_logs" | "-trace_err" | "-trace_msg" | "-timeout_error"
    )
}

/// Everything checked, as human-readable problems.
struct Checker<'a> {
    root: &'a Path,
    doc: &'a Yaml,
    problems: Vec<String>,
}

impl Checker<'_> {
    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }

    fn service(&self, name: &str) -> &Yaml {
        &self.doc["services"][name]
    }

    fn strings(y: &Yaml) -> Vec<String> {
        match y {
            Yaml::Array(a) => a.iter().filter_map(scalar).collect(),
            Yaml::String(s) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        }
    }

    /// Host paths in compose are relative to the compose file's directory.
    fn host_path(&self, p: &str) -> PathBuf {
        normalize(&self.root.join(p))
    }

    fn check_build(&mut self, name: &str) {
        let build = &self.service(name)["build"];
        if build.is_badvalue() {
            return;
        }
        let (context, dockerfile) = match build {
            Yaml::String(ctx) => (ctx.clone(), "Dockerfile".to_string()),
            _ => (
                scalar(&build["context"]).unwrap_or_else(|| ".".into()),
                scalar(&build["dockerfile"]).unwrap_or_else(|| "Dockerfile".into()),
            ),
        };
        let ctx = self.host_path(&context);
        if !ctx.is_dir() {
            return self.problem(format!(
                "{name}: build context {context} is not a directory"
            ));
        }
        let df = ctx.join(&dockerfile);
        let Ok(text) = std::fs::read_to_string(&df) else {
            return self.problem(format!(
                "{name}: dockerfile {dockerfile} not found in {context}"
            ));
        };
        // A Dockerfile-specific ignore file that excludes everything must
        // re-include each COPY source, or the build fails on a missing file.
        let ignore = std::fs::read_to_string(df.with_file_name(format!(
            "{}.dockerignore",
            df.file_name().unwrap().to_string_lossy()
        )))
        .unwrap_or_default();
        let excludes_all = ignore.lines().any(|l| l.trim() == "*");
        let included: Vec<&str> = ignore
            .lines()
            .filter_map(|l| l.trim().strip_prefix('!'))
            .map(|l| l.trim_end_matches('/'))
            .collect();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let Some(instr) = words.next() else { continue };
            if !(instr.eq_ignore_ascii_case("COPY") || instr.eq_ignore_ascii_case("ADD")) {
                continue;
            }
            let args: Vec<&str> = words.collect();
            if args.iter().any(|a| a.starts_with("--from")) {
                continue;
            }
            let sources = &args[..args.len().saturating_sub(1)];
            for src in sources.iter().filter(|s| !s.starts_with("--")) {
                if !ctx.join(src).exists() {
                    self.problem(format!(
                        "{name}: {dockerfile}: COPY source {src} does not exist"
                    ));
                } else if excludes_all && !included.contains(&src.trim_end_matches('/')) {
                    self.problem(format!(
                        "{name}: {dockerfile}: COPY source {src} is excluded by its .dockerignore"
                    ));
                }
            }
        }
    }

    /// Bind mounts of a service; named volumes must be declared.
    fn mounts(&mut self, name: &str) -> Mounts {
        let mut m = Mounts::default();
        for v in Self::strings(&self.service(name)["volumes"]) {
            let parts: Vec<&str> = v.split(':').collect();
            let (src, dst) = match parts.as_slice() {
                [s, d] | [s, d, _] => (*s, *d),
                _ => {
                    self.problem(format!("{name}: volume `{v}` is not SRC:DST[:MODE]"));
                    continue;
                }
            };
            if src.starts_with('.') || src.starts_with('/') {
                let host = self.host_path(src);
                if !host.exists() {
                    self.problem(format!("{name}: mounted host path {src} does not exist"));
                }
                m.0.push((normalize(Path::new(dst)), host));
            } else if self.doc["volumes"][src].is_badvalue() {
                self.problem(format!(
                    "{name}: named volume {src} is not declared under volumes"
                ));
            }
        }
        m
    }

    /// A file a service is told to use: mounted, and present on the host.
    fn mounted_file(&mut self, service: &str, mounts: &Mounts, container: &str) -> Option<PathBuf> {
        match mounts.host(Path::new(container)) {
            Some(h) if h.is_file() => Some(h),
            Some(h) => {
                self.problem(format!(
                    "{service}: {container} is mounted from {} which does not exist",
                    h.strip_prefix(self.root).unwrap_or(&h).display()
                ));
                None
            }
            None => {
                self.problem(format!("{service}: {container} is not inside any mount"));
                None
            }
        }
    }

    /// The fixed address of a service and the subnet it must sit in.
    fn address(&mut self, name: &str) -> Option<Ipv4Addr> {
        let nets = self.service(name)["networks"].as_hash()?.clone();
        let mut found = None;
        for (net, v) in nets {
            let net = scalar(&net)?;
            let decl = &self.doc["networks"][net.as_str()];
            if decl.is_badvalue() {
                self.problem(format!(
                    "{name}: network {net} is not declared under networks"
                ));
                continue;
            }
            let Some(ip) = scalar(&v["ipv4_address"]) else {
                continue;
            };
            let Ok(ip) = ip.parse::<Ipv4Addr>() else {
                self.problem(format!("{name}: ipv4_address {ip} is not an IPv4 address"));
                continue;
            };
            let subnets: Vec<Ipv4Net> = decl["ipam"]["config"]
                .as_vec()
                .into_iter()
                .flatten()
                .filter_map(|c| scalar(&c["subnet"])?.parse().ok())
                .collect();
            if !subnets.iter().any(|s| s.contains(&ip)) {
                self.problem(format!("{name}: {ip} is outside network {net}'s subnet"));
            }
            found = Some(ip);
        }
        found
    }

    fn depends_on(&mut self, name: &str, on: &str, why: &str) {
        let d = &self.service(name)["depends_on"];
        let listed = match d {
            Yaml::Array(a) => a.iter().any(|x| scalar(x).as_deref() == Some(on)),
            Yaml::Hash(_) => !d[on].is_badvalue(),
            _ => false,
        };
        if !listed {
            self.problem(format!("{name} must depend on {on}: {why}"));
        }
    }

    /// Every port a service publishes must be bound to a loopback address on
    /// the host: the PBX and the carrier are inside the compose network, and a
    /// bare `5060:5060` would open the gateway to every network the host is on.
    fn published_on_loopback_only(&mut self, name: &str) {
        let entries = match &self.service(name)["ports"] {
            Yaml::Array(a) => a.clone(),
            _ => Vec::new(),
        };
        for entry in entries {
            let host_ip = match &entry {
                // Long syntax: `host_ip` next to `target` and `published`.
                Yaml::Hash(_) => scalar(&entry["host_ip"]),
                other => scalar(other).and_then(|p| published_host_ip(&p)),
            };
            let loopback = host_ip
                .as_deref()
                .and_then(|ip| ip.trim_matches(['[', ']']).parse::<IpAddr>().ok())
                .is_some_and(|ip| ip.is_loopback());
            if !loopback {
                let shown = scalar(&entry).unwrap_or_else(|| format!("{entry:?}"));
                self.problem(format!(
                    "{name}: publishes {shown} on every host interface; bind it to 127.0.0.1"
                ));
            }
        }
    }

    /// `host:container/proto` entries of `ports` (published) and `expose`.
    fn container_ports(&self, name: &str) -> Vec<(u16, Transport)> {
        let s = self.service(name);
        Self::strings(&s["ports"])
            .into_iter()
            .chain(Self::strings(&s["expose"]))
            .filter_map(|p| {
                let (ports, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                let container = ports.rsplit(':').next()?.parse().ok()?;
                let t = if proto == "udp" {
                    Transport::Udp
                } else {
                    Transport::Tcp
                };
                Some((container, t))
            })
            .collect()
    }

    /// The `-key` names a scenario says it needs ("Needs: -key a ... -key b").
    fn needed_keys(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let Some(start) = text.find("Needs:") else {
            return Vec::new();
        };
        let end = text[start..].find("-->").map_or(text.len(), |e| start + e);
        let words: Vec<&str> = text[start..end].split_whitespace().collect();
        words
            .windows(2)
            .filter(|w| w[0] == "-key")
            .map(|w| w[1].to_string())
            .collect()
    }

    fn sipp(&mut self, name: &str, mounts: &Mounts, domain: &str) -> Option<Sipp> {
        let sipp = Sipp {
            args: Self::strings(&self.service(name)["command"]),
        };
        let Some(sf) = sipp.opt("-sf").map(str::to_string) else {
            self.problem(format!("{name}: no -sf scenario"));
            return None;
        };
        if let Some(scenario) = self.mounted_file(name, mounts, &sf) {
            let keys = sipp.keys();
            for k in Self::needed_keys(&scenario) {
                if !keys.contains_key(k.as_str()) {
                    self.problem(format!("{name}: {sf} needs -key {k}, not given"));
                }
            }
            if keys.get("domain").is_some_and(|d| *d != domain) {
                self.problem(format!(
                    "{name}: -key domain {} but the gateway's domain is {domain}",
                    keys["domain"]
                ));
            }
        }
        if let Some(inf) = sipp.opt("-inf").map(str::to_string) {
            if let Some(csv) = self.mounted_file(name, mounts, &inf) {
                let text = std::fs::read_to_string(csv).unwrap_or_default();
                let first = text.lines().next().unwrap_or("").trim();
                if !matches!(first, "SEQUENTIAL" | "RANDOM" | "USER") {
                    self.problem(format!(
                        "{name}: {inf} does not start with SEQUENTIAL/RANDOM/USER"
                    ));
                }
            }
        }
        if sipp.transport().is_none() {
            self.problem(format!("{name}: -t must be u1 or t1 (as scripts/load.sh)"));
        }
        Some(sipp)
    }

    fn run(&mut self) {
        for s in ["gateway", "carrier", "pbx"] {
            if self.service(s).is_badvalue() {
                self.problem(format!("service {s} missing"));
            }
        }
        if !self.problems.is_empty() {
            return;
        }
        for s in ["gateway", "carrier", "pbx"] {
            self.check_build(s);
            self.published_on_loopback_only(s);
        }
        let ip: BTreeMap<&str, Option<Ipv4Addr>> = ["gateway", "carrier", "pbx"]
            .into_iter()
            .map(|s| (s, self.address(s)))
            .collect();

        // The gateway: its config, as the container sees it.
        let gw_mounts = self.mounts("gateway");
        let args = Self::strings(&self.service("gateway")["command"]);
        let Some(cfg_at) = args
            .iter()
            .position(|a| a == "--config")
            .and_then(|i| args.get(i + 1))
            .cloned()
        else {
            return self.problem("gateway: command has no --config".into());
        };
        let Some(cfg_host) = self.mounted_file("gateway", &gw_mounts, &cfg_at) else {
            return;
        };
        let Some(config) = self.load_config(&cfg_host, &cfg_at, &ip) else {
            return;
        };
        self.depends_on(
            "gateway",
            "carrier",
            "the carrier URI is resolved when the config loads",
        );
        // Inventory paths come out as container paths: follow the mounts.
        for (what, p) in [
            ("queues", &config.inventory.queues),
            ("numbers", &config.inventory.numbers),
        ] {
            if self
                .mounted_file("gateway", &gw_mounts, &p.to_string_lossy())
                .is_none()
            {
                self.problem(format!("gateway: inventory {what} file not available"));
            }
        }
        let inventory = match (
            gw_mounts.host(&config.inventory.queues),
            gw_mounts.host(&config.inventory.numbers),
        ) {
            (Some(q), Some(n)) if q.is_file() && n.is_file() => {
                match cidgate::inventory::Inventory::load(&q, &n, config.callerid.default_region) {
                    Ok(inv) => Some(inv),
                    Err(e) => {
                        self.problem(format!("gateway: mounted inventory does not load:\n{e}"));
                        None
                    }
                }
            }
            _ => None,
        };
        let listen_ip = config.server.listen.first().map(|l| l.addr.ip());
        if let (Some(IpAddr::V4(l)), Some(Some(gw))) = (listen_ip, ip.get("gateway")) {
            if !l.is_unspecified() && l != *gw {
                self.problem(format!("gateway: listens on {l} but its address is {gw}"));
            }
        }
        let published = self.container_ports("gateway");
        for l in &config.server.listen {
            if !published.contains(&(l.addr.port(), l.transport)) {
                self.problem(format!(
                    "gateway: listen {:?} port {} is not in ports/expose",
                    l.transport,
                    l.addr.port()
                ));
            }
        }
        for (port, t) in &published {
            let is_listen = config
                .server
                .listen
                .iter()
                .any(|l| l.addr.port() == *port && l.transport == *t);
            let is_admin = config.server.admin.is_some_and(|a| a.port() == *port);
            if !is_listen && !is_admin {
                self.problem(format!(
                    "gateway: publishes {port}/{t:?}, which the config neither listens on nor serves admin on"
                ));
            }
        }

        // The carrier: where the gateway sends calls.
        let domain = config.server.domain.clone();
        let carrier_mounts = self.mounts("carrier");
        if let Some(uas) = self.sipp("carrier", &carrier_mounts, &domain) {
            let port: Option<u16> = uas.opt("-p").and_then(|p| p.parse().ok());
            match config.carrier.first() {
                Some(c) if Some(c.addr.port()) != port => self.problem(format!(
                    "carrier: SIPp listens on -p {port:?} but the gateway's carrier URI {} has port {}",
                    c.uri,
                    c.addr.port()
                )),
                Some(c) if Some(c.transport) != uas.transport() => self.problem(format!(
                    "carrier: SIPp -t {:?} but the carrier URI {} uses {:?}",
                    uas.opt("-t"),
                    c.uri,
                    c.transport
                )),
                _ => {}
            }
            if let Some(p) = port {
                let t = uas.transport().unwrap_or(Transport::Udp);
                if !self.container_ports("carrier").contains(&(p, t)) {
                    self.problem(format!("carrier: port {p}/{t:?} not in ports/expose"));
                }
            }
            self.same_ip("carrier", &uas, ip["carrier"]);
        }

        // The PBX: must reach the gateway's listen port and be trusted.
        let pbx_mounts = self.mounts("pbx");
        if let Some(uac) = self.sipp("pbx", &pbx_mounts, &domain) {
            self.depends_on(
                "pbx",
                "gateway",
                "calls must not start before the gateway listens",
            );
            match uac.remote().and_then(|r| r.rsplit_once(':')) {
                None => self.problem("pbx: no gateway HOST:PORT at the end of the command".into()),
                Some((host, port)) => {
                    let port: Option<u16> = port.parse().ok();
                    let t = uac.transport().unwrap_or(Transport::Udp);
                    if !config
                        .server
                        .listen
                        .iter()
                        .any(|l| Some(l.addr.port()) == port && l.transport == t)
                    {
                        self.problem(format!(
                            "pbx: targets {host}:{port:?} over {t:?}, but the gateway listens on {:?}",
                            config.server.listen
                        ));
                    }
                    let gw_ip = ip["gateway"].map(|a| a.to_string());
                    if host != "gateway" && Some(host.to_string()) != gw_ip {
                        self.problem(format!("pbx: targets {host}, not the gateway service"));
                    }
                }
            }
            match ip["pbx"] {
                Some(a) if !config.trust.is_trusted(IpAddr::V4(a)) => self.problem(format!(
                    "pbx: {a} is not in the gateway's trust list {:?}",
                    config.trust.nets()
                )),
                None => self.problem("pbx: needs a fixed ipv4_address (the trust list)".into()),
                _ => {}
            }
            self.same_ip("pbx", &uac, ip["pbx"]);
            // Every call's expected outcome must be what the mounted
            // inventory gives: the PBX and the gateway use the same data.
            if let (Some(inv), Some(inf)) = (&inventory, uac.opt("-inf")) {
                if let Some(csv) = pbx_mounts.host(Path::new(inf)) {
                    self.check_calls(&csv, inv, &config);
                }
            }
        }

        // The rig's defaults in sipp-scenarios/cidgate.toml: same ports.
        let rig = self.root.join("sipp-scenarios/cidgate.toml");
        if let Ok(rig) = Config::from_file(&rig) {
            let port = |c: &Config| c.server.listen.first().map(|l| l.addr.port());
            if port(&rig) != port(&config) {
                self.problem(format!(
                    "gateway listens on {:?}, the rig's cidgate.toml on {:?}",
                    port(&config),
                    port(&rig)
                ));
            }
            let cport = |c: &Config| c.carrier.first().map(|c| c.addr.port());
            if cport(&rig) != cport(&config) {
                self.problem(format!(
                    "carrier port {:?}, the rig's cidgate.toml says {:?}",
                    cport(&config),
                    cport(&rig)
                ));
            }
        }
    }

    /// SIPp's `-i` (the address it writes into Contact and SDP) must be the
    /// container's own.
    fn same_ip(&mut self, name: &str, sipp: &Sipp, ip: Option<Ipv4Addr>) {
        let i = sipp.opt("-i");
        if let (Some(i), Some(ip)) = (i, ip) {
            if i != ip.to_string() {
                self.problem(format!(
                    "{name}: SIPp -i {i} but the container's address is {ip}"
                ));
            }
        }
    }

    /// `Config::from_file` on the mounted config. A carrier named by its
    /// compose service does not resolve outside the compose network; then
    /// the same text is checked with the service's fixed address in its
    /// place, which is what the resolver in the container returns.
    fn load_config(
        &mut self,
        host: &Path,
        container: &str,
        ip: &BTreeMap<&str, Option<Ipv4Addr>>,
    ) -> Option<Config> {
        let text = std::fs::read_to_string(host).ok()?;
        let unresolved = match Config::from_file(host) {
            Ok(_) => None,
            Err(e) => {
                let issues = e.issues();
                let names: Vec<&str> = issues
                    .iter()
                    .filter_map(|i| {
                        let rest = i.message.split("host `").nth(1)?;
                        let (name, after) = rest.split_once('`')?;
                        after.starts_with(" does not resolve").then_some(name)
                    })
                    .collect();
                if issues.is_empty() || names.len() != issues.len() {
                    self.problem(format!("gateway config does not load:\n{e}"));
                    return None;
                }
                Some(names.into_iter().map(str::to_string).collect::<Vec<_>>())
            }
        };
        let mut text = text;
        for name in unresolved.into_iter().flatten() {
            match ip.get(name.as_str()) {
                Some(Some(addr)) => {
                    text = text.replace(&format!("sip:{name}:"), &format!("sip:{addr}:"));
                }
                _ => {
                    self.problem(format!(
                        "gateway config: carrier host {name} is neither resolvable nor a compose service with a fixed address"
                    ));
                    return None;
                }
            }
        }
        // Parsed as the container's file, so relative inventory paths come
        // out as container paths.
        match Config::from_toml_str(&text, Path::new(container)) {
            Ok(c) => Some(c),
            Err(e) => {
                self.problem(format!("gateway config does not load:\n{e}"));
                None
            }
        }
    }

    fn check_calls(&mut self, csv: &Path, inv: &cidgate::inventory::Inventory, config: &Config) {
        let text = std::fs::read_to_string(csv).unwrap_or_default();
        let mut resolver = Resolver::new(config.callerid.dynamic_format);
        for (n, line) in text.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.split(';').collect();
            if f.len() < 6 {
                continue;
            }
            let per_call = f[1].split_once(':').map(|(_, v)| v.trim());
            let got = match resolver.resolve(inv, f[0], per_call) {
                Ok(d) => d.outcome.as_str(),
                Err(r) => r.as_str(),
            };
            if got != f[5] {
                self.problem(format!(
                    "{}:{}: call expects {} but the mounted inventory gives {got}",
                    csv.display(),
                    n + 1,
                    f[5]
                ));
            }
        }
    }
}

/// The host address of a short-syntax port entry (`IP:HOST:CONTAINER[/proto]`,
/// `[IPv6]:HOST:CONTAINER`), `None` when it has none (every interface).
fn published_host_ip(entry: &str) -> Option<String> {
    let ports = entry.split('/').next()?;
    if let Some(v6) = ports.strip_prefix('[') {
        return v6.split_once(']').map(|(ip, _)| ip.to_string());
    }
    let parts: Vec<&str> = ports.split(':').collect();
    (parts.len() == 3).then(|| parts[0].to_string())
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Every problem with a compose file whose relative paths are against `root`.
fn problems(text: &str, root: &Path) -> Vec<String> {
    let docs = match YamlLoader::load_from_str(text) {
        Ok(d) => d,
        Err(e) => return vec![format!("not YAML: {e}")],
    };
    let Some(doc) = docs.first() else {
        return vec!["empty compose file".into()];
    };
    let mut c = Checker {
        root,
        doc,
        problems: Vec::new(),
    };
    c.run();
    c.problems
}

#[test]
fn compose_file_is_consistent() {
    let p = problems(&compose_text(), &root());
    assert!(p.is_empty(), "docker-compose.yml:\n  {}", p.join("\n  "));
}

/// Applies `from -> to` to the real compose file and returns the problems;
/// fails if the edit did not apply (the mutation would test nothing).
fn mutated(from: &str, to: &str) -> Vec<String> {
    let text = compose_text();
    assert!(
        text.contains(from),
        "mutation target `{from}` not in docker-compose.yml"
    );
    problems(&text.replacen(from, to, 1), &root())
}

fn assert_reported(p: &[String], needle: &str) {
    assert!(
        p.iter().any(|x| x.contains(needle)),
        "expected a problem mentioning `{needle}`, got {p:#?}"
    );
}

#[test]
fn missing_mount_is_reported() {
    let p = mutated("./sipp-scenarios/data:", "./sipp-scenarios/no-such-dir:");
    assert_reported(&p, "no-such-dir does not exist");
}

#[test]
fn missing_dockerfile_is_reported() {
    let p = mutated("docker/sipp.Dockerfile", "docker/nope.Dockerfile");
    assert_reported(&p, "nope.Dockerfile not found");
}

#[test]
fn missing_scenario_is_reported() {
    let p = mutated("/scenarios/uac.xml", "/scenarios/uac-missing.xml");
    assert_reported(&p, "uac-missing.xml");
}

#[test]
fn carrier_port_mismatch_is_reported() {
    let p = mutated("- \"5080\"\n", "- \"5081\"\n");
    assert_reported(&p, "carrier URI");
}

#[test]
fn gateway_target_port_mismatch_is_reported() {
    let p = mutated("gateway:5060", "gateway:5062");
    assert_reported(&p, "pbx: targets gateway");
}

#[test]
fn untrusted_pbx_is_reported() {
    let p = mutated("ipv4_address: 172.28.0.30", "ipv4_address: 10.9.9.9");
    assert_reported(&p, "outside network");
    assert_reported(&p, "trust list");
}

#[test]
fn wrong_domain_is_reported() {
    let p = mutated("- gw.example.net\n", "- other.example.net\n");
    assert_reported(&p, "-key domain other.example.net");
}

#[test]
fn missing_key_is_reported() {
    let p = mutated("      - bye_display\n      - check\n", "");
    // uas.xml's header says it needs -key bye_display
    assert_reported(&p, "needs -key bye_display");
}

#[test]
fn unmounted_config_is_reported() {
    let p = mutated(
        "\"--config\", \"/etc/cidgate/cidgate.toml\"",
        "\"--config\", \"/srv/cidgate.toml\"",
    );
    assert_reported(&p, "/srv/cidgate.toml is not inside any mount");
}

#[test]
fn mismatched_calls_are_reported() {
    // Mount the normalize-mode call list into the strict-mode gateway's PBX:
    // its expectations differ from what the inventory and strict mode give.
    let p = mutated(
        "/scenarios/data/calls.csv",
        "/scenarios/data/calls-normalize.csv",
    );
    assert_reported(&p, "call expects");
}

#[test]
fn sip_published_on_every_interface_is_reported() {
    let p = mutated("\"127.0.0.1:5060:5060/udp\"", "\"5060:5060/udp\"");
    assert_reported(
        &p,
        "gateway: publishes 5060:5060/udp on every host interface",
    );
    let p = mutated("\"127.0.0.1:8080:8080/tcp\"", "\"0.0.0.0:8080:8080/tcp\"");
    assert_reported(&p, "0.0.0.0:8080:8080/tcp on every host interface");
}
