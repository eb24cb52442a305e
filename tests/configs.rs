//! Every config shipped in configs/ is valid, and the reproduction embeds them:
//! the quick scale runs configs/quick/ and configs/beyond/, the paper scale
//! configs/paper/.

use initlab::config::Config;
use initlab::scales as reproduce;

/// How many work units a config's experiments make.
fn work_units(config: &Config) -> usize {
    initlab::experiment::build(config)
        .unwrap()
        .iter()
        .flat_map(|e| e.jobs())
        .map(|j| j.units.len())
        .sum()
}

#[test]
fn shipped_configs_validate_and_are_embedded() {
    // The quick scale runs the beyond-the-paper studies too.
    for (scale, folders) in [
        ("quick", &["quick", "beyond"][..]),
        ("paper", &["paper"][..]),
    ] {
        let mut files: Vec<(String, std::path::PathBuf)> = Vec::new();
        for folder in folders {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("configs")
                .join(folder);
            for e in std::fs::read_dir(&dir).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                if name.ends_with(".yaml") {
                    files.push((name.clone(), dir.join(name)));
                }
            }
        }
        files.sort();
        for (f, path) in &files {
            let config = Config::load(path).unwrap();
            let experiments = initlab::experiment::build(&config)
                .unwrap_or_else(|e| panic!("{scale}/{f}: {e:#}"));
            assert!(
                experiments.iter().map(|e| e.jobs().len()).sum::<usize>() > 0,
                "{scale}/{f} has no work"
            );
        }
        let embedded = if scale == "quick" {
            reproduce::QUICK
        } else {
            reproduce::PAPER
        };
        let mut names: Vec<String> = embedded.iter().map(|(f, _)| f.to_string()).collect();
        names.sort();
        let on_disk: Vec<String> = files.iter().map(|(f, _)| f.clone()).collect();
        assert_eq!(
            names, on_disk,
            "reproduce --scale {scale} must run every config of configs/{folders:?}"
        );
        for (f, text) in embedded {
            let path = &files.iter().find(|(n, _)| n == f).unwrap().1;
            assert_eq!(
                *text,
                std::fs::read_to_string(path).unwrap(),
                "{f} embedded as it is on disk"
            );
        }
    }
    // studies beyond the paper validate as well
    let beyond = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/beyond");
    let mut count = 0;
    for entry in std::fs::read_dir(&beyond).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let config = Config::load(&path).unwrap();
            let experiments = initlab::experiment::build(&config)
                .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            assert!(
                experiments.iter().map(|e| e.jobs().len()).sum::<usize>() > 0,
                "{} has no work",
                path.display()
            );
            count += 1;
        }
    }
    assert!(count > 0, "configs/beyond holds no config");
    // without Fashion-MNIST the quick scale falls back to synthetic data of its shape
    for c in reproduce::configs(
        reproduce::Scale::Quick,
        reproduce::Data::SyntheticForFashionMnist,
    )
    .unwrap()
    {
        assert!(!c.source_text.contains("fashion-mnist"), "{}", c.name);
    }
    // the paper's settings, as PROTOCOL.md states them
    let paper = reproduce::configs(reproduce::Scale::Paper, reproduce::Data::AsWritten).unwrap();
    let fig2 = paper.iter().find(|c| c.name == "fig2-cifar10").unwrap();
    assert_eq!(
        work_units(fig2),
        5 * 10_000 / 250 + 1_000 / 250,
        "10,000 networks per random initialiser, 1,000 MetaInit, in blocks of 250"
    );
    let fig1 = paper.iter().find(|c| c.name == "fig1-mnist").unwrap();
    assert_eq!(work_units(fig1), 330);
    let fig3 = paper.iter().find(|c| c.name == "fig3-width200").unwrap();
    assert_eq!(work_units(fig3), 11 * 7 * 5);
}

#[test]
fn the_authors_normalization_reaches_every_experiment_that_reads_a_dataset() {
    let mut with_data = 0;
    for mut config in
        reproduce::configs(reproduce::Scale::Paper, reproduce::Data::AsWritten).unwrap()
    {
        reproduce::set_normalization(&mut config, initlab::data::Normalization::Authors).unwrap();
        assert!(
            config.source_text.contains("--normalization authors"),
            "{}",
            config.name
        );
        for experiment in initlab::experiment::build(&config).unwrap() {
            let resolved = experiment.resolved();
            let points = resolved.as_sequence().expect("resolved points");
            for point in points {
                if point.get("dataset").is_some() {
                    with_data += 1;
                    assert_eq!(
                        point["normalization"].as_str(),
                        Some("authors"),
                        "{} / {}",
                        config.name,
                        experiment.name()
                    );
                }
            }
        }
    }
    assert!(with_data > 0);
}
