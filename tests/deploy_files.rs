//! The deploy files under `deploy/`: the systemd unit and its settings, the container image, the
//! compose mesh, the Kubernetes example and the scripts. Each is parsed and checked against the
//! others and against the real binary: every `tiermesh` command line anywhere under `deploy/`
//! names a real subcommand and only real flags (from `tiermesh ... --help`), the ports agree
//! everywhere, and the scripts and the unit's commands are run for real on 127.0.0.1.
//!
//! Nothing here runs a container (there is no container engine on the CI machine): the entrypoint
//! and bootstrap scripts are run directly, as compose would run them, against real nodes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;
use yaml_rust2::{Yaml, YamlLoader};

mod support;
use support::{free_port, ok, text};

const BIN: &str = env!("CARGO_BIN_EXE_tiermesh");
/// A functional deadline for a condition to become true (not a performance assertion).
const DEADLINE: Duration = Duration::from_secs(90);
/// What the unit file installs as the binary.
const UNIT_BIN: &str = "/usr/local/bin/tiermesh";

// ---------------------------------------------------------------------------------------------
// Files and problems.

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("node/ has a parent")
        .to_path_buf()
}

/// The text of a file of the repository, by its path from the repository root.
fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{rel}: cannot read: {error}"))
}

/// Problems found, each `FILE:LINE: what`; the test fails listing them all.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, file: &str, line: usize, what: impl std::fmt::Display) {
        self.0.push(format!("{file}:{line}: {what}"));
    }
    fn check(&mut self, condition: bool, file: &str, line: usize, what: impl std::fmt::Display) {
        if !condition {
            self.add(file, line, what);
        }
    }
    fn assert_none(&self, what: &str) {
        assert!(
            self.0.is_empty(),
            "{what}: {} problem(s):\n  {}",
            self.0.len(),
            self.0.join("\n  ")
        );
    }
}

/// The port of `HOST:PORT`.
fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}

fn host_of(addr: &str) -> Option<&str> {
    Some(addr.rsplit_once(':')?.0)
}

// ---------------------------------------------------------------------------------------------
// The systemd unit (INI-style) and its EnvironmentFile.

#[derive(Debug, Clone)]
struct IniEntry {
    section: String,
    key: String,
    value: String,
    line: usize,
}

/// Joins lines ending in a backslash with the next: (first line number, joined text).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let (start, mut joined) = current.take().unwrap_or((index + 1, String::new()));
        if let Some(head) = raw.strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
            current = Some((start, joined));
        } else {
            joined.push_str(raw);
            lines.push((start, joined));
        }
    }
    if let Some(rest) = current {
        lines.push(rest);
    }
    lines
}

/// A parsed unit: its sections (name, line) and its entries.
type Unit = (Vec<(String, usize)>, Vec<IniEntry>);

/// Parses a systemd unit: `[Section]` headers, `Key=Value` lines, `#`/`;` comments.
fn parse_unit(text: &str, file: &str) -> Result<Unit, String> {
    let mut sections = Vec::new();
    let mut entries = Vec::new();
    for (line, content) in logical_lines(text) {
        let trimmed = content.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            sections.push((name.to_string(), line));
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err(format!(
                "{file}:{line}: neither [Section] nor Key=Value: {trimmed}"
            ));
        };
        let Some((section, _)) = sections.last() else {
            return Err(format!("{file}:{line}: {key} before any [Section]"));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("{file}:{line}: '{key}' is not a key name"));
        }
        entries.push(IniEntry {
            section: section.clone(),
            key: key.to_string(),
            value: value.trim().to_string(),
            line,
        });
    }
    Ok((sections, entries))
}

/// Parses an EnvironmentFile: `NAME=value` lines and comments; (name -> (value, line)).
fn parse_env_file(text: &str, file: &str) -> Result<BTreeMap<String, (String, usize)>, String> {
    let mut vars = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((name, value)) = trimmed.split_once('=') else {
            return Err(format!("{file}:{line}: not NAME=value: {trimmed}"));
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(format!("{file}:{line}: '{name}' is not a variable name"));
        }
        if vars
            .insert(name.to_string(), (value.to_string(), line))
            .is_some()
        {
            return Err(format!("{file}:{line}: {name} is set twice"));
        }
    }
    Ok(vars)
}

