//! Golden values of the seed derivation: a fixed config's unit ids, and the first
//! weights of members 0 and 999 of a variance unit's networks. Any change to the
//! unit-key encoding (or to what it is fed) changes these, and so every network
//! and every unit id: such a change needs a new `seed::KEY_VERSION`, which makes
//! older run directories refuse to resume (docs/seeds.md).

use initlab::config::Config;
use initlab::experiment::variance::VariancePoint;
use initlab::init::{initialize, member_streams};

/// Every kind, and initialisers with hyper-parameters of each type.
const CONFIG: &str = "
name: golden
seed: 11
experiments:
  - name: t
    kind: theory
    widths: [3, 5]
    slope: 0.25
  - name: s
    kind: input_stats
    dataset: synthetic-tiny
    samples: 1000
    weights: uniform
  - name: v
    kind: variance
    dataset: synthetic-tiny
    init: [he_normal, {name: orthogonal, gain: 1.5}, {name: lsuv, tolerance: 0.05}]
    width: 4
    depth: 2
    networks: 1000
    block: 500
  - name: tr
    kind: train
    dataset: synthetic-tiny
    init: {name: metainit, steps: 3}
    width: 4
    depth: 1
    repeats: 2
    steps: 5
    eval_steps: [2]
  - name: k
    kind: kurtosis_mc
    init: he_uniform
    width: 4
    depth: 2
    networks: 10
";

#[test]
fn unit_ids_of_a_fixed_config_are_pinned() {
    let config = Config::parse(CONFIG, "golden").unwrap();
    let experiments = initlab::experiment::build(&config).unwrap();
    let ids: Vec<String> = experiments
        .iter()
        .flat_map(|e| e.jobs())
        .flat_map(|j| j.units)
        .map(|u| u.id)
        .collect();
    // Also computed from docs/seeds.md's rules by an independent Python script.
    let want = [
        "336bc34e1da7762f", // theory
        "f7319eb9878e0de1", // input_stats
        "6c73836ab43cec25", // variance he_normal, networks 0..500
        "771bb449dd083617", // variance he_normal, networks 500..1000
        "bab143f19b17305a", // variance orthogonal gain 1.5, 0..500
        "6b1fdabae97cee61", // variance orthogonal gain 1.5, 500..1000
        "938075cf3278f7f1", // variance lsuv tolerance 0.05, 0..500
        "37543e6a634403cd", // variance lsuv tolerance 0.05, 500..1000
        "3a5d83463b2dc924", // train metainit, repeat 0
        "caec0ab1c3b15977", // train metainit, repeat 1
        "b74f838bdacebe32", // kurtosis_mc
    ];
    assert_eq!(ids, want);
}

/// The first four weights (of layer 0, row 0) of member `index` of the he_normal
/// networks of experiment `v` above, under the config's seed 11.
fn first_weights(index: usize) -> Vec<f32> {
    let point: VariancePoint = serde_yaml::from_str(
        "dataset: synthetic-tiny\ninit: he_normal\nwidth: 4\ndepth: 2\nnetworks: 1000\nblock: 500\n",
    )
    .unwrap();
    let family = point.family_key().unwrap();
    let mut streams = member_streams(11, &family, index, 1);
    let (net, _) = initialize(&point.init, &point.arch(), &mut streams, None).unwrap();
    let layer0 = net.weights[0].flatten(0, -1); // [1 * 4 * 16]
    Vec::<f32>::try_from(layer0.narrow(0, 0, 4)).unwrap()
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!(((g - w) / w).abs() < 1e-6, "got {got:?}, want {want:?}");
    }
}

#[test]
fn first_weights_of_members_0_and_999_are_pinned() {
    // He normal on 16 inputs: standard deviation √(2/16) ≈ 0.354.
    assert_close(
        &first_weights(0),
        &[-0.5195264, -0.060008112, 0.232437, 0.13218027],
    );
    assert_close(
        &first_weights(999),
        &[-0.14635146, 0.12426956, -0.57330716, 0.5181194],
    );
}
