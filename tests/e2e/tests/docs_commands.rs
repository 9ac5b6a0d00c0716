//! Every shell command shown in README.md and docs/*.md is accounted for. Each ```sh block is
//! preceded by a marker:
//!
//! - `<!-- command: run -->`: executed here (bash, repository root, the workspace's binaries on
//!   `PATH`); when a ```text block follows, each of its lines must appear in the output (`...`
//!   stands for any text within a line).
//! - `<!-- command: tested-by FILE... (why) -->`: a test runs the same command; the files exist.
//! - `<!-- command: not-run-here (why) -->`: needs what this machine lacks (a cluster, a Docker
//!   engine, a token); checked statically: every repository path it names exists, and every
//!   manifest it applies parses.
use aurelis_devstack::paths;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Block {
    file: String,
    marker: String,
    commands: String,
    expected: Option<String>,
}

fn doc_files() -> Vec<PathBuf> {
    let root = paths::repo_root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The ```sh blocks of `text`, each with the marker before it and a ```text block after it.
fn blocks(file: &str, text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() != "```sh" {
            i += 1;
            continue;
        }
        let marker = lines[..i].iter().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string());
        let end = (i + 1..lines.len()).find(|j| lines[*j].starts_with("```")).unwrap_or(lines.len());
        let commands = lines[i + 1..end].join("\n");
        let next = (end + 1..lines.len()).find(|j| !lines[*j].trim().is_empty());
        let expected = next.filter(|j| lines[*j].trim_end() == "```text").map(|j| {
            let close = (j + 1..lines.len()).find(|k| lines[*k].starts_with("```")).unwrap_or(lines.len());
            lines[j + 1..close].join("\n")
        });
        found.push(Block { file: file.to_string(), marker: marker.unwrap_or_default(), commands, expected });
        i = end + 1;
    }
    found
}

fn all_blocks() -> Vec<Block> {
    let root = paths::repo_root();
    doc_files()
        .iter()
        .flat_map(|f| {
            let name = f.strip_prefix(&root).unwrap_or(f).display().to_string();
            blocks(&name, &std::fs::read_to_string(f).unwrap())
        })
        .collect()
}

/// `line` matches `pattern`, where `...` stands for any text.
fn matches(line: &str, pattern: &str) -> bool {
    let mut rest = line;
    for (n, part) in pattern.split("...").enumerate() {
        match rest.find(part) {
            Some(at) if n > 0 || at == 0 => rest = &rest[at + part.len()..],
            _ => return false,
        }
    }
    true
}

fn workspace_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    deps.parent().unwrap().to_path_buf()
}

fn run(block: &Block) {
    let path = format!("{}:{}", workspace_bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&block.commands)
        .current_dir(paths::repo_root())
        .env("PATH", path)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{}: `{}` failed:\n{text}", block.file, block.commands);
    for expected in block.expected.iter().flat_map(|e| e.lines()).filter(|l| !l.trim().is_empty()) {
        assert!(text.lines().any(|l| matches(l, expected)), "{}: expected `{expected}` in:\n{text}", block.file);
    }
}

/// Shipped files a command names (`deploy/…`, `envoy/…`, `control-plane/models/…`, `docs/…`);
/// paths a command creates (`pki/…`) are not among them.
fn repo_paths(commands: &str) -> Vec<String> {
    commands
        .split(|c: char| c.is_whitespace() || c == '=' || c == '"' || c == '\'')
        .filter(|t| ["deploy/", "envoy/aurelis-", "control-plane/models/", "docs/"].iter().any(|p| t.starts_with(p)))
        .map(|t| t.trim_end_matches([',', ';', ')']).to_string())
        .collect()
}

fn check_statically(block: &Block) {
    let root = paths::repo_root();
    for path in repo_paths(&block.commands) {
        let full = root.join(&path);
        assert!(full.exists(), "{}: `{path}` does not exist", block.file);
        if full.is_file() && path.ends_with(".yaml") {
            let text = std::fs::read_to_string(&full).unwrap();
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{}: {path} does not parse: {e}", block.file));
            }
        }
    }
}

#[test]
fn every_shell_block_is_run_tested_elsewhere_or_marked() {
    let blocks = all_blocks();
    assert!(blocks.len() >= 10, "found only {} blocks", blocks.len());
    let mut ran = 0;
    for block in &blocks {
        let marker = block.marker.as_str();
        if marker == "<!-- command: run -->" {
            run(block);
            ran += 1;
        } else if let Some(rest) = marker.strip_prefix("<!-- command: tested-by ") {
            let files = rest.split(" (").next().unwrap_or_default().trim_end_matches(" -->");
            for file in files.split_whitespace() {
                assert!(Path::new(&paths::repo_root().join(file)).exists(), "{}: {file} does not exist", block.file);
            }
            check_statically(block);
        } else if marker.starts_with("<!-- command: not-run-here (") {
            check_statically(block);
        } else {
            panic!(
                "{}: a ```sh block without a command marker:\n{}\n(marker line: {marker:?})",
                block.file, block.commands
            );
        }
    }
    assert!(ran >= 2, "commands that run: {ran}");
}

#[test]
fn expected_output_patterns_match_as_documented() {
    assert!(matches("target/oci/wasm sha256:abc  (x, 12 bytes)", "target/oci/wasm sha256:...  (x, ... bytes)"));
    assert!(!matches("other target/oci/wasm", "target/oci/wasm..."));
}