/// The variables a systemd command line uses: `${NAME}` and `$NAME`.
fn unit_variables(command: &str) -> Vec<String> {
    let mut names = Vec::new();
    let chars: Vec<char> = command.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' && i + 1 < chars.len() {
            let braced = chars[i + 1] == '{';
            let start = if braced { i + 2 } else { i + 1 };
            let mut end = start;
            while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            if end > start {
                names.push(chars[start..end].iter().collect());
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    names
}

/// A systemd command line as argv, with the variables replaced (`${X}` one word, `$X` split).
fn unit_argv(command: &str, vars: &BTreeMap<String, String>) -> Vec<String> {
    let command = command.trim_start_matches(['-', '@', ':', '+', '!']);
    let mut argv = Vec::new();
    for word in command.split_whitespace() {
        if let Some(name) = word.strip_prefix('$').filter(|n| !n.starts_with('{')) {
            let value = vars.get(name).map(String::as_str).unwrap_or("");
            argv.extend(value.split_whitespace().map(str::to_string));
            continue;
        }
        let mut expanded = word.to_string();
        for name in unit_variables(word) {
            let value = vars.get(&name).map(String::as_str).unwrap_or("");
            expanded = expanded.replace(&format!("${{{name}}}"), value);
        }
        argv.push(expanded);
    }
    argv
}

const UNIT: &str = "deploy/systemd/tiermesh.service";
const UNIT_ENV: &str = "deploy/systemd/tiermesh.env";
const UNIT_README: &str = "deploy/systemd/README.md";

fn unit() -> Unit {
    parse_unit(&read(UNIT), UNIT).unwrap_or_else(|error| panic!("{error}"))
}

fn unit_env() -> BTreeMap<String, (String, usize)> {
    parse_env_file(&read(UNIT_ENV), UNIT_ENV).unwrap_or_else(|error| panic!("{error}"))
}

fn truthy(value: &str) -> bool {
    matches!(value, "yes" | "true" | "1" | "on")
}

#[test]
fn systemd_unit_is_hardened_and_its_variables_are_set() {
    let (sections, entries) = unit();
    let env = unit_env();
    let mut problems = Problems::default();
    for wanted in ["Unit", "Service", "Install"] {
        problems.check(
            sections.iter().any(|(name, _)| name == wanted),
            UNIT,
            1,
            format!("no [{wanted}] section"),
        );
    }
    let known_sections = ["Unit", "Service", "Install"];
    for (name, line) in &sections {
        problems.check(
            known_sections.contains(&name.as_str()),
            UNIT,
            *line,
            format!("unexpected section [{name}]"),
        );
    }
    let all = |section: &str, key: &str| -> Vec<&IniEntry> {
        entries
            .iter()
            .filter(|e| e.section == section && e.key == key)
            .collect()
    };
    // The effective value: the last assignment (systemd semantics for single-valued keys).
    let last = |section: &str, key: &str| all(section, key).last().copied();

    let mut expect =
        |key: &str, wanted: &dyn Fn(&str) -> bool, what: &str| match last("Service", key) {
            Some(entry) => problems.check(
                wanted(&entry.value),
                UNIT,
                entry.line,
                format!("{key}={}: expected {what}", entry.value),
            ),
            None => problems.add(UNIT, 1, format!("[Service] has no {key}= ({what})")),
        };
    expect("DynamicUser", &|v| v == "no", "no (its own user)");
    expect("User", &|v| v == "tiermesh", "tiermesh");
    expect("Group", &|v| v == "tiermesh", "tiermesh");
    expect("StateDirectory", &|v| v == "tiermesh", "tiermesh");
    expect("ProtectSystem", &|v| v == "strict", "strict");
    expect("ProtectHome", &|v| truthy(v), "yes");
    expect("PrivateTmp", &|v| truthy(v), "yes");
    expect("PrivateDevices", &|v| truthy(v), "yes");
    expect("NoNewPrivileges", &|v| truthy(v), "yes");
    expect("MemoryDenyWriteExecute", &|v| truthy(v), "yes");
    expect("RestrictSUIDSGID", &|v| truthy(v), "yes");
    expect("LockPersonality", &|v| truthy(v), "yes");
    expect(
        "CapabilityBoundingSet",
        &|v| v.is_empty(),
        "empty (no capabilities)",
    );
    expect(
        "RestrictAddressFamilies",
        &|v| {
            let families: BTreeSet<&str> = v.split_whitespace().collect();
            families == BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX"])
        },
        "exactly AF_INET AF_INET6 AF_UNIX",
    );
    expect(
        "LimitNOFILE",
        &|v| v.parse::<u64>().is_ok_and(|n| n >= 4096),
        "a number of at least 4096",
    );
    expect("Restart", &|v| v == "on-failure", "on-failure");
    expect("Type", &|v| v == "simple" || v == "exec", "simple or exec");
    expect(
        "EnvironmentFile",
        &|v| v.trim_start_matches('-') == "/etc/tiermesh/tiermesh.env",
        "/etc/tiermesh/tiermesh.env",
    );
    let filters = all("Service", "SystemCallFilter");
    problems.check(
        filters.iter().any(|e| {
            !e.value.starts_with('~') && e.value.split_whitespace().any(|g| g == "@system-service")
        }),
        UNIT,
        filters.first().map_or(1, |e| e.line),
        "SystemCallFilter= does not allow-list @system-service",
    );
    match last("Install", "WantedBy") {
        Some(entry) => problems.check(
            entry
                .value
                .split_whitespace()
                .any(|t| t == "multi-user.target"),
            UNIT,
            entry.line,
            "WantedBy= lacks multi-user.target",
        ),
        None => problems.add(UNIT, 1, "[Install] has no WantedBy="),
    }

    // ExecStart runs the node from the node directory of the EnvironmentFile.
    let exec_start = all("Service", "ExecStart");
    problems.check(exec_start.len() == 1, UNIT, 1, "expected one ExecStart=");
    if let Some(entry) = exec_start.first() {
        problems.check(
            entry.value.starts_with(&format!("{UNIT_BIN} run ")),
            UNIT,
            entry.line,
            format!("ExecStart= does not run `{UNIT_BIN} run`"),
        );
        problems.check(
            entry.value.contains("--dir ${TIERMESH_DIR}"),
            UNIT,
            entry.line,
            "ExecStart= lacks --dir ${TIERMESH_DIR}",
        );
    }
    // Every variable of every command line is set by the EnvironmentFile or Environment=.
    let mut defined: BTreeSet<String> = env.keys().cloned().collect();
    for entry in all("Service", "Environment") {
        for assignment in entry.value.split_whitespace() {
            if let Some((name, _)) = assignment.trim_matches('"').split_once('=') {
                defined.insert(name.to_string());
            }
        }
    }
    for entry in entries.iter().filter(|e| e.key.starts_with("Exec")) {
        for name in unit_variables(&entry.value) {
            problems.check(
                defined.contains(&name),
                UNIT,
                entry.line,
                format!("{}= uses ${name}, which {UNIT_ENV} does not set", entry.key),
            );
        }
    }

    // The settings: the node directory is inside the StateDirectory (the only writable place
    // under ProtectSystem=strict), the ports are the documented ones.
    let state = last("Service", "StateDirectory").map_or("", |e| e.value.as_str());
    let var = |name: &str| env.get(name).map(|(v, l)| (v.as_str(), *l));
    match var("TIERMESH_DIR") {
        Some((dir, line)) => problems.check(
            dir == "/var/lib/tiermesh/node"
                && Path::new(dir).starts_with(Path::new("/var/lib").join(state)),
            UNIT_ENV,
            line,
            format!(
                "TIERMESH_DIR={dir}: expected /var/lib/tiermesh/node, in StateDirectory={state}"
            ),
        ),
        None => problems.add(UNIT_ENV, 1, "TIERMESH_DIR is not set"),
    }
    match var("TIERMESH_LISTEN") {
        Some((addr, line)) => problems.check(
            port_of(addr) == Some(7400),
            UNIT_ENV,
            line,
            format!("TIERMESH_LISTEN={addr}: expected port 7400"),
        ),
        None => problems.add(UNIT_ENV, 1, "TIERMESH_LISTEN is not set"),
    }
    match var("TIERMESH_ADMIN") {
        Some((addr, line)) => problems.check(
            addr == "127.0.0.1:9464",
            UNIT_ENV,
            line,
            format!("TIERMESH_ADMIN={addr}: expected 127.0.0.1:9464 (loopback)"),
        ),
        None => problems.add(UNIT_ENV, 1, "TIERMESH_ADMIN is not set"),
    }
    problems.check(
        var("RUST_LOG").is_some(),
        UNIT_ENV,
        1,
        "RUST_LOG is not set",
    );
    problems.check(
        read(UNIT_ENV)
            .lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .count()
            >= 3,
        UNIT_ENV,
        1,
        "the settings are not explained in comments",
    );
    // The install steps.
    let readme = read(UNIT_README);
    for step in [
        "useradd",
        "tiermesh init",
        "systemctl enable --now",
        "/etc/tiermesh/tiermesh.env",
        "/etc/systemd/system/tiermesh.service",
        UNIT_BIN,
    ] {
        problems.check(
            readme.contains(step),
            UNIT_README,
            1,
            format!("the install steps do not mention `{step}`"),
        );
    }
    problems.assert_none("systemd unit");
}

/// `systemd-analyze verify` and `security --offline` on a copy of the unit whose binary and
/// EnvironmentFile exist; skipped, saying so, when the machine has no systemd-analyze.
#[test]
fn systemd_analyze_accepts_the_unit_if_available() {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("systemd-analyze is not on this machine: `systemd-analyze verify` skipped");
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    let env_copy = root.path().join("tiermesh.env");
    std::fs::copy(repo().join(UNIT_ENV), &env_copy).expect("copy env");
    let unit_copy = root.path().join("tiermesh.service");
    let text = read(UNIT)
        .replace(UNIT_BIN, BIN)
        .replace("/etc/tiermesh/tiermesh.env", support::path(&env_copy));
    std::fs::write(&unit_copy, text).expect("write unit copy");
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no", support::path(&unit_copy)])
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // verify exits 0 on unknown keys and bad values; it names the file on such lines.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("tiermesh.service"))
        .collect();
    assert!(
        output.status.success() && complaints.is_empty(),
        "systemd-analyze verify {UNIT} (copy with the binary at {BIN}):\n{}",
        text_of(&output.status, &output.stdout, &output.stderr)
    );
    let output = Command::new("systemd-analyze")
        .args([
            "security",
            "--offline=true",
            "--no-pager",
            support::path(&unit_copy),
        ])
        .output()
        .expect("run systemd-analyze security");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let level = stdout.lines().find_map(|l| {
        let rest = l
            .split("Overall exposure level for tiermesh.service:")
            .nth(1)?;
        rest.split_whitespace().next()?.parse::<f64>().ok()
    });
    match level {
        Some(level) => assert!(
            level <= 2.0,
            "{UNIT}: systemd-analyze security: exposure {level}, want at most 2.0:\n{stdout}"
        ),
        None => eprintln!(
            "systemd-analyze security --offline gave no exposure level (skipped):\n{}",
            text_of(&output.status, &output.stdout, &output.stderr)
        ),
    }
}

/// The unit's ExecStartPre and ExecStart, with the settings of tiermesh.env (paths and ports
/// moved to a temporary folder and free ports), run for real.
#[test]
fn systemd_unit_commands_run() {
    let (_, entries) = unit();
    let env = unit_env();
    let command = |key: &str| {
        entries
            .iter()
            .find(|e| e.section == "Service" && e.key == key)
            .unwrap_or_else(|| panic!("{UNIT}: no {key}="))
            .clone()
    };
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("node");
    ok(&[
        "init",
        "--dir",
        support::path(&dir),
        "--region",
        "520000000000",
        "--name",
        "unit test",
    ]);
    let mut vars: BTreeMap<String, String> = env
        .iter()
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect();
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_tcp_port());
    vars.insert("TIERMESH_DIR".into(), support::path(&dir).to_string());
    vars.insert("TIERMESH_LISTEN".into(), listen.clone());
    vars.insert("TIERMESH_ADMIN".into(), admin.clone());
    let argv_of = |entry: &IniEntry, vars: &BTreeMap<String, String>| {
        let mut argv = unit_argv(&entry.value, vars);
        assert_eq!(
            argv.first().map(String::as_str),
            Some(UNIT_BIN),
            "{UNIT}:{}: {}= does not run {UNIT_BIN}",
            entry.line,
            entry.key
        );
        argv[0] = BIN.to_string();
        argv
    };
    let unit_env_of = |vars: &BTreeMap<String, String>| {
        let mut command = Command::new(BIN);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in vars {
            command.env(k, v);
        }
        command.env("RUST_LOG", "warn");
        command
    };

    if let Some(pre) = entries
        .iter()
        .find(|e| e.section == "Service" && e.key == "ExecStartPre")
    {
        let argv = argv_of(pre, &vars);
        let output = unit_env_of(&vars)
            .args(&argv[1..])
            .output()
            .expect("run ExecStartPre");
        assert!(
            output.status.success(),
            "{UNIT}:{}: ExecStartPre fails on a node directory made by init: {argv:?}\n{}",
            pre.line,
            text(&output)
        );
        let mut missing = vars.clone();
        missing.insert(
            "TIERMESH_DIR".into(),
            support::path(&root.path().join("missing")).to_string(),
        );
        let argv = argv_of(pre, &missing);
        let output = unit_env_of(&missing)
            .args(&argv[1..])
            .output()
            .expect("run ExecStartPre");
        assert!(
            !output.status.success(),
            "{UNIT}:{}: ExecStartPre succeeds without a node directory: {argv:?}\n{}",
            pre.line,
            text(&output)
        );
    }

    let start = command("ExecStart");
    let argv = argv_of(&start, &vars);
    let mut spawn = unit_env_of(&vars);
    spawn.args(&argv[1..]);
    let mut node = Proc::spawn("ExecStart", spawn, root.path());
    node.wait_line(
        "listening on",
        &format!("{UNIT}:{}: ExecStart {argv:?}", start.line),
    );
    wait_for(&format!("{UNIT}: /healthz on {admin}"), || {
        match http_get(&admin, "/healthz") {
            Ok((200, body)) => Ok(body.starts_with("ok")),
            Ok((code, body)) => Err(format!("HTTP {code}: {body}")),
            Err(error) => Err(error),
        }
    });
    // The unit stops the node with SIGTERM and gives it TimeoutStopSec.
    let timeout = entries
        .iter()
        .find(|e| e.key == "TimeoutStopSec")
        .and_then(|e| e.value.parse::<u64>().ok())
        .unwrap_or(90);
    node.signal("-TERM");
    let status = node
        .wait_exit(Duration::from_secs(timeout))
        .unwrap_or_else(|| {
            panic!("{UNIT}: the node did not stop within TimeoutStopSec={timeout}s of SIGTERM")
        });
    assert!(
        status.success(),
        "{UNIT}: the node exited {status} on SIGTERM, which Restart=on-failure would restart\n{}",
        node.log()
    );
}

// ---------------------------------------------------------------------------------------------
// Every `tiermesh` command line under deploy/.

/// A `tiermesh` command line found in a file: the words after the binary.
#[derive(Debug, Clone)]
struct Invocation {
    file: String,
    line: usize,
    words: Vec<String>,
    /// Flags added to "$@" by earlier `set -- ...` lines, when this command line passes "$@".
    pending: Vec<(usize, String)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Delimiter,
}

/// Splits a line of shell-like text into words and command delimiters (`;`, `|`, `&`, `(`, `)`,
/// `$(`, backquote, `[` at a word's start, `]`, redirections). Quotes are dropped and quoted text
/// is split like the rest, so that a command inside a string (`sh -c '...'`) is seen too; a
/// trailing comma (of a JSON array) is dropped; `#` at a word's start, unquoted, ends the line.
fn tokenize(line: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let (mut in_single, mut in_double) = (false, false);
    let flush = |word: &mut String, tokens: &mut Vec<Token>| {
        let trimmed = word.trim_end_matches(',');
        if !trimmed.is_empty() {
            tokens.push(Token::Word(trimmed.to_string()));
        }
        word.clear();
    };
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if !in_single => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            '"' if !in_single => in_double = !in_double,
            '\'' if !in_double => in_single = !in_single,
            '#' if word.is_empty() && !in_single && !in_double => break,
            c if c.is_whitespace() => flush(&mut word, &mut tokens),
            '$' if chars.peek() == Some(&'(') => {
                chars.next();
                flush(&mut word, &mut tokens);
                tokens.push(Token::Delimiter);
            }
            ';' | '|' | '&' | '(' | ')' | '`' | ']' | '<' | '>' => {
                flush(&mut word, &mut tokens);
                tokens.push(Token::Delimiter);
            }
            '[' if word.is_empty() => tokens.push(Token::Delimiter),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut tokens);
    tokens
}

/// Is this word the tiermesh binary: `tiermesh`, a path ending in `/tiermesh`, or the variables
/// `$tiermesh`, `${TIERMESH}`, `$TIERMESH_BIN`, `${TIERMESH_BIN:-tiermesh}`...
fn is_binary(word: &str) -> bool {
    if word == "tiermesh" || word.ends_with("/tiermesh") {
        return true;
    }
    let Some(name) = word.strip_prefix('$') else {
        return false;
    };
    let name = match name.strip_prefix('{') {
        Some(inner) => match inner.strip_suffix('}') {
            Some(inner) => inner.split([':', '-', '=']).next().unwrap_or(""),
            None => return false,
        },
        None => name,
    };
    matches!(
        name.to_ascii_lowercase().as_str(),
        "tiermesh" | "tiermesh_bin"
    )
}

/// Words after which a command still starts.
const COMMAND_PREFIXES: &[&str] = &[
    "exec",
    "sudo",
    "runuser",
    "doas",
    "setpriv",
    "env",
    "nohup",
    "time",
    "command",
    "if",
    "then",
    "else",
    "elif",
    "do",
    "while",
    "until",
    "!",
    "$",
    "{",
    "RUN",
    "CMD",
    "ENTRYPOINT",
    "HEALTHCHECK",
    "timeout",
];
/// Of those, the ones whose options come before the command.
const OPTION_PREFIXES: &[&str] = &["sudo", "runuser", "doas", "setpriv", "env", "timeout"];

