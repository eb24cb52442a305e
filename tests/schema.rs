//! The results schema: every kind writes exactly the columns it declares
//! (`Kind::columns`), and every column the notebooks read is one of them.

mod common;

use common::ok;
use initlab::experiment::Kind;
use std::collections::BTreeSet;
use std::str::FromStr;

/// One small experiment of every kind, with the options that add columns
/// (variance's `kurtosis`, train's `eval_steps`).
const EVERY_KIND: &str = "name: schema
seed: 1
experiments:
  - name: th
    kind: theory
    width: 10
    depth: 3
  - name: ins
    kind: input_stats
    dataset: synthetic-tiny
    samples: 2000
  - name: mc
    kind: kurtosis_mc
    init: he_normal
    width: 4
    depth: 2
    networks: 4
    samples: 16
  - name: var
    kind: variance
    dataset: synthetic-tiny
    init: he_normal
    width: 4
    depth: 2
    networks: 2
    kurtosis: true
  - name: tr
    kind: train
    dataset: synthetic-tiny
    init: he_normal
    width: 4
    depth: 2
    steps: 4
    batch_size: 8
    eval_steps: [2]
";

#[test]
fn every_kind_writes_exactly_its_declared_columns() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::run_config(dir.path(), "schema", EVERY_KIND, &[]);
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(out.join("results")).unwrap() {
        let folder = entry.unwrap().path();
        let df = initlab::results::read_all(&folder).unwrap();
        let shard = std::fs::read_dir(&folder).unwrap().next().unwrap().unwrap();
        let name = shard.file_name().to_string_lossy().into_owned();
        let kind = Kind::from_str(name.split('-').next().unwrap()).unwrap();
        let written: Vec<&str> = df.get_column_names().iter().map(|c| c.as_str()).collect();
        assert_eq!(written, kind.columns(), "columns of {kind} ({name})");
        seen.insert(kind);
    }
    let all: BTreeSet<Kind> = <Kind as strum::VariantArray>::VARIANTS
        .iter()
        .copied()
        .collect();
    assert_eq!(seen, all, "the config runs every kind");
}

/// A `load_runs(...)` call of a notebook: its kind and the columns it names.
struct Load {
    notebook: String,
    kind: String,
    columns: Vec<String>,
}

/// The text of `s` from an opening bracket at 0 to its matching close.
fn balanced(s: &str) -> &str {
    let (open, close) = match s.as_bytes()[0] {
        b'(' => (b'(', b')'),
        _ => (b'[', b']'),
    };
    let mut depth = 0;
    for (i, b) in s.bytes().enumerate() {
        if b == open {
            depth += 1;
        } else if b == close {
            depth -= 1;
            if depth == 0 {
                return &s[..=i];
            }
        }
    }
    panic!("unbalanced brackets in {s}");
}

/// The string literals of a Python list of them; panics on anything else, so
/// that a computed column name cannot slip past the check.
fn literals(list: &str) -> Vec<String> {
    let inner = &list[1..list.len() - 1];
    let mut out = Vec::new();
    for item in inner.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let name = item
            .strip_prefix('"')
            .and_then(|i| i.strip_suffix('"'))
            .unwrap_or_else(|| {
                panic!("write the column names of load_runs literally, found `{item}`")
            });
        out.push(name.to_string());
    }
    out
}

fn loads() -> Vec<Load> {
    let mut out = Vec::new();
    let mut notebooks: Vec<_> = std::fs::read_dir("notebooks")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ipynb"))
        .collect();
    notebooks.sort();
    for path in notebooks {
        let nb: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for cell in nb["cells"].as_array().unwrap() {
            if cell["cell_type"] != "code" {
                continue;
            }
            let code: String = (cell["source"].as_array().unwrap().iter())
                .map(|l| l.as_str().unwrap())
                .collect();
            for (at, _) in code.match_indices("load_runs(") {
                if code[..at].ends_with("def ") {
                    continue;
                }
                let call = balanced(&code[at + "load_runs".len()..]);
                let kind = call
                    .split("kind=\"")
                    .nth(1)
                    .and_then(|k| k.split('"').next())
                    .unwrap_or_else(|| {
                        panic!("{}: load_runs without kind=: {call}", path.display())
                    });
                let mut columns = Vec::new();
                for key in ["required=", "optional="] {
                    if let Some(i) = call.find(key) {
                        columns.extend(literals(balanced(&call[i + key.len()..])));
                    }
                }
                out.push(Load {
                    notebook: path.display().to_string(),
                    kind: kind.to_string(),
                    columns,
                });
            }
        }
    }
    out
}

#[test]
fn notebooks_read_only_declared_columns() {
    let loads = loads();
    // fig1, fig2, fig3 and the theory notebook's two tables
    assert!(loads.len() >= 5, "found {} load_runs calls", loads.len());
    for load in &loads {
        let kind = Kind::from_str(&load.kind)
            .unwrap_or_else(|_| panic!("{}: unknown kind `{}`", load.notebook, load.kind));
        assert!(!load.columns.is_empty(), "{}: no columns", load.notebook);
        for column in &load.columns {
            assert!(
                kind.columns().contains(&column.as_str()),
                "{} reads column `{column}`, which kind {kind} does not write (its columns: {})",
                load.notebook,
                kind.columns().join(", ")
            );
        }
    }
}

#[test]
fn the_notebook_check_sees_a_column_that_is_not_declared() {
    let call = "(\"fig2\", kind=\"variance\", required=[\"emp_var\", \"no_such_column\"])";
    let at = call.find("required=").unwrap() + "required=".len();
    let columns = literals(balanced(&call[at..]));
    assert_eq!(columns, ["emp_var", "no_such_column"]);
    assert!(!Kind::Variance.columns().contains(&"no_such_column"));
}

#[test]
fn the_columns_command_lists_each_kinds_declared_columns() {
    let out = ok(&["columns", "train", "variance"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            format!("train: {}", Kind::Train.columns().join(", ")),
            format!("variance: {}", Kind::Variance.columns().join(", ")),
        ]
    );
    assert_eq!(ok(&["columns"]).lines().count(), Kind::all().len());
    let e = common::fails(&["columns", "trian"]);
    assert!(
        e.contains("invalid value 'trian'") && e.contains("kurtosis_mc"),
        "{e}"
    );
}

/// The backticked names in the first column of the markdown table under `heading`.
fn first_column_names(doc: &str, heading: &str) -> BTreeSet<String> {
    let section = doc
        .split(heading)
        .nth(1)
        .expect("the heading is in the page");
    let table = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'));
    table
        .skip(2)
        .flat_map(|row| {
            let first = row.split('|').nth(1).unwrap_or("");
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_config_docs_describe_every_kind_and_initialiser() {
    let doc = std::fs::read_to_string("docs/configs.md").unwrap();
    let kinds: BTreeSet<String> = Kind::names().into_iter().map(String::from).collect();
    assert_eq!(first_column_names(&doc, "## Kinds and their keys"), kinds);
    assert_eq!(first_column_names(&doc, "## What each kind writes"), kinds);
    let inits: BTreeSet<String> = initlab::init::InitName::names()
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(first_column_names(&doc, "## Initialisers"), inits);
}