/// Finds the `tiermesh` command lines of one line of text (`command_start`: whether the line's
/// first word is a command, false for comments and prose).
fn scan_line(
    file: &str,
    line: usize,
    text: &str,
    command_start: bool,
    subcommands: &BTreeSet<String>,
    pending: &mut Vec<(usize, String)>,
    found: &mut Vec<Invocation>,
) {
    let tokens = tokenize(text);
    let mut at_command = command_start;
    let mut skip_options = false;
    let mut i = 0;
    while i < tokens.len() {
        let Token::Word(word) = &tokens[i] else {
            at_command = true;
            skip_options = false;
            i += 1;
            continue;
        };
        if at_command && skip_options && word.starts_with('-') {
            // sudo -u USER, runuser -u USER --, timeout 5s ...
            if matches!(word.as_str(), "-u" | "-g" | "--user" | "--group" | "-s") {
                i += 1;
            }
            i += 1;
            continue;
        }
        let next_word = match tokens.get(i + 1) {
            Some(Token::Word(next)) => Some(next.as_str()),
            _ => None,
        };
        let mut binary = is_binary(word);
        let mut start = i;
        if at_command && !binary {
            if let Some((name, value)) = word.split_once('=') {
                let value = value.trim_start_matches(['-', '@', ':', '+', '!']);
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    if is_binary(value) {
                        binary = true;
                        start = i;
                    } else {
                        // An assignment before the command: the command still comes.
                        i += 1;
                        continue;
                    }
                }
            }
        }
        if binary && (at_command || next_word.is_some_and(|n| subcommands.contains(n))) {
            let mut words = Vec::new();
            let mut j = start + 1;
            while let Some(Token::Word(w)) = tokens.get(j) {
                words.push(w.clone());
                j += 1;
            }
            if !words.is_empty() {
                let uses_args = words.iter().any(|w| w == "$@");
                found.push(Invocation {
                    file: file.to_string(),
                    line,
                    words,
                    pending: if uses_args {
                        std::mem::take(pending)
                    } else {
                        Vec::new()
                    },
                });
            }
            i = j;
            at_command = false;
            continue;
        }
        if at_command && word == "set" && next_word == Some("--") {
            let mut j = i + 2;
            while let Some(Token::Word(w)) = tokens.get(j) {
                if w.starts_with("--") {
                    pending.push((line, w.clone()));
                }
                j += 1;
            }
            i = j;
            at_command = false;
            continue;
        }
        if at_command && COMMAND_PREFIXES.contains(&word.as_str()) {
            skip_options = OPTION_PREFIXES.contains(&word.as_str());
            i += 1;
            continue;
        }
        at_command = false;
        skip_options = false;
        i += 1;
    }
}

/// The inline code spans (`...`) of a line of prose.
fn code_spans(line: &str) -> Vec<String> {
    line.split('`')
        .enumerate()
        .filter(|(index, _)| index % 2 == 1)
        .map(|(_, span)| span.to_string())
        .collect()
}

/// Collects the scalars of a YAML file with their lines: sequences of scalars as one command
/// line (a compose `command:`/`entrypoint:`/`test:` array), other scalars as text.
#[derive(Default)]
struct YamlScan {
    frames: Vec<Option<Vec<(String, usize)>>>,
    /// (line, text): texts whose first word may be a command.
    fragments: Vec<(usize, String)>,
}

impl MarkedEventReceiver for YamlScan {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if let Some(Some(items)) = self.frames.last_mut() {
                    // Not a plain command array: its scalars are text.
                    let items = std::mem::take(items);
                    self.fragments
                        .extend(items.into_iter().map(|(s, l)| (l, s)));
                    *self.frames.last_mut().expect("a frame") = None;
                }
                let is_sequence = matches!(event, Event::SequenceStart(..));
                self.frames
                    .push(if is_sequence { Some(Vec::new()) } else { None });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(Some(items)) = self.frames.pop() {
                    if let Some((_, line)) = items.first() {
                        let joined: Vec<String> =
                            items.iter().map(|(s, _)| s.replace('\n', " ; ")).collect();
                        self.fragments.push((*line, joined.join(" ")));
                    }
                }
            }
            Event::Scalar(value, ..) => match self.frames.last_mut() {
                Some(Some(items)) => items.push((value, mark.line())),
                _ => self.fragments.push((mark.line(), value)),
            },
            _ => {}
        }
    }
}

/// Every `tiermesh` command line in `text` (the file `file`).
fn invocations_in(
    file: &str,
    text: &str,
    subcommands: &BTreeSet<String>,
) -> Result<Vec<Invocation>, String> {
    let mut found = Vec::new();
    let mut pending = Vec::new();
    let lower = file.to_ascii_lowercase();
    if lower.ends_with(".md") {
        let mut in_fence = false;
        for (line, content) in logical_lines(text) {
            if content.trim_start().starts_with("```") {
                in_fence = !in_fence;
                continue;
            }
            if in_fence {
                let code = content.trim_start();
                let command_start = !code.starts_with('#');
                scan_line(
                    file,
                    line,
                    code,
                    command_start,
                    subcommands,
                    &mut pending,
                    &mut found,
                );
            } else {
                for span in code_spans(&content) {
                    scan_line(
                        file,
                        line,
                        &span,
                        true,
                        subcommands,
                        &mut pending,
                        &mut found,
                    );
                }
            }
        }
        return Ok(found);
    }
    let yaml = lower.ends_with(".yaml") || lower.ends_with(".yml");
    for (line, content) in logical_lines(text) {
        let trimmed = content.trim_start();
        if let Some(comment) = trimmed
            .strip_prefix('#')
            .or_else(|| trimmed.strip_prefix(';'))
        {
            scan_line(
                file,
                line,
                comment,
                false,
                subcommands,
                &mut pending,
                &mut found,
            );
        } else if !yaml {
            scan_line(
                file,
                line,
                trimmed,
                true,
                subcommands,
                &mut pending,
                &mut found,
            );
        }
    }
    if yaml {
        let mut scan = YamlScan::default();
        Parser::new_from_str(text)
            .load(&mut scan, true)
            .map_err(|error| format!("{file}: not YAML: {error}"))?;
        for (line, fragment) in scan.fragments {
            for (offset, part) in fragment.lines().enumerate() {
                let part = part.trim_start();
                scan_line(
                    file,
                    line + offset,
                    part,
                    true,
                    subcommands,
                    &mut pending,
                    &mut found,
                );
            }
        }
    }
    Ok(found)
}

/// What `tiermesh PATH --help` says: its subcommands and its flags.
#[derive(Debug, Clone, Default)]
struct Help {
    commands: BTreeSet<String>,
    long: BTreeSet<String>,
    short: BTreeSet<char>,
}

fn parse_help(text: &str) -> Help {
    let mut help = Help::default();
    let mut section = "";
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line.trim_end_matches(':');
            continue;
        }
        let trimmed = line.trim_start();
        if section == "Commands" {
            if let Some(name) = trimmed.split_whitespace().next() {
                if line.starts_with("  ") && !line.starts_with("      ") {
                    help.commands.insert(name.to_string());
                }
            }
        } else if section == "Options" {
            let mut rest = trimmed;
            if let Some(short) = rest.strip_prefix('-').and_then(|r| r.chars().next()) {
                if short.is_ascii_alphanumeric() {
                    help.short.insert(short);
                    rest = rest[2..].trim_start_matches(',').trim_start();
                }
            }
            if let Some(long) = rest.strip_prefix("--") {
                let name: String = long
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                if !name.is_empty() {
                    help.long.insert(name);
                }
            }
        }
    }
    help
}

/// `tiermesh PATH... --help`, parsed (cached).
struct HelpCache(HashMap<Vec<String>, Result<Help, String>>);

impl HelpCache {
    fn get(&mut self, path: &[String]) -> Result<Help, String> {
        self.0
            .entry(path.to_vec())
            .or_insert_with(|| {
                let output = Command::new(BIN)
                    .args(path)
                    .arg("--help")
                    .output()
                    .expect("run tiermesh --help");
                if output.status.success() {
                    Ok(parse_help(&String::from_utf8_lossy(&output.stdout)))
                } else {
                    Err(String::from_utf8_lossy(&output.stderr)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string())
                }
            })
            .clone()
    }
}

/// Checks one command line against the help of the binary; (subcommand path, problems).
fn check_invocation(invocation: &Invocation, helps: &mut HelpCache) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let place = format!("{}:{}", invocation.file, invocation.line);
    let mut path: Vec<String> = Vec::new();
    let mut help = match helps.get(&path) {
        Ok(help) => help,
        Err(error) => {
            return (
                path,
                vec![format!("{place}: tiermesh --help fails: {error}")],
            )
        }
    };
    let mut words = invocation.words.iter().peekable();
    // Subcommands while the command has them.
    while !help.commands.is_empty() {
        let Some(word) = words.peek() else { break };
        if word.starts_with('-') || word.starts_with('$') {
            break;
        }
        if !help.commands.contains(word.as_str()) {
            let shown = if path.is_empty() {
                "tiermesh".to_string()
            } else {
                format!("tiermesh {}", path.join(" "))
            };
            problems.push(format!(
                "{place}: `{shown} {word}`: no such subcommand (has: {})",
                help.commands.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
            return (path, problems);
        }
        path.push((*word).clone());
        words.next();
        help = match helps.get(&path) {
            Ok(help) => help,
            Err(error) => {
                problems.push(format!(
                    "{place}: `tiermesh {} --help` fails: {error}",
                    path.join(" ")
                ));
                return (path, problems);
            }
        };
    }
    let shown = format!("tiermesh {}", path.join(" "));
    let check = |line: usize, word: &str, problems: &mut Vec<String>| {
        if let Some(long) = word.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or("");
            if !help.long.contains(name) {
                problems.push(format!(
                    "{}:{line}: `{shown}` has no flag --{name} (has: --{})",
                    invocation.file,
                    help.long.iter().cloned().collect::<Vec<_>>().join(", --")
                ));
            }
        } else if let Some(short) = word.strip_prefix('-') {
            let mut chars = short.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                if c.is_ascii_alphabetic() && !help.short.contains(&c) {
                    problems.push(format!(
                        "{}:{line}: `{shown}` has no flag -{c}",
                        invocation.file
                    ));
                }
            }
        }
    };
    for word in words {
        if word == "--" {
            break;
        }
        check(invocation.line, word, &mut problems);
    }
    for (line, flag) in &invocation.pending {
        check(*line, flag, &mut problems);
    }
    (path, problems)
}

/// Every file under deploy/, by its path from the repository root.
fn deploy_files() -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.is_file() {
                let rel = path.strip_prefix(root).expect("under the repository");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join("deploy"), &repo(), &mut files);
    files
}

fn top_level_subcommands(helps: &mut HelpCache) -> BTreeSet<String> {
    helps
        .get(&[])
        .unwrap_or_else(|error| panic!("tiermesh --help: {error}"))
        .commands
}

#[test]
fn every_tiermesh_command_line_under_deploy_is_real() {
    let mut helps = HelpCache(HashMap::new());
    let subcommands = top_level_subcommands(&mut helps);
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut count = 0;
    for file in deploy_files() {
        let Ok(text) = std::fs::read_to_string(repo().join(&file)) else {
            continue; // not text
        };
        let invocations = match invocations_in(&file, &text, &subcommands) {
            Ok(found) => found,
            Err(error) => {
                problems.push(error);
                continue;
            }
        };
        for invocation in invocations {
            count += 1;
            let (path, found) = check_invocation(&invocation, &mut helps);
            problems.extend(found);
            seen.entry(file.clone()).or_default().insert(path.join(" "));
        }
    }
    eprintln!("checked {count} tiermesh command lines under deploy/: {seen:?}");
    // The extractor must find what these files are known to run, or it checks nothing.
    let expected: &[(&str, &[&str])] = &[
        (UNIT, &["run", "status"]),
        (UNIT_README, &["init", "mesh create", "status"]),
        (
            "deploy/container/entrypoint.sh",
            &["init", "mesh create", "run"],
        ),
        (
            "deploy/compose/bootstrap.sh",
            &["keygen", "mesh status", "node register", "mesh promote"],
        ),
        ("deploy/compose/compose.yaml", &["status"]),
        ("deploy/k8s/statefulset.yaml", &["status"]),
        (
            "deploy/local-mesh.sh",
            &[
                "keygen",
                "init",
                "mesh create",
                "run",
                "node register",
                "mesh promote",
                "mesh status",
            ],
        ),
    ];
    for (file, commands) in expected {
        for command in *commands {
            if !seen.get(*file).is_some_and(|s| s.contains(*command)) {
                problems.push(format!(
                    "{file}: the extractor found no `tiermesh {command}` here (found {:?})",
                    seen.get(*file)
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) with tiermesh command lines under deploy/:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// The extractor on made-up text: it finds what it must and reports wrong names.
#[test]
fn the_command_line_extractor_catches_mistakes() {
    let mut helps = HelpCache(HashMap::new());
    let subcommands = top_level_subcommands(&mut helps);
    let script = "#!/bin/sh\n\
        set -- \"$@\" --peer x\n\
        set -- \"$@\" --bogus-set y\n\
        exec \"$tiermesh\" run --dir d \\\n  --lisen 1 \"$@\"\n\
        key=$(\"${TIERMESH_BIN:-tiermesh}\" keygen --out k | sed s/x/y/)\n\
        sudo -u tiermesh tiermesh mesh creat --dir d\n\
        ExecStart=/usr/local/bin/tiermesh run --dir ${TIERMESH_DIR} --tick 5\n\
        # the tiermesh user runs `tiermesh node register --pubky K`\n\
        useradd --system tiermesh\n\
        RUST_LOG=info $TIERMESH statuz --dir d\n";
    let yaml = "services:\n  a:\n    command: [\"tiermesh\", \"run\", \"--dri\", \"/data\"]\n    \
        healthcheck:\n      test:\n        - tiermesh\n        - init\n        - --regoin\n    \
        user: tiermesh\n    entrypoint: sh -c 'exec tiermesh keygen --outt x'\n";
    let markdown = "The tiermesh service.\n\n```sh\n$ tiermesh import --dir x --dry-runn f\n```\n\
        Run `tiermesh query --dirr x`.\n";
    let mut problems = Vec::new();
    for (file, text) in [("t.sh", script), ("t.yaml", yaml), ("t.md", markdown)] {
        for invocation in invocations_in(file, text, &subcommands).expect("parse") {
            problems.extend(check_invocation(&invocation, &mut helps).1);
        }
    }
    let joined = problems.join("\n");
    for wanted in [
        "t.sh:3: `tiermesh run` has no flag --bogus-set",
        "t.sh:4: `tiermesh run` has no flag --lisen",
        "t.sh:7: `tiermesh mesh creat`: no such subcommand",
        "t.sh:8: `tiermesh run` has no flag --tick",
        "t.sh:9: `tiermesh node register` has no flag --pubky",
        "t.sh:11: `tiermesh statuz`: no such subcommand",
        "t.yaml:3: `tiermesh run` has no flag --dri",
        "t.yaml:6: `tiermesh init` has no flag --regoin",
        "t.yaml:10: `tiermesh keygen` has no flag --outt",
        "t.md:4: `tiermesh import` has no flag --dry-runn",
        "t.md:6: `tiermesh query` has no flag --dirr",
    ] {
        assert!(
            joined.contains(wanted),
            "the extractor missed: {wanted}\nit reported:\n{joined}"
        );
    }
    assert_eq!(
        problems.len(),
        11,
        "the extractor reported more than the mistakes made:\n{joined}"
    );
}

// ---------------------------------------------------------------------------------------------
// The Containerfile.

const CONTAINERFILE: &str = "deploy/container/Containerfile";
const ENTRYPOINT: &str = "deploy/container/entrypoint.sh";
const BOOTSTRAP: &str = "deploy/compose/bootstrap.sh";
const COMPOSE: &str = "deploy/compose/compose.yaml";
const K8S: &str = "deploy/k8s/statefulset.yaml";

#[derive(Debug, Clone)]
struct Instruction {
    line: usize,
    name: String,
    args: String,
}

#[derive(Debug, Default)]
struct Stage {
    from: String,
    name: String,
    instructions: Vec<Instruction>,
}

/// The stages of the Containerfile, each with its instructions (continuations joined).
fn containerfile() -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for (line, content) in logical_lines(&read(CONTAINERFILE)) {
        let trimmed = content.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (name, args) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        let name = name.to_ascii_uppercase();
        let args = args.split_whitespace().collect::<Vec<_>>().join(" ");
        if name == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let image = words.iter().find(|w| !w.starts_with("--")).unwrap_or(&"");
            let alias = match words.iter().position(|w| w.eq_ignore_ascii_case("as")) {
                Some(i) => words.get(i + 1).copied().unwrap_or(""),
                None => "",
            };
            stages.push(Stage {
                from: image.to_string(),
                name: alias.to_string(),
                instructions: Vec::new(),
            });
            continue;
        }
        let stage = stages
            .last_mut()
            .unwrap_or_else(|| panic!("{CONTAINERFILE}:{line}: {name} before FROM"));
        stage.instructions.push(Instruction { line, name, args });
    }
    stages
}

/// The words of `["a", "b"]` (exec form) or of `a b` (shell form).
fn exec_form(args: &str) -> Vec<String> {
    let trimmed = args.trim();
    if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<String>>(trimmed) {
            Ok(words) => words,
            Err(_) => vec![trimmed.to_string()],
        }
    } else {
        trimmed.split_whitespace().map(str::to_string).collect()
    }
}

/// The image's ENV defaults (last stage).
fn image_env(stage: &Stage) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for instruction in stage.instructions.iter().filter(|i| i.name == "ENV") {
        for pair in instruction.args.split_whitespace() {
            if let Some((k, v)) = pair.split_once('=') {
                env.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
    }
    env
}

/// The uid the image runs as (its last USER, resolved through its useradd).
fn image_uid(stage: &Stage, problems: &mut Problems) -> Option<u32> {
    let user = stage.instructions.iter().rev().find(|i| i.name == "USER")?;
    let name = user.args.split(':').next().unwrap_or("");
    if name == "root" {
        return Some(0);
    }
    if let Ok(uid) = name.parse::<u32>() {
        return Some(uid);
    }
    let useradd = stage
        .instructions
        .iter()
        .find(|i| i.name == "RUN" && i.args.contains("useradd") && i.args.contains(name));
    let uid = useradd.and_then(|i| {
        let words: Vec<&str> = i.args.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "--uid" || *w == "-u")?;
        words.get(at + 1)?.parse::<u32>().ok()
    });
    if uid.is_none() {
        problems.add(
            CONTAINERFILE,
            user.line,
            format!("USER {name}: no useradd --uid for it"),
        );
    }
    uid
}

#[test]
fn containerfile_builds_in_one_stage_and_runs_unprivileged_in_another() {
    let stages = containerfile();
    let mut problems = Problems::default();
    assert!(
        stages.len() >= 2,
        "{CONTAINERFILE}: expected a build and a runtime stage"
    );
    let build = &stages[0];
    let runtime = stages.last().expect("a stage");
    let runs = |stage: &Stage| -> String {
        stage
            .instructions
            .iter()
            .filter(|i| i.name == "RUN")
            .map(|i| i.args.clone())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let first_line = |stage: &Stage| stage.instructions.first().map_or(1, |i| i.line);
    problems.check(
        build.from == "rust:1-bookworm",
        CONTAINERFILE,
        1,
        format!(
            "the build stage is FROM {}, expected rust:1-bookworm",
            build.from
        ),
    );
    for wanted in [
        "librocksdb-dev",
        "libclang-dev",
        "cargo build --release --locked -p tiermesh",
    ] {
        problems.check(
            runs(build).contains(wanted),
            CONTAINERFILE,
            first_line(build),
            format!("the build stage does not RUN `{wanted}`"),
        );
    }
    problems.check(
        runtime.from == "debian:bookworm-slim",
        CONTAINERFILE,
        first_line(runtime),
        format!(
            "the runtime stage is FROM {}, expected debian:bookworm-slim",
            runtime.from
        ),
    );
    let runtime_runs = runs(runtime);
    for wanted in ["librocksdb7.8", "ca-certificates"] {
        problems.check(
            runtime_runs.contains(wanted),
            CONTAINERFILE,
            first_line(runtime),
            format!("the runtime stage does not install {wanted}"),
        );
    }
    fn find<'a>(stage: &'a Stage, name: &'a str) -> impl Iterator<Item = &'a Instruction> + 'a {
        stage.instructions.iter().filter(move |i| i.name == name)
    }
    let find = |name: &'static str| find(runtime, name);
    // A non-root user, 10001.
    match image_uid(runtime, &mut problems) {
        Some(uid) => problems.check(
            uid == 10001,
            CONTAINERFILE,
            find("USER").last().map_or(1, |i| i.line),
            format!("the runtime stage runs as uid {uid}, expected 10001 (not root)"),
        ),
        None => problems.add(
            CONTAINERFILE,
            first_line(runtime),
            "the runtime stage has no USER",
        ),
    }
    // The /data volume.
    let volumes: Vec<String> = find("VOLUME").flat_map(|i| exec_form(&i.args)).collect();
    problems.check(
        volumes.iter().any(|v| v == "/data"),
        CONTAINERFILE,
        first_line(runtime),
        format!("no VOLUME /data (has {volumes:?})"),
    );
    // The ports, agreeing with the ENV defaults the entrypoint uses.
    let exposed: BTreeSet<String> = find("EXPOSE")
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let env = image_env(runtime);
    let listen = env.get("TIERMESH_LISTEN").and_then(|a| port_of(a));
    let admin = env.get("TIERMESH_ADMIN").and_then(|a| port_of(a));
    problems.check(
        listen == Some(7400) && admin == Some(9464),
        CONTAINERFILE,
        find("ENV").next().map_or(1, |i| i.line),
        format!(
            "ENV TIERMESH_LISTEN/TIERMESH_ADMIN ports are {listen:?}/{admin:?}, expected 7400/9464"
        ),
    );
    for wanted in ["7400/udp", "9464/tcp"] {
        problems.check(
            exposed.contains(wanted),
            CONTAINERFILE,
            find("EXPOSE").next().map_or(1, |i| i.line),
            format!("does not EXPOSE {wanted} (has {exposed:?})"),
        );
    }
    problems.check(
        env.get("TIERMESH_DIR")
            .is_some_and(|d| Path::new(d).starts_with("/data")),
        CONTAINERFILE,
        find("ENV").next().map_or(1, |i| i.line),
        "ENV TIERMESH_DIR is not on the /data volume",
    );
    // The health check asks /healthz with a program the image has.
    match find("HEALTHCHECK").last() {
        Some(check) => {
            problems.check(
                check.args.contains("/healthz"),
                CONTAINERFILE,
                check.line,
                "HEALTHCHECK does not ask /healthz",
            );
            problems.check(
                check.args.contains("9464") || check.args.contains("TIERMESH_ADMIN"),
                CONTAINERFILE,
                check.line,
                "HEALTHCHECK does not ask the admin port",
            );
            for program in ["curl", "wget"] {
                if check.args.contains(program) {
                    problems.check(
                        runtime_runs.split_whitespace().any(|w| w == program),
                        CONTAINERFILE,
                        check.line,
                        format!(
                            "HEALTHCHECK uses {program}, which the runtime stage does not install"
                        ),
                    );
                }
            }
        }
        None => problems.add(CONTAINERFILE, first_line(runtime), "no HEALTHCHECK"),
    }
    // COPY sources exist in the build context (the repository root); the binary comes from the
    // build stage, where it was installed.
    let mut copied: BTreeMap<String, String> = BTreeMap::new();
    for copy in find("COPY") {
        let words: Vec<&str> = copy.args.split_whitespace().collect();
        let from = words.iter().find_map(|w| w.strip_prefix("--from="));
        let paths: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let Some((dest, sources)) = paths.split_last() else {
            problems.add(CONTAINERFILE, copy.line, "COPY without paths");
            continue;
        };
        for source in sources {
            match from {
                Some(stage) => problems.check(
                    stages
                        .iter()
                        .any(|s| s.name == stage && runs(s).contains(source)),
                    CONTAINERFILE,
                    copy.line,
                    format!("COPY --from={stage} {source}: that stage does not make it"),
                ),
                None => problems.check(
                    repo().join(source).exists(),
                    CONTAINERFILE,
                    copy.line,
                    format!("COPY {source}: no such file in the repository (the build context)"),
                ),
            }
            if from.is_none() {
                copied.insert(dest.to_string(), source.to_string());
            }
        }
    }
    match find("ENTRYPOINT").last() {
        Some(entry) => {
            let words = exec_form(&entry.args);
            let program = words.first().cloned().unwrap_or_default();
            problems.check(
                entry.args.trim_start().starts_with('['),
                CONTAINERFILE,
                entry.line,
                "ENTRYPOINT is not in exec form (signals would go to a shell)",
            );
            match copied.get(&program) {
                Some(source) => {
                    problems.check(
                        source == ENTRYPOINT,
                        CONTAINERFILE,
                        entry.line,
                        format!(
                            "ENTRYPOINT {program} is copied from {source}, expected {ENTRYPOINT}"
                        ),
                    );
                    let mode = std::fs::metadata(repo().join(source))
                        .map(|m| m.permissions().mode())
                        .unwrap_or(0);
                    problems.check(
                        mode & 0o111 != 0 || !repo().join(source).exists(),
                        source,
                        1,
                        "the entrypoint script is not executable",
                    );
                }
                None => problems.add(
                    CONTAINERFILE,
                    entry.line,
                    format!("ENTRYPOINT {program} is not COPY'd into the runtime stage"),
                ),
            }
        }
        None => problems.add(CONTAINERFILE, first_line(runtime), "no ENTRYPOINT"),
    }
    // The ignore file keeps target/ out of the build context, not the files copied in.
    let ignore_file = format!("{CONTAINERFILE}.dockerignore");
    match std::fs::read_to_string(repo().join(&ignore_file)) {
        Ok(ignore) => {
            for (index, pattern) in ignore.lines().enumerate() {
                let pattern = pattern.trim();
                if pattern.is_empty() || pattern.starts_with('#') {
                    continue;
                }
                for source in copied.values() {
                    problems.check(
                        !source.starts_with(pattern.trim_end_matches('/')),
                        &ignore_file,
                        index + 1,
                        format!("'{pattern}' excludes {source}, which the image copies"),
                    );
                }
            }
            problems.check(
                ignore.lines().any(|l| l.trim() == "target"),
                &ignore_file,
                1,
                "target/ is not excluded from the build context",
            );
        }
        Err(_) => problems.add(
            &ignore_file,
            1,
            "missing: the build context would include target/",
        ),
    }
    problems.assert_none("Containerfile");
}

// ---------------------------------------------------------------------------------------------
// YAML helpers.

fn yaml_docs(file: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(file))
        .unwrap_or_else(|error| panic!("{file}: not YAML: {error}"))
}

/// A scalar as text (`"000000000000"`, `7400`, `true` alike).
fn scalar(yaml: &Yaml) -> Option<String> {
    match yaml {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(n) => Some(n.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn list(yaml: &Yaml) -> Vec<Yaml> {
    yaml.as_vec().cloned().unwrap_or_default()
}

/// The line of the first line of `file` containing `needle` (for messages), else 1.
fn line_of(file: &str, needle: &str) -> usize {
    read(file)
        .lines()
        .position(|l| l.contains(needle))
        .map_or(1, |i| i + 1)
}

// ---------------------------------------------------------------------------------------------
// compose.yaml.

/// A compose service's environment as a map (map form or `KEY=value` list form).
fn compose_env(service: &Yaml) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    match &service["environment"] {
        Yaml::Hash(map) => {
            for (k, v) in map {
                if let (Some(k), Some(v)) = (scalar(k), scalar(v)) {
                    env.insert(k, v);
                }
            }
        }
        Yaml::Array(items) => {
            for item in items {
                if let Some((k, v)) = item.as_str().and_then(|s| s.split_once('=')) {
                    env.insert(k.to_string(), v.to_string());
                }
            }
        }
        _ => {}
    }
    env
}

/// A service's volume mounts: (source, target).
fn compose_mounts(service: &Yaml) -> Vec<(String, String)> {
    list(&service["volumes"])
        .iter()
        .filter_map(|v| match v {
            Yaml::String(s) => {
                let mut parts = s.split(':');
                Some((parts.next()?.to_string(), parts.next()?.to_string()))
            }
            Yaml::Hash(_) => Some((scalar(&v["source"])?, scalar(&v["target"])?)),
            _ => None,
        })
        .collect()
}

fn tier_of(region: &str) -> &'static str {
    let zeros_from = |i: usize| region.get(i..).is_some_and(|r| r.chars().all(|c| c == '0'));
    if region.len() != 12 || !region.chars().all(|c| c.is_ascii_digit()) {
        "invalid"
    } else if zeros_from(0) {
        "national"
    } else if zeros_from(2) {
        "province"
    } else if zeros_from(4) {
        "prefecture"
    } else if zeros_from(6) {
        "county"
    } else {
        "township"
    }
}

/// Whether `ip` (a.b.c.d) is in `subnet` (a.b.c.d/n).
fn in_subnet(ip: &str, subnet: &str) -> bool {
    let parse = |s: &str| -> Option<u32> {
        let octets: Vec<u8> = s
            .split('.')
            .map(|o| o.parse().ok())
            .collect::<Option<_>>()?;
        (octets.len() == 4)
            .then(|| u32::from_be_bytes([octets[0], octets[1], octets[2], octets[3]]))
    };
    let Some((net, bits)) = subnet.split_once('/') else {
        return false;
    };
    match (parse(ip), parse(net), bits.parse::<u32>()) {
        (Some(ip), Some(net), Ok(bits)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            ip & mask == net & mask
        }
        _ => false,
    }
}

#[test]
fn compose_mesh_is_consistent() {
    let docs = yaml_docs(COMPOSE);
    let compose = docs.first().unwrap_or_else(|| panic!("{COMPOSE}: empty"));
    let mut problems = Problems::default();
    let services = compose["services"]
        .as_hash()
        .unwrap_or_else(|| panic!("{COMPOSE}: no services"));
    let runtime = containerfile().pop().expect("a runtime stage");
    let image = image_env(&runtime);
    let names: Vec<String> = services.keys().filter_map(scalar).collect();
    let service = |name: &str| &compose["services"][name];
    let at = |needle: &str| line_of(COMPOSE, needle);

    // The nodes: services with a region, one per tier national, province, county.
    let nodes: Vec<String> = names
        .iter()
        .filter(|n| compose_env(service(n)).contains_key("TIERMESH_REGION"))
        .cloned()
        .collect();
    let tiers: BTreeMap<&str, String> = nodes
        .iter()
        .map(|n| {
            (
                tier_of(&compose_env(service(n))["TIERMESH_REGION"]),
                n.clone(),
            )
        })
        .collect();
    problems.check(
        nodes.len() == 3
            && ["national", "province", "county"]
                .iter()
                .all(|t| tiers.contains_key(t)),
        COMPOSE,
        at("services:"),
        format!("expected three nodes, national, province and county; have {tiers:?}"),
    );
    problems.check(
        names.iter().any(|n| n == "bootstrap"),
        COMPOSE,
        at("services:"),
        "no bootstrap service",
    );
    let declared_volumes: BTreeSet<String> = compose["volumes"]
        .as_hash()
        .map(|m| m.keys().filter_map(scalar).collect())
        .unwrap_or_default();
    let network_subnets: Vec<String> = compose["networks"]
        .as_hash()
        .map(|m| {
            m.values()
                .flat_map(|n| list(&n["ipam"]["config"]))
                .filter_map(|c| scalar(&c["subnet"]))
                .collect()
        })
        .unwrap_or_default();
    let ip_of = |name: &str| -> Option<String> {
        service(name)["networks"]
            .as_hash()?
            .values()
            .find_map(|n| scalar(&n["ipv4_address"]))
    };
    let default_listen = image.get("TIERMESH_LISTEN").cloned().unwrap_or_default();
    let listen_port = |name: &str| {
        let env = compose_env(service(name));
        port_of(env.get("TIERMESH_LISTEN").unwrap_or(&default_listen))
    };
    // Where each node is reached: its fixed IP and listen port.
    let addr_of = |name: &str| Some(format!("{}:{}", ip_of(name)?, listen_port(name)?));
    let mut data_volumes = BTreeSet::new();
    let mut ips = BTreeSet::new();
    let national = tiers.get("national").cloned().unwrap_or_default();
    let national_env = compose_env(service(&national));
    let national_key_file = national_env.get("TIERMESH_PUBLISH_KEY").cloned();
    let mut shared_mounts = BTreeSet::new();
    for name in &nodes {
        let node = service(name);
        let env = compose_env(node);
        let line = at(&format!("  {name}:"));
        // Built from the Containerfile (context relative to compose.yaml, dockerfile to it).
        let context = scalar(&node["build"]["context"]).unwrap_or_default();
        let dockerfile = scalar(&node["build"]["dockerfile"]).unwrap_or_default();
        let built = repo()
            .join("deploy/compose")
            .join(&context)
            .join(&dockerfile);
        problems.check(
            built.canonicalize().ok() == repo().join(CONTAINERFILE).canonicalize().ok(),
            COMPOSE,
            line,
            format!("{name} is not built from {CONTAINERFILE} ({context:?}, {dockerfile:?})"),
        );
        problems.check(
            repo()
                .join("deploy/compose")
                .join(&context)
                .canonicalize()
                .ok()
                == repo().canonicalize().ok(),
            COMPOSE,
            line,
            format!("{name}: the build context {context:?} is not the repository root"),
        );
        // Its own named volume on /data.
        let mounts = compose_mounts(node);
        match mounts.iter().find(|(_, target)| target == "/data") {
            Some((source, _)) => {
                problems.check(
                    declared_volumes.contains(source),
                    COMPOSE,
                    line,
                    format!("{name}: /data is on '{source}', not a declared named volume"),
                );
                problems.check(
                    data_volumes.insert(source.clone()),
                    COMPOSE,
                    line,
                    format!("{name}: its /data volume '{source}' is another node's too"),
                );
            }
            None => problems.add(COMPOSE, line, format!("{name}: no volume on /data")),
        }
        // The node directory is on that volume.
        let dir = env
            .get("TIERMESH_DIR")
            .or(image.get("TIERMESH_DIR"))
            .cloned()
            .unwrap_or_default();
        problems.check(
            Path::new(&dir).starts_with("/data"),
            COMPOSE,
            line,
            format!("{name}: TIERMESH_DIR {dir:?} is not on /data"),
        );
        // A fixed address in the network's subnet (the mesh does not resolve names).
        match ip_of(name) {
            Some(ip) => {
                problems.check(
                    network_subnets.iter().any(|s| in_subnet(&ip, s)),
                    COMPOSE,
                    line,
                    format!("{name}: {ip} is in no subnet of the networks ({network_subnets:?})"),
                );
                problems.check(
                    ips.insert(ip.clone()),
                    COMPOSE,
                    line,
                    format!("{name}: {ip} is taken"),
                );
            }
            None => problems.add(COMPOSE, line, format!("{name}: no fixed ipv4_address")),
        }
        problems.check(
            listen_port(name) == Some(7400),
            COMPOSE,
            line,
            format!(
                "{name}: listens on port {:?}, expected 7400 (the image's EXPOSE)",
                listen_port(name)
            ),
        );
        // It publishes its key where bootstrap reads it, on a shared volume.
        match env.get("TIERMESH_PUBLISH_KEY") {
            Some(file) => {
                let dir = Path::new(file)
                    .parent()
                    .map(|p| p.to_string_lossy().into_owned());
                match mounts
                    .iter()
                    .find(|(_, target)| Some(target) == dir.as_ref())
                {
                    Some(mount) => {
                        shared_mounts.insert(mount.clone());
                    }
                    None => problems.add(
                        COMPOSE,
                        line,
                        format!("{name}: TIERMESH_PUBLISH_KEY {file} is on no volume"),
                    ),
                }
                problems.check(
                    file.ends_with(&format!("/{name}.pub")),
                    COMPOSE,
                    line,
                    format!(
                        "{name}: publishes its key as {file}, bootstrap reads KEYS_DIR/{name}.pub"
                    ),
                );
            }
            None => problems.add(COMPOSE, line, format!("{name}: no TIERMESH_PUBLISH_KEY")),
        }
        // Published admin ports stay on loopback and match the image's admin port.
        for port in list(&node["ports"]).iter().filter_map(scalar) {
            let parts: Vec<&str> = port.split('/').next().unwrap_or("").split(':').collect();
            let container = parts.last().and_then(|p| p.parse::<u16>().ok());
            let admin_port = image.get("TIERMESH_ADMIN").and_then(|a| port_of(a));
            if container == admin_port {
                problems.check(
                    parts.len() == 3 && parts[0] == "127.0.0.1",
                    COMPOSE,
                    at(&port),
                    format!("{name}: the admin port is published as {port}, not on 127.0.0.1"),
                );
            } else {
                problems.check(
                    container == Some(7400) && port.ends_with("/udp"),
                    COMPOSE,
                    at(&port),
                    format!("{name}: publishes {port}, neither the admin port nor 7400/udp"),
                );
            }
        }
        problems.check(
            node["read_only"].as_bool() == Some(true)
                && list(&node["cap_drop"])
                    .iter()
                    .any(|c| c.as_str() == Some("ALL")),
            COMPOSE,
            line,
            format!("{name}: not read_only with cap_drop ALL"),
        );
        // Non-national nodes trust the national node at its address until they have the registry.
        if *name != national {
            let peer_addr = env.get("TIERMESH_PEER_ADDR");
            problems.check(
                peer_addr.is_some() && peer_addr.cloned() == addr_of(&national),
                COMPOSE,
                line,
                format!(
                    "{name}: TIERMESH_PEER_ADDR {peer_addr:?} is not the national node's {:?}",
                    addr_of(&national)
                ),
            );
            problems.check(
                national_key_file.is_some()
                    && env.get("TIERMESH_PEER_KEY_FILE") == national_key_file.as_ref(),
                COMPOSE,
                line,
                format!(
                    "{name}: TIERMESH_PEER_KEY_FILE is not the national key {national_key_file:?}"
                ),
            );
        }
    }
    problems.check(
        shared_mounts.len() == 1,
        COMPOSE,
        at("shared"),
        format!("the nodes publish their keys on different volumes: {shared_mounts:?}"),
    );
    // The national node creates the mesh at its own address with the officer bootstrap makes.
    let boot = service("bootstrap");
    let boot_env = compose_env(boot);
    let boot_mounts = compose_mounts(boot);
    let keys_dir = boot_env
        .get("KEYS_DIR")
        .cloned()
        .unwrap_or_else(|| "/shared".into());
    let officer_pub = boot_env
        .get("OFFICER_PUB")
        .cloned()
        .unwrap_or_else(|| format!("{keys_dir}/officer.pub"));
    let line = at("TIERMESH_CREATE_MESH");
    problems.check(
        national_env.get("TIERMESH_CREATE_MESH").map(String::as_str) == Some("yes"),
        COMPOSE,
        line,
        "the national node does not create the mesh (TIERMESH_CREATE_MESH: \"yes\")",
    );
    problems.check(
        national_env.get("TIERMESH_ADDR").cloned() == addr_of(&national),
        COMPOSE,
        line,
        format!(
            "the national TIERMESH_ADDR {:?} is not its address {:?}",
            national_env.get("TIERMESH_ADDR"),
            addr_of(&national)
        ),
    );
    problems.check(
        national_env.get("TIERMESH_OFFICER_FILE") == Some(&officer_pub),
        COMPOSE,
        line,
        format!("the national TIERMESH_OFFICER_FILE is not bootstrap's OFFICER_PUB {officer_pub}"),
    );
    if let Some(shared) = shared_mounts.iter().next() {
        problems.check(
            boot_mounts.contains(&(shared.0.clone(), keys_dir.clone())),
            COMPOSE,
            at("KEYS_DIR"),
            format!(
                "bootstrap does not mount the key volume '{}' at KEYS_DIR {keys_dir}",
                shared.0
            ),
        );
    }
    // The officer's private key is on a volume of bootstrap only.
    let officer_key = boot_env
        .get("OFFICER_KEY")
        .cloned()
        .unwrap_or_else(|| "/data/officer.key".into());
    match boot_mounts
        .iter()
        .find(|(_, target)| Path::new(&officer_key).starts_with(target))
    {
        Some((source, _)) => {
            for name in &nodes {
                problems.check(
                    compose_mounts(service(name))
                        .iter()
                        .all(|(s, _)| s != source),
                    COMPOSE,
                    at(&format!("  {name}:")),
                    format!("{name} mounts '{source}', the volume of the officer's private key"),
                );
            }
        }
        None => problems.add(
            COMPOSE,
            at("OFFICER_KEY"),
            format!("OFFICER_KEY {officer_key} is on no volume of bootstrap"),
        ),
    }
    // Bootstrap runs the script baked into the image, against the national node.
    let entry: Vec<String> = list(&boot["entrypoint"])
        .iter()
        .filter_map(scalar)
        .collect();
    let copied_from = runtime
        .instructions
        .iter()
        .filter(|i| i.name == "COPY")
        .find(|i| entry.first().is_some_and(|e| i.args.ends_with(e.as_str())))
        .map(|i| i.args.split_whitespace().next().unwrap_or("").to_string());
    problems.check(
        copied_from.as_deref() == Some(BOOTSTRAP),
        COMPOSE,
        at("entrypoint:"),
        format!(
            "bootstrap's entrypoint {entry:?} is not {BOOTSTRAP} as the Containerfile copies it"
        ),
    );
    problems.check(
        boot_env.get("MESH_CONNECT").cloned() == addr_of(&national),
        COMPOSE,
        at("MESH_CONNECT"),
        format!(
            "MESH_CONNECT {:?} is not the national node's address {:?}",
            boot_env.get("MESH_CONNECT"),
            addr_of(&national)
        ),
    );
    let entries: Vec<Vec<String>> = boot_env
        .get("MESH_NODES")
        .map(|s| {
            s.split_whitespace()
                .map(|e| e.split(',').map(str::to_string).collect())
                .collect()
        })
        .unwrap_or_default();
    let mut registered = BTreeSet::new();
    for fields in &entries {
        let line = at(&fields.join(","));
        let [name, region, addr, role] = fields.as_slice() else {
            problems.add(
                COMPOSE,
                line,
                format!("MESH_NODES entry {fields:?} is not NAME,REGION,ADDR,ROLE"),
            );
            continue;
        };
        registered.insert(name.clone());
        problems.check(
            nodes.contains(name),
            COMPOSE,
            line,
            format!("MESH_NODES names {name}, which is no node service"),
        );
        let env = compose_env(service(name));
        problems.check(
            env.get("TIERMESH_REGION") == Some(region),
            COMPOSE,
            line,
            format!(
                "MESH_NODES registers {name} for {region}, its TIERMESH_REGION is {:?}",
                env.get("TIERMESH_REGION")
            ),
        );
        problems.check(
            addr_of(name).as_ref() == Some(addr),
            COMPOSE,
            line,
            format!(
                "MESH_NODES registers {name} at {addr}, it is at {:?}",
                addr_of(name)
            ),
        );
        let wanted = if tier_of(region) == "province" {
            "voter"
        } else {
            "learner"
        };
        problems.check(
            role == wanted,
            COMPOSE,
            line,
            format!(
                "MESH_NODES: {name} ({}) is a {role}, expected a {wanted}",
                tier_of(region)
            ),
        );
    }
    let others: BTreeSet<String> = nodes.iter().filter(|n| **n != national).cloned().collect();
    problems.check(
        registered == others,
        COMPOSE,
        at("MESH_NODES"),
        format!("MESH_NODES registers {registered:?}, the non-national nodes are {others:?}"),
    );
    problems.assert_none("compose.yaml");
}

// ---------------------------------------------------------------------------------------------
// The Kubernetes example.

#[test]
fn kubernetes_statefulset_is_unprivileged_probed_and_consistent() {
    let docs = yaml_docs(K8S);
    let mut problems = Problems::default();
    let kind = |doc: &Yaml| doc["kind"].as_str().unwrap_or("").to_string();
    let kinds: Vec<String> = docs.iter().map(kind).collect();
    let at = |needle: &str| line_of(K8S, needle);
    let Some(set) = docs.iter().find(|d| kind(d) == "StatefulSet") else {
        panic!("{K8S}: no StatefulSet (kinds: {kinds:?})");
    };
    let headless: Vec<&Yaml> = docs
        .iter()
        .filter(|d| kind(d) == "Service" && d["spec"]["clusterIP"].as_str() == Some("None"))
        .collect();
    let service_name = set["spec"]["serviceName"].as_str().unwrap_or("");
    let Some(headless) = headless
        .iter()
        .find(|s| s["metadata"]["name"].as_str() == Some(service_name))
    else {
        panic!("{K8S}: no headless Service (clusterIP: None) named serviceName {service_name:?}");
    };
    let spec = &set["spec"];
    let pod = &spec["template"]["spec"];
    let labels = spec["template"]["metadata"]["labels"]
        .as_hash()
        .cloned()
        .unwrap_or_default();
    let selects = |selector: &Yaml| {
        selector
            .as_hash()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
    };
    problems.check(
        selects(&spec["selector"]["matchLabels"]),
        K8S,
        at("matchLabels"),
        "the StatefulSet's selector does not match its pod labels",
    );
    problems.check(
        selects(&headless["spec"]["selector"]),
        K8S,
        at("clusterIP: None"),
        "the headless Service does not select the StatefulSet's pods",
    );
    problems.check(
        spec["replicas"].as_i64() == Some(1),
        K8S,
        at("replicas"),
        "replicas is not 1 (one node directory is one node)",
    );
    let containers = list(&pod["containers"]);
    problems.check(
        containers.len() == 1,
        K8S,
        at("containers:"),
        "expected one container",
    );
    let container = containers.first().cloned().unwrap_or(Yaml::Null);
    let image = containerfile().pop().expect("a runtime stage");
    let mut unused = Problems::default();
    let image_uid = image_uid(&image, &mut unused);

    // Non-root, read-only root, no capabilities.
    let security = |key: &str| -> Option<Yaml> {
        let own = &container["securityContext"][key];
        if own.is_badvalue() {
            let pod_level = &pod["securityContext"][key];
            (!pod_level.is_badvalue()).then(|| pod_level.clone())
        } else {
            Some(own.clone())
        }
    };
    problems.check(
        security("runAsUser").and_then(|u| u.as_i64()) == Some(10001) && image_uid == Some(10001),
        K8S,
        at("runAsUser"),
        format!("runAsUser is not 10001, the image's uid ({image_uid:?})"),
    );
    problems.check(
        security("runAsNonRoot").and_then(|v| v.as_bool()) == Some(true),
        K8S,
        at("runAsNonRoot"),
        "runAsNonRoot is not true",
    );
    let own = &container["securityContext"];
    problems.check(
        own["readOnlyRootFilesystem"].as_bool() == Some(true),
        K8S,
        at("readOnlyRootFilesystem"),
        "readOnlyRootFilesystem is not true",
    );
    problems.check(
        own["allowPrivilegeEscalation"].as_bool() == Some(false),
        K8S,
        at("allowPrivilegeEscalation"),
        "allowPrivilegeEscalation is not false",
    );
    problems.check(
        list(&own["capabilities"]["drop"])
            .iter()
            .any(|c| c.as_str() == Some("ALL")),
        K8S,
        at("capabilities"),
        "capabilities do not drop ALL",
    );
    // /data on the claim template; /tmp writable beside the read-only root.
    let mounts: Vec<(String, String)> = list(&container["volumeMounts"])
        .iter()
        .filter_map(|m| Some((scalar(&m["name"])?, scalar(&m["mountPath"])?)))
        .collect();
    let claims: Vec<String> = list(&spec["volumeClaimTemplates"])
        .iter()
        .filter_map(|c| scalar(&c["metadata"]["name"]))
        .collect();
    problems.check(
        mounts
            .iter()
            .any(|(name, path)| path == "/data" && claims.contains(name)),
        K8S,
        at("volumeClaimTemplates"),
        format!("/data is not on a volumeClaimTemplate (mounts {mounts:?}, claims {claims:?})"),
    );
    problems.check(
        mounts.iter().any(|(_, path)| path == "/tmp"),
        K8S,
        at("volumeMounts"),
        "no writable /tmp beside readOnlyRootFilesystem",
    );
    // The environment of the entrypoint, with the ConfigMaps it names.
    let mut env: BTreeMap<String, String> = image_env(&image);
    for item in list(&container["env"]) {
        if let (Some(k), Some(v)) = (scalar(&item["name"]), scalar(&item["value"])) {
            env.insert(k, v);
        }
    }
    for source in list(&container["envFrom"]) {
        let Some(name) = scalar(&source["configMapRef"]["name"]) else {
            continue;
        };
        match docs
            .iter()
            .find(|d| kind(d) == "ConfigMap" && d["metadata"]["name"].as_str() == Some(&name))
        {
            Some(map) => {
                for (k, v) in map["data"].as_hash().cloned().unwrap_or_default() {
                    if let (Some(k), Some(v)) = (scalar(&k), scalar(&v)) {
                        env.insert(k, v);
                    }
                }
            }
            None => problems.add(
                K8S,
                at(&name),
                format!("envFrom names ConfigMap {name}, not in this file"),
            ),
        }
    }
    problems.check(
        env.get("TIERMESH_REGION")
            .is_some_and(|r| tier_of(r) != "invalid"),
        K8S,
        at("TIERMESH_REGION"),
        "no valid TIERMESH_REGION for the entrypoint's first start",
    );
    problems.check(
        env.get("TIERMESH_DIR")
            .is_some_and(|d| Path::new(d).starts_with("/data")),
        K8S,
        at("TIERMESH_DIR"),
        format!("TIERMESH_DIR {:?} is not on /data", env.get("TIERMESH_DIR")),
    );
    let listen = env.get("TIERMESH_LISTEN").and_then(|a| port_of(a));
    let admin = env.get("TIERMESH_ADMIN").cloned().unwrap_or_default();
    problems.check(
        listen == Some(7400),
        K8S,
        at("TIERMESH_LISTEN"),
        format!("TIERMESH_LISTEN port {listen:?}, expected 7400"),
    );
    problems.check(
        port_of(&admin) == Some(9464) && host_of(&admin) == Some("0.0.0.0"),
        K8S,
        at("TIERMESH_ADMIN"),
        format!("TIERMESH_ADMIN {admin:?}: the probes need 0.0.0.0:9464"),
    );
    // Ports and probes.
    let ports: Vec<(String, i64, String)> = list(&container["ports"])
        .iter()
        .map(|p| {
            (
                scalar(&p["name"]).unwrap_or_default(),
                p["containerPort"].as_i64().unwrap_or(0),
                scalar(&p["protocol"]).unwrap_or_else(|| "TCP".into()),
            )
        })
        .collect();
    let resolve = |port: &Yaml| -> Option<(i64, String)> {
        match port {
            Yaml::Integer(n) => ports.iter().find(|p| p.1 == *n).map(|p| (p.1, p.2.clone())),
            Yaml::String(name) => ports
                .iter()
                .find(|p| &p.0 == name)
                .map(|p| (p.1, p.2.clone())),
            _ => None,
        }
    };
    for (number, protocol) in [(7400, "UDP"), (9464, "TCP")] {
        problems.check(
            ports.iter().any(|p| p.1 == number && p.2 == protocol),
            K8S,
            at("containerPort"),
            format!("no containerPort {number}/{protocol} (has {ports:?})"),
        );
    }
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &container[probe]["httpGet"];
        problems.check(
            get["path"].as_str() == Some("/healthz")
                && resolve(&get["port"]) == Some((9464, "TCP".to_string())),
            K8S,
            at(probe),
            format!("{probe} is not an httpGet of /healthz on the admin port 9464"),
        );
    }
    for (k, v) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "cpu"),
        ("limits", "memory"),
    ] {
        problems.check(
            !container["resources"][k][v].is_badvalue(),
            K8S,
            at("resources:"),
            format!("no resources.{k}.{v}"),
        );
    }
    for port in list(&headless["spec"]["ports"]) {
        problems.check(
            resolve(&port["targetPort"]).is_some_and(|(n, p)| {
                Some(n) == port["port"].as_i64() && Some(p) == scalar(&port["protocol"])
            }),
            K8S,
            at("targetPort"),
            format!(
                "the Service port {:?} does not match a container port",
                scalar(&port["name"])
            ),
        );
    }
    problems.assert_none("statefulset.yaml");
}

// ---------------------------------------------------------------------------------------------
// The scripts.

#[test]
fn scripts_pass_the_shell_syntax_check() {
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    for file in deploy_files() {
        let Ok(text) = std::fs::read_to_string(repo().join(&file)) else {
            continue;
        };
        let first = text.lines().next().unwrap_or("");
        let shells: &[&str] = if first.starts_with("#!") && first.ends_with("bash") {
            &["bash"]
        } else if first.starts_with("#!") && first.ends_with("/sh") {
            // POSIX: dash is stricter than bash, when the machine has it.
            &["sh", "dash"]
        } else if file.ends_with(".sh") {
            &["sh"]
        } else {
            continue;
        };
        for shell in shells {
            let Ok(output) = Command::new(shell)
                .arg("-n")
                .arg(repo().join(&file))
                .output()
            else {
                eprintln!("{shell} is not on this machine: {file} not checked with it");
                continue;
            };
            if !output.status.success() {
                problems.push(format!(
                    "{file}: {shell} -n: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            checked.push(format!("{shell} -n {file}"));
        }
    }
    eprintln!("{checked:?}");
    for file in [ENTRYPOINT, BOOTSTRAP] {
        assert!(
            checked.iter().any(|c| c.ends_with(file)),
            "{file} was not syntax-checked (no #!/bin/sh?)"
        );
        let first = read(file).lines().next().unwrap_or("").to_string();
        assert_eq!(first, "#!/bin/sh", "{file}:1: not a POSIX sh script");
        assert!(
            read(file).lines().any(|l| l.trim() == "set -eu"),
            "{file}: no `set -eu`"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn scripts_name_a_missing_variable() {
    let root = tempfile::tempdir().expect("tempdir");
    let run = |script: &str, vars: &[(&str, &str)]| {
        let mut command = Command::new("sh");
        command
            .arg(repo().join(script))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TIERMESH_BIN", BIN);
        for (k, v) in vars {
            command.env(k, v);
        }
        command.output().expect("run script")
    };
    let output = run(ENTRYPOINT, &[]);
    assert!(
        !output.status.success()
            && String::from_utf8_lossy(&output.stderr).contains("TIERMESH_DIR"),
        "{ENTRYPOINT} without TIERMESH_DIR:\n{}",
        text(&output)
    );
    let dir = root.path().join("node");
    let output = run(ENTRYPOINT, &[("TIERMESH_DIR", support::path(&dir))]);
    assert!(
        !output.status.success()
            && String::from_utf8_lossy(&output.stderr).contains("TIERMESH_REGION"),
        "{ENTRYPOINT} on a new directory without TIERMESH_REGION:\n{}",
        text(&output)
    );
    assert!(
        !dir.join("node.toml").exists(),
        "{ENTRYPOINT} made a node without a region"
    );
    let output = run(
        BOOTSTRAP,
        &[("MESH_NODES", "a,520000000000,127.0.0.1:1,voter")],
    );
    assert!(
        !output.status.success()
            && String::from_utf8_lossy(&output.stderr).contains("MESH_CONNECT"),
        "{BOOTSTRAP} without MESH_CONNECT:\n{}",
        text(&output)
    );
    let output = run(
        BOOTSTRAP,
        &[
            ("MESH_CONNECT", "127.0.0.1:1"),
            ("MESH_NODES", "a,520000000000,127.0.0.1:1,boss"),
        ],
    );
    assert!(
        !output.status.success()
            && String::from_utf8_lossy(&output.stderr)
                .contains("'a,520000000000,127.0.0.1:1,boss'"),
        "{BOOTSTRAP} with a MESH_NODES entry of no role:\n{}",
        text(&output)
    );
    let output = run(BOOTSTRAP, &[("MESH_CONNECT", "127.0.0.1:1")]);
    assert!(
        !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("MESH_NODES"),
        "{BOOTSTRAP} without MESH_NODES:\n{}",
        text(&output)
    );
}

/// The compose set-up without containers: three entrypoints and the bootstrap script, started
/// together as compose starts them, on 127.0.0.1, make a mesh of three nodes with the province
/// a voter; bootstrap runs again harmlessly; a node restarted through its entrypoint rejoins.
#[test]
fn entrypoint_and_bootstrap_make_a_three_tier_mesh() {
    let root = tempfile::tempdir().expect("tempdir");
    let shared = root.path().join("shared");
    let officer = root.path().join("officer").join("officer.key");
    struct Spec {
        name: &'static str,
        region: &'static str,
        addr: String,
        admin: String,
    }
    let spec = |name, region| Spec {
        name,
        region,
        addr: format!("127.0.0.1:{}", free_port()),
        admin: format!("127.0.0.1:{}", free_tcp_port()),
    };
    let specs = [
        spec("national", "000000000000"),
        spec("guizhou", "520000000000"),
        spec("nanming", "520102000000"),
    ];
    let national = &specs[0];
    let key_file = |name: &str| shared.join(format!("{name}.pub"));
    let entrypoint = |spec: &Spec| {
        let mut command = Command::new("sh");
        command
            .arg(repo().join(ENTRYPOINT))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("TIERMESH_BIN", BIN)
            .env("TIERMESH_WAIT", "60")
            .env("TIERMESH_DIR", root.path().join(spec.name).join("node"))
            .env("TIERMESH_REGION", spec.region)
            .env("TIERMESH_NAME", spec.name)
            .env("TIERMESH_LISTEN", &spec.addr)
            .env("TIERMESH_ADMIN", &spec.admin)
            .env("TIERMESH_PUBLISH_KEY", key_file(spec.name));
        if spec.name == "national" {
            command
                .env("TIERMESH_CREATE_MESH", "yes")
                .env("TIERMESH_OFFICER_FILE", key_file("officer"))
                .env("TIERMESH_ADDR", &spec.addr);
        } else {
            command
                .env("TIERMESH_PEER_KEY_FILE", key_file("national"))
                .env("TIERMESH_PEER_ADDR", &national.addr);
        }
        command
    };
    let nodes_list = format!(
        "{},{},{},voter {},{},{},learner",
        specs[1].name,
        specs[1].region,
        specs[1].addr,
        specs[2].name,
        specs[2].region,
        specs[2].addr
    );
    let bootstrap = || {
        let mut command = Command::new("sh");
        command
            .arg(repo().join(BOOTSTRAP))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TIERMESH_BIN", BIN)
            .env("BOOTSTRAP_WAIT", "60")
            .env("KEYS_DIR", &shared)
            .env("OFFICER_KEY", &officer)
            .env("MESH_CONNECT", &national.addr)
            .env("MESH_NODES", &nodes_list);
        command
    };

    // As compose starts them: all at once; each waits for the files it needs.
    let mut boot = Proc::spawn("bootstrap", bootstrap(), root.path());
    let mut running: Vec<Proc> = specs
        .iter()
        .map(|s| Proc::spawn(s.name, entrypoint(s), root.path()))
        .collect();
    for (node, spec) in running.iter_mut().zip(&specs) {
        node.wait_line("listening on", &format!("{ENTRYPOINT} for {}", spec.name));
    }
    let status = boot.wait_exit(DEADLINE * 2).unwrap_or_else(|| {
        panic!(
            "{BOOTSTRAP} did not finish within {:?}:\n{}",
            DEADLINE * 2,
            boot.log()
        )
    });
    assert!(
        status.success(),
        "{BOOTSTRAP} exited {status}:\n{}",
        boot.log()
    );

    // The entrypoints made the node directories and published their keys.
    let mut keys = BTreeMap::new();
    for spec in &specs {
        let toml = std::fs::read_to_string(root.path().join(spec.name).join("node/node.toml"))
            .unwrap_or_else(|e| panic!("{ENTRYPOINT}: no node.toml for {}: {e}", spec.name));
        let key = toml
            .lines()
            .find_map(|l| l.strip_prefix("public_key = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{}: node.toml has no public_key", spec.name))
            .to_string();
        let published = std::fs::read_to_string(key_file(spec.name)).unwrap_or_default();
        assert_eq!(
            published.trim(),
            key,
            "{ENTRYPOINT}: the key published for {} is not its own",
            spec.name
        );
        keys.insert(spec.name, key);
    }

    // The mesh, as the national node and as the province see it.
    let expected: BTreeSet<(String, String, String, String)> = specs
        .iter()
        .map(|s| {
            let role = if s.name == "nanming" {
                "learner"
            } else {
                "voter"
            };
            (
                keys[s.name].clone(),
                s.region.to_string(),
                s.addr.clone(),
                role.to_string(),
            )
        })
        .collect();
    for asked in [&specs[0], &specs[1]] {
        wait_for(
            &format!("mesh status at {} ({})", asked.name, asked.addr),
            || {
                let status = mesh_status(&officer, &asked.addr)?;
                let nodes: BTreeSet<(String, String, String, String)> = status["nodes"]
                    .as_array()
                    .map(|nodes| {
                        nodes
                            .iter()
                            .map(|n| {
                                let field = |k: &str| n[k].as_str().unwrap_or("").to_string();
                                (field("key"), field("region"), field("addr"), field("role"))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if nodes == expected {
                    Ok(true)
                } else {
                    Err(format!("nodes {nodes:?}, want {expected:?}"))
                }
            },
        );
    }
    // The admin ports answer /healthz, as the image's HEALTHCHECK and the probes ask.
    for spec in &specs {
        wait_for(
            &format!("/healthz of {} at {}", spec.name, spec.admin),
            || match http_get(&spec.admin, "/healthz") {
                Ok((200, body)) => Ok(body.starts_with("ok")),
                Ok((code, body)) => Err(format!("HTTP {code}: {body}")),
                Err(error) => Err(error),
            },
        );
    }

    // Bootstrap again (compose re-run): it changes nothing and succeeds.
    let mut again = Proc::spawn("bootstrap-again", bootstrap(), root.path());
    let status = again
        .wait_exit(DEADLINE)
        .unwrap_or_else(|| panic!("{BOOTSTRAP} run again did not finish:\n{}", again.log()));
    assert!(
        status.success(),
        "{BOOTSTRAP} run again exited {status}:\n{}",
        again.log()
    );

    // The county restarted through its entrypoint: no second init, same key, back in the mesh.
    let county = running.pop().expect("the county");
    county.signal("-TERM");
    let mut county = county;
    let status = county
        .wait_exit(DEADLINE)
        .unwrap_or_else(|| panic!("the county did not stop on SIGTERM:\n{}", county.log()));
    assert!(
        status.success(),
        "the county exited {status} on SIGTERM:\n{}",
        county.log()
    );
    let mut county = Proc::spawn("nanming-restarted", entrypoint(&specs[2]), root.path());
    county.wait_line("listening on", &format!("{ENTRYPOINT} restarting nanming"));
    assert!(
        !county.log().contains("created county node"),
        "{ENTRYPOINT} ran init again on an existing node directory:\n{}",
        county.log()
    );
    assert_eq!(
        std::fs::read_to_string(key_file("nanming"))
            .unwrap_or_default()
            .trim(),
        keys["nanming"],
        "the restarted county published another key"
    );
    wait_for("the restarted county reachable and caught up", || {
        let status = mesh_status(&officer, &national.addr)?;
        let commit = status["commit"].as_u64().unwrap_or(u64::MAX);
        Ok(status["nodes"].as_array().is_some_and(|nodes| {
            nodes.iter().any(|n| {
                n["key"].as_str() == Some(keys["nanming"].as_str())
                    && n["reachable"].as_bool() == Some(true)
                    && n["matched"].as_u64().is_some_and(|m| m >= commit)
            })
        }))
    });
    drop(running);
}

// ---------------------------------------------------------------------------------------------
// Processes.

/// A process this test started (in its own process group, with what it started); killed with
/// its group on drop.
struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut command: Command, root: &Path) -> Proc {
        let log = root.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        let mut copy = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("log file");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(copy, "{line}");
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            name: name.to_string(),
            child,
            lines,
            seen: Vec::new(),
            log,
        }
    }

    /// Waits for a stdout line starting with `prefix`.
    fn wait_line(&mut self, prefix: &str, what: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if self.seen.iter().any(|l| l.starts_with(prefix)) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "{what}: no '{prefix}' line within {DEADLINE:?} (exit {:?}):\n{}",
                    self.child.try_wait().ok().flatten(),
                    self.log()
                ),
            }
        }
    }

    /// Waits at most `limit` for the process to end.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {}", self.name);
    }

    /// What it wrote (stderr and stdout).
    fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines.len().saturating_sub(60);
        format!(
            "--- {} ({}):\n{}",
            self.name,
            self.log.display(),
            lines[tail..].join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The whole group: a script's children (sleep, tiermesh) too.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text_of(status: &ExitStatus, stdout: &[u8], stderr: &[u8]) -> String {
    format!(
        "{status}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr)
    )
}

/// Polls `condition` until it holds, at most DEADLINE.
fn wait_for(what: &str, mut condition: impl FnMut() -> Result<bool, String>) {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < DEADLINE {
        match condition() {
            Ok(true) => return,
            Ok(false) => last = "not yet".into(),
            Err(error) => last = error,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {DEADLINE:?}; last: {last}");
}

fn mesh_status(key: &Path, addr: &str) -> Result<Value, String> {
    let output = support::tiermesh(&[
        "mesh",
        "status",
        "--key",
        support::path(key),
        "--connect",
        addr,
        "--format",
        "json",
    ]);
    if !output.status.success() {
        return Err(text(&output));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())
}

/// A port free for both UDP (support's range) and TCP.
fn free_tcp_port() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port");
}

/// `GET path` over HTTP/1.0: (status code, body).
fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read {addr}: {e}"))?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not HTTP: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((code, body))
}
