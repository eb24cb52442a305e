//! The ensemble and its initialisers: member i of any ensemble is the network a
//! K = 1 ensemble builds; weight statistics within their sampling error; the exact
//! structure of orthogonal, GSM, ZerO and identity; MetaInit; Proposition 1 in
//! simulation; the fused statistics kernel against plain libtorch; ensemble
//! training against training each member alone.

use initlab::experiment::variance::{layer_moments_tch, unit0_moments_fused};
use initlab::init::dist::WeightDist;
use initlab::init::{Initializer, LsuvParams, MetaInitParams, initialize, member_streams};
use initlab::net::{Arch, Ensemble, Norm};
use initlab::seed::Key;
use tch::{Kind, Tensor};

fn arch(input: usize, width: usize, depth: usize, slope: f64) -> Arch {
    Arch {
        input,
        width,
        depth,
        classes: 10,
        slope,
        norm: Norm::None,
    }
}

/// The synthetic-tiny dataset, standardised.
fn synthetic_tiny() -> initlab::data::Dataset {
    initlab::data::Dataset::load(
        initlab::data::DatasetName::parse("synthetic-tiny").unwrap(),
        initlab::data::Normalization::Standard,
        &initlab::data::DataSource::new(None),
    )
    .unwrap()
}

fn build(init: &Initializer, a: &Arch, first: usize, k: usize, data: Option<&Tensor>) -> Ensemble {
    let mut streams = member_streams(7, &Key::new("test-family"), first, k);
    initialize(init, a, &mut streams, data).unwrap().0
}

fn all_inits() -> Vec<Initializer> {
    // every closed-form scheme by name (the kurtosis knobs with a value of their
    // hyper-parameter), and LSUV with a small batch (MetaInit has its own test)
    let mut v: Vec<Initializer> = initlab::init::InitName::names()
        .into_iter()
        .filter(|n| !matches!(*n, "metainit" | "lsuv"))
        .map(|n| match n {
            "he_gennorm" => "{name: he_gennorm, beta: 0.7}".to_string(),
            "he_sparse" => "{name: he_sparse, p: 0.3}".to_string(),
            other => other.to_string(),
        })
        .map(|n| serde_yaml::from_str(&n).unwrap())
        .collect();
    v.push(Initializer::Lsuv(LsuvParams {
        batch: 64,
        ..Default::default()
    }));
    v
}

#[test]
fn member_i_is_the_same_network_whatever_the_ensemble() {
    let a = arch(12, 6, 4, 0.0);
    let data = Tensor::randn([200, 12], (Kind::Float, tch::Device::Cpu));
    let x = Tensor::randn([33, 12], (Kind::Float, tch::Device::Cpu));
    for init in all_inits() {
        let big = build(&init, &a, 0, 5, Some(&data));
        for i in [0usize, 3] {
            let alone = build(&init, &a, i, 1, Some(&data));
            let member = big.member(i);
            for (l, (w1, w2)) in member.weights.iter().zip(&alone.weights).enumerate() {
                let same = if matches!(init, Initializer::Lsuv(_)) {
                    w1.allclose(w2, 1e-5, 1e-6, false)
                } else {
                    w1.equal(w2)
                };
                assert!(same, "{}: layer {l} of member {i} differs", init.name());
            }
            let y1 = member.forward_shared(&x, &mut |_, _| {});
            let y2 = big
                .forward_shared(&x, &mut |_, _| {})
                .narrow(0, i as i64, 1);
            assert!(
                y1.allclose(&y2, 1e-5, 1e-5, false),
                "{}: outputs differ",
                init.name()
            );
        }
    }
}

/// Sample kurtosis of a flat sample and its standard error (delta method).
fn kurtosis_with_se(v: &[f64]) -> (f64, f64, f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let c: Vec<f64> = v.iter().map(|x| x - m).collect();
    let m2 = c.iter().map(|x| x * x).sum::<f64>() / n;
    let m4 = c.iter().map(|x| x.powi(4)).sum::<f64>() / n;
    let m6 = c.iter().map(|x| x.powi(6)).sum::<f64>() / n;
    let m8 = c.iter().map(|x| x.powi(8)).sum::<f64>() / n;
    let k = m4 / (m2 * m2);
    // Var of m2 and m4 and their covariance, propagated to m4/m2².
    let var_m2 = (m4 - m2 * m2) / n;
    let var_m4 = (m8 - m4 * m4) / n;
    let cov = (m6 - m2 * m4) / n;
    let (g2, g4) = (-2.0 * m4 / m2.powi(3), 1.0 / (m2 * m2));
    let se_k = (g2 * g2 * var_m2 + g4 * g4 * var_m4 + 2.0 * g2 * g4 * cov).sqrt();
    (m2, var_m2.sqrt(), k, se_k)
}

/// One layer's weights of every member, flattened, in f64.
fn weights_of(net: &Ensemble, layer: usize) -> Vec<f64> {
    Vec::try_from(net.weights[layer].to_kind(Kind::Double).reshape([-1])).unwrap()
}

#[test]
fn he_weights_have_their_variance_and_kurtosis() {
    for slope in [0.0, 0.5] {
        let a = arch(40, 50, 2, slope);
        for (dist, kappa) in [
            (WeightDist::Normal, 3.0),
            (WeightDist::Uniform, 1.8),
            (WeightDist::Bernoulli, 1.0),
        ] {
            let net = build(&Initializer::He(dist), &a, 0, 200, None);
            let v = weights_of(&net, 1); // [200, 50, 50]
            let (var, var_se, k, k_se) = kurtosis_with_se(&v);
            let expected = 2.0 / (50.0 * (1.0 + slope * slope));
            assert!(
                (var - expected).abs() < 4.0 * var_se,
                "{dist:?} slope {slope}: variance {var} ± {var_se}, expected {expected}"
            );
            if dist == WeightDist::Bernoulli {
                // ±s exactly: every magnitude equal, so the kurtosis about 0 is exactly 1
                let s = expected.sqrt();
                assert!(
                    v.iter().all(|w| (w.abs() - s).abs() < 1e-6 * s),
                    "Bernoulli weights are ±{s}"
                );
                let _ = (k, k_se);
            } else {
                assert!(
                    (k - kappa).abs() < 4.0 * k_se,
                    "{dist:?}: kurtosis {k} ± {k_se}, expected {kappa}"
                );
            }
        }
    }
    // Glorot and LeCun scale as stated: first layer 40 → 50.
    for (init, expected, name) in [
        (Initializer::GlorotNormal, 2.0 / 90.0, "glorot"),
        (Initializer::LecunNormal, 1.0 / 40.0, "lecun"),
    ] {
        let net = build(&init, &arch(40, 50, 2, 0.0), 0, 200, None);
        let (var, se, _, _) = kurtosis_with_se(&weights_of(&net, 0));
        assert!((var - expected).abs() < 4.0 * se, "{name} variance {var}");
    }
}

#[test]
fn the_kurtosis_knobs_give_he_variance_and_the_kurtosis_they_promise() {
    // 500,000 weights per law (200 members of a 50 × 50 layer). The sample
    // kurtosis's standard error comes from the sample's own 6th and 8th moments
    // (delta method); 4 of them leave a correct law failing once in ~16,000
    // checks, while a law off by a few percent in κ_w (SE 0.1–1% of κ_w here) fails.
    for slope in [0.0, 0.5] {
        let a = arch(40, 50, 2, slope);
        let expected_var = 2.0 / (50.0 * (1.0 + slope * slope));
        let laws: Vec<(String, f64)> = [1.0, 2.0, 4.0, 8.0]
            .iter()
            .map(|beta| {
                // Γ(5/β)Γ(1/β)/Γ(3/β)² at the four shapes, worked by hand:
                // 6 (Laplace), 3 (normal), Γ(1/4)²/(4Γ(3/4)²), and at β = 8
                // Γ(5/8)Γ(1/8)/Γ(3/8)² from tables of Γ.
                let kappa = match *beta as i64 {
                    1 => 6.0,
                    2 => 3.0,
                    4 => 2.188_439_615,
                    _ => 1.434_518_848_1 * 7.533_941_598_8 / (2.370_436_184_4f64).powi(2),
                };
                (format!("{{name: he_gennorm, beta: {beta}}}"), kappa)
            })
            .chain(
                [0.1, 0.5, 1.0]
                    .iter()
                    .map(|p| (format!("{{name: he_sparse, p: {p}}}"), 3.0 / p)),
            )
            .collect();
        for (yaml, kappa) in &laws {
            let init: Initializer = serde_yaml::from_str(yaml).unwrap();
            assert!(
                (init.weight_kurtosis().unwrap() - kappa).abs() < 1e-8 * kappa,
                "{yaml}"
            );
            let net = build(&init, &a, 0, 200, None);
            let v = weights_of(&net, 1); // [200, 50, 50]
            let (var, var_se, k, k_se) = kurtosis_with_se(&v);
            assert!(
                (var - expected_var).abs() < 4.0 * var_se,
                "{yaml} slope {slope}: variance {var} ± {var_se}, expected {expected_var}"
            );
            assert!(
                (k - kappa).abs() < 4.0 * k_se,
                "{yaml} slope {slope}: kurtosis {k} ± {k_se}, expected {kappa}"
            );
            if let Some(p) = yaml.strip_prefix("{name: he_sparse, p: ") {
                // the share of exact zeros is 1 − p, within 4 binomial standard errors
                let p: f64 = p.trim_end_matches('}').parse().unwrap();
                let n = v.len() as f64;
                let zeros = v.iter().filter(|w| **w == 0.0).count() as f64 / n;
                let se = (p * (1.0 - p) / n).sqrt();
                assert!(
                    (zeros - (1.0 - p)).abs() <= 4.0 * se,
                    "{yaml}: {zeros} of the weights are 0, expected {} ± {se}",
                    1.0 - p
                );
            }
        }
    }
    // The seed fixes the draws: the first weights (member 0, first row of layer
    // 0) are pinned here; another value of the knob gives others.
    let draw = |yaml: &str| {
        let init: Initializer = serde_yaml::from_str(yaml).unwrap();
        build(&init, &arch(8, 6, 2, 0.0), 0, 3, None).weights
    };
    for (yaml, pinned) in [
        (
            "{name: he_gennorm, beta: 0.5}",
            [
                -0.0020695997,
                0.013267645,
                0.4373697,
                -0.03506161,
                0.4238571,
                2.134967,
                0.11080385,
                -0.023868827,
            ],
        ),
        (
            "{name: he_sparse, p: 0.2}",
            [0.0, -0.34403512, 0.0, 1.0934811, 0.0, 0.0, 0.0, 0.0],
        ),
    ] {
        let first: Vec<f32> = Vec::try_from(draw(yaml)[0].flatten(0, -1).narrow(0, 0, 8)).unwrap();
        for (got, want) in first.iter().zip(pinned) {
            assert!(
                (got - want).abs() <= 1e-6 * want.abs(),
                "{yaml}: first weights {first:?}, pinned {pinned:?}"
            );
        }
    }
    assert!(
        !draw("{name: he_gennorm, beta: 1}")[0].equal(&draw("{name: he_gennorm, beta: 1.5}")[0])
    );
    assert!(!draw("{name: he_sparse, p: 0.5}")[0].equal(&draw("{name: he_sparse, p: 0.4}")[0]));
}

#[test]
fn orthogonal_gsm_zero_identity_have_their_structure() {
    // Orthogonal: W Wᵀ = 2 I for square layers (gain √2); rows or columns orthogonal otherwise.
    let a = arch(30, 8, 3, 0.0);
    let o = build(&serde_yaml::from_str("orthogonal").unwrap(), &a, 0, 6, None);
    let eye = |n: i64| Tensor::eye(n, (Kind::Double, tch::Device::Cpu));
    let twice_eye = (eye(8) * 2.0).expand([6, 8, 8], false);
    let is_twice_eye = |gram: Tensor| gram.allclose(&twice_eye, 1e-5, 1e-5, false);
    let w = o.weights[1].to_kind(Kind::Double); // [6, 8, 8]
    assert!(is_twice_eye(w.bmm(&w.transpose(1, 2))), "square layers");
    let w0 = o.weights[0].to_kind(Kind::Double); // [6, 8, 30]: rows orthonormal
    assert!(
        is_twice_eye(w0.bmm(&w0.transpose(1, 2))),
        "first layer's rows"
    );
    let w3 = o.weights[3].to_kind(Kind::Double); // [6, 10, 8]: columns orthonormal
    assert!(
        is_twice_eye(w3.transpose(1, 2).bmm(&w3)),
        "last layer's columns"
    );

    // GSM: [[A, -A], [-A, A]] from the top-left block; odd widths refused.
    let g = build(&Initializer::Gsm, &a, 0, 3, None);
    for w in &g.weights {
        let (o2, i2) = (w.size()[1] / 2, w.size()[2] / 2);
        let blk = |r: i64, c: i64| w.narrow(1, r * o2, o2).narrow(2, c * i2, i2);
        assert!(
            blk(0, 1).equal(&-blk(0, 0))
                && blk(1, 0).equal(&-blk(0, 0))
                && blk(1, 1).equal(&blk(0, 0))
        );
        assert!(blk(0, 0).abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
    let mut s = member_streams(1, &Key::new("x"), 0, 1);
    let e = initialize(&Initializer::Gsm, &arch(30, 7, 2, 0.0), &mut s, None)
        .err()
        .unwrap();
    assert!(format!("{e}").contains("even"));

    // ZerO for an expanding layer 3 → 8: the first three columns of H₈ / 2^{3/2}.
    let z = initlab::init::schemes::zero_matrix(8, 3);
    let mut expected = vec![0f32; 24];
    for i in 0..8usize {
        for j in 0..3usize {
            let sign = if (i & j).count_ones() % 2 == 0 {
                1.0
            } else {
                -1.0
            };
            expected[i * 3 + j] = sign / 8f32.sqrt();
        }
    }
    assert!(
        z.allclose(
            &Tensor::from_slice(&expected).view([8, 3]),
            1e-7,
            1e-7,
            false
        ),
        "{z}"
    );
    // contracting and square layers are rectangular identities
    assert!(
        initlab::init::schemes::zero_matrix(3, 5).equal(&Tensor::eye_m(
            3,
            5,
            (Kind::Float, tch::Device::Cpu)
        ))
    );
    let zn = build(&Initializer::Zero, &arch(6, 4, 3, 0.0), 0, 2, None);
    assert!(
        zn.weights[1]
            .select(0, 1)
            .equal(&Tensor::eye(4, (Kind::Float, tch::Device::Cpu)))
    );
    assert_eq!(zn.weights[3].size(), vec![2, 10, 4]);
    assert!(
        zn.weights[3]
            .select(0, 0)
            .equal(&initlab::init::schemes::zero_matrix(10, 4))
    );
    // ZerO*: random first layer (std √(1/fan_in)), ZerO after it
    let zs = build(&Initializer::ZeroStar, &arch(6, 4, 3, 0.0), 0, 2, None);
    assert!(
        !zs.weights[0]
            .select(0, 0)
            .equal(&zs.weights[0].select(0, 1))
    );
    assert!(zs.weights[2].equal(&zn.weights[2]));
    let id = build(&Initializer::Identity, &arch(6, 4, 2, 0.0), 0, 2, None);
    assert!(id.weights[0].select(0, 0).equal(&Tensor::eye_m(
        4,
        6,
        (Kind::Float, tch::Device::Cpu)
    )));
}

#[test]
fn metainit_lowers_the_gradient_quotient_and_matches_across_ensembles() {
    let a = arch(16, 8, 6, 0.0);
    let p = MetaInitParams {
        steps: 60,
        ..Default::default()
    };
    let mut streams = member_streams(3, &Key::new("metainit-test"), 0, 4);
    let (big, report) = initialize(&Initializer::MetaInit(p), &a, &mut streams, None).unwrap();
    let start: f64 = report.gq_start.iter().sum::<f64>() / 4.0;
    let end: f64 = report.gq_end.iter().sum::<f64>() / 4.0;
    eprintln!(
        "MetaInit gradient quotient, width 8, depth 6: start {:?} -> end {:?} (mean {start:.3} -> {end:.3})",
        report.gq_start, report.gq_end
    );
    assert!(
        end < start,
        "MetaInit should lower the gradient quotient: {start} -> {end}"
    );
    // only the norms moved: every matrix is its He start times a positive factor
    let mut s0 = member_streams(3, &Key::new("metainit-test"), 0, 4);
    let he = initialize(&Initializer::He(WeightDist::Normal), &a, &mut s0, None)
        .unwrap()
        .0;
    if report.restarts.iter().all(|&r| r == 0) {
        for (w, h) in big.weights.iter().zip(&he.weights) {
            let ratio = (w / h).reshape([4, -1]);
            let (lo, hi) = (
                ratio.amin(&[1i64][..], false),
                ratio.amax(&[1i64][..], false),
            );
            assert!(
                (hi - &lo).abs().max().double_value(&[])
                    < 1e-3 * lo.abs().max().double_value(&[]).max(1.0)
            );
        }
    }
    // member 2 alone is member 2 of the ensemble
    let mut one = member_streams(3, &Key::new("metainit-test"), 2, 1);
    let (alone, r1) = initialize(&Initializer::MetaInit(p), &a, &mut one, None).unwrap();
    assert_eq!(r1.restarts[0], report.restarts[2]);
    for (w1, w2) in alone.weights.iter().zip(&big.weights) {
        assert!(
            w1.allclose(&w2.narrow(0, 2, 1), 1e-4, 1e-5, false),
            "ensemble and single MetaInit differ"
        );
    }
}

/// A degenerate member restarts in its turn, at once; that must give what a restart
/// after its whole attempt gives: the same stream, so the same He start and batches.
/// A run allowed no restart gives up after its first attempt and draws that attempt's
/// remaining batches; MetaInit again on the streams it leaves, allowed one restart
/// fewer, must then end where the run allowed them all ends.
#[test]
fn a_metainit_restart_in_turn_is_a_restart_after_the_attempt() {
    let a = arch(16, 8, 60, 0.0);
    let run = |max_restarts: usize, streams: &mut [initlab::seed::Stream]| {
        let p = MetaInitParams {
            steps: 40,
            lr: 3.0,
            max_restarts,
            ..Default::default()
        };
        initialize(&Initializer::MetaInit(p), &a, streams, None).unwrap()
    };
    let mut all = member_streams(5, &Key::new("metainit-restart"), 0, 6);
    let (whole, report) = run(3, &mut all);
    eprintln!("restarts per member: {:?}", report.restarts);
    let mut once = member_streams(5, &Key::new("metainit-restart"), 0, 6);
    let (_, first) = run(0, &mut once);
    let (again, rest) = run(2, &mut once);
    let mut compared = 0;
    for i in 0..6 {
        if report.restarts[i] == 0 {
            assert_eq!(first.restarts[i], 0, "member {i}");
            continue;
        }
        // degenerate at first: given up with restarts = 1 by the run allowed none
        assert_eq!(first.restarts[i], 1, "member {i}");
        assert_eq!(rest.restarts[i] + 1, report.restarts[i], "member {i}");
        if report.restarts[i] <= 3 {
            assert_eq!(
                rest.gq_end[i].to_bits(),
                report.gq_end[i].to_bits(),
                "member {i}"
            );
            for (w1, w2) in whole.weights.iter().zip(&again.weights) {
                assert!(
                    w1.get(i as i64).equal(&w2.get(i as i64)),
                    "member {i}: a restart in turn and one after the attempt differ"
                );
            }
            compared += 1;
        }
    }
    assert!(
        compared >= 2,
        "too few restarted members to compare: {:?}",
        report.restarts
    );
}

/// Asserts that a Monte Carlo estimate lies within 4 of its standard errors of `expected`.
fn assert_within_4_se(
    what: &str,
    estimate: initlab::experiment::kurtosis_mc::Estimate,
    expected: f64,
) {
    assert!(
        (estimate.value - expected).abs() < 4.0 * estimate.se,
        "{what} = {} ± {} vs {expected}",
        estimate.value,
        estimate.se
    );
}

#[test]
fn proposition1_theoretical_variance_is_preserved_in_simulation() {
    use initlab::experiment::kurtosis_mc::{KurtosisPoint, simulate};
    for slope in [0.0, 0.3] {
        let p: KurtosisPoint = serde_yaml::from_str(&format!(
            "width: 10\ndepth: 12\nslope: {slope}\nnetworks: 600\nsamples: 128\n"
        ))
        .unwrap();
        let m = simulate(&p, 5, 200).unwrap();
        for l in 0..=12 {
            let (var, _, _) = m.estimates(l);
            assert_within_4_se(&format!("slope {slope}, layer {l}: σ²"), var, 1.0);
        }
        // and the kurtosis of the first layers follows Proposition 3
        let (_, k1, c1) = m.estimates(1);
        let t = initlab::theory::kurtosis_recursion(&initlab::theory::RecursionInput {
            widths: vec![10],
            slope,
            kappa_w: 3.0,
            kappa0: 3.0,
            c0: 0.0,
        })
        .unwrap();
        assert_within_4_se("κ₁", k1, t[1].kurtosis);
        assert_within_4_se("c₁", c1, t[1].cov_sq);
    }
}

#[test]
fn fused_statistics_equal_plain_libtorch() {
    for (w, depth, slope, n) in [
        (10usize, 20usize, 0.0, 3001i64),
        (4, 2, 0.3, 777),
        (16, 9, 0.0, 4096),
        (1, 3, 0.0, 100),
    ] {
        let a = arch(24, w, depth, slope);
        let net = build(&Initializer::He(WeightDist::Normal), &a, 0, 7, None);
        let x = Tensor::randn([n, 24], (Kind::Float, tch::Device::Cpu));
        let fused = unit0_moments_fused(&net, &x).expect("qualifies");
        let plain = layer_moments_tch(&net, &x, false, false);
        assert_eq!(fused.mean.len(), plain.mean.len());
        for i in 0..fused.mean.len() {
            let scale = plain.var_unbiased[i].sqrt().max(1e-30);
            assert!(
                (fused.var_unbiased[i] - plain.var_unbiased[i]).abs()
                    <= 1e-4 * plain.var_unbiased[i],
                "w {w}: var {i}"
            );
            assert!(
                (fused.mean[i] - plain.mean[i]).abs() <= 1e-4 * scale,
                "w {w}: mean {i}"
            );
        }
    }
    // evaluation (loss and accuracy of the full logits) too
    let a = arch(24, 10, 12, 0.1);
    let net = build(&Initializer::He(WeightDist::Normal), &a, 0, 5, None);
    let x = Tensor::randn([5000, 24], (Kind::Float, tch::Device::Cpu));
    let y = Tensor::randint(10, [5000], (Kind::Int64, tch::Device::Cpu));
    let (fl, fa) = initlab::train::evaluate_fused(&net, &x, &y).expect("qualifies");
    let (tl, ta) = initlab::train::evaluate_tch(&net, &x, &y);
    assert_eq!((fl.len(), fa.len()), (5, 5));
    for (j, ((fl, fa), (tl, ta))) in fl.iter().zip(&fa).zip(tl.iter().zip(&ta)).enumerate() {
        assert!(
            (fl - tl).abs() <= 1e-4 * tl.abs().max(1.0),
            "member {j}: loss {fl} vs {tl}"
        );
        assert!(
            (fa - ta).abs() <= 2.0 / 5000.0,
            "member {j}: accuracy {fa} vs {ta}"
        );
    }
    // layer norm and wide networks take the libtorch path
    let wide = build(
        &Initializer::He(WeightDist::Normal),
        &arch(8, 20, 2, 0.0),
        0,
        2,
        None,
    );
    assert!(
        unit0_moments_fused(
            &wide,
            &Tensor::randn([10, 8], (Kind::Float, tch::Device::Cpu))
        )
        .is_none()
    );
}

#[test]
fn an_ensemble_trains_exactly_like_its_members_alone() {
    let d = synthetic_tiny();
    for norm in [Norm::None, Norm::Batch, Norm::Layer] {
        let a = Arch {
            norm,
            ..arch(d.features(), 6, 3, 0.0)
        };
        let net = build(&Initializer::He(WeightDist::Normal), &a, 0, 3, None);
        let lrs = vec![1e-2, 3e-3, 1e-3];
        let mut opts = initlab::train::TrainOptions::adam(25, 16, lrs.clone());
        opts.eval_at = vec![10];
        let together = initlab::train::train(
            &net,
            &d,
            member_streams(9, &Key::new("shuffle"), 0, 3),
            &opts,
        )
        .unwrap();
        for i in 0..3 {
            let mut o = initlab::train::TrainOptions::adam(25, 16, vec![lrs[i]]);
            o.eval_at = vec![10];
            let alone = initlab::train::train(
                &net.member(i),
                &d,
                member_streams(9, &Key::new("shuffle"), i, 1),
                &o,
            )
            .unwrap();
            for (a, b) in together[i].train_loss.iter().zip(&alone[0].train_loss) {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{norm:?} member {i}: loss {a} vs {b}"
                );
            }
            let (ea, eb) = (
                together[i].evals.last().unwrap(),
                alone[0].evals.last().unwrap(),
            );
            // float rounding in batched kernels may flip a test example near a boundary
            let one_example = 1.0 / d.test_len() as f64;
            assert!(
                (ea.test_acc - eb.test_acc).abs() <= 2.0 * one_example + 1e-12,
                "{norm:?} member {i}: acc {} vs {}",
                ea.test_acc,
                eb.test_acc
            );
            assert!(
                (ea.test_loss - eb.test_loss).abs() < 1e-3 * eb.test_loss.abs().max(1.0),
                "{norm:?}: test loss {} vs {}",
                ea.test_loss,
                eb.test_loss
            );
            assert_eq!(together[i].evals.len(), 2);
        }
        // training does something: the loss falls for the largest learning rate
        let l = &together[0].train_loss;
        let head: f32 = l[..5].iter().sum();
        let tail: f32 = l[l.len() - 5..].iter().sum();
        assert!(
            tail < head,
            "{norm:?}: loss did not fall ({head} -> {tail})"
        );
    }
}

#[test]
fn the_hand_written_training_paths_match_autograd() {
    // Narrow networks go through the fused kernel, wider ones through explicit
    // forward and backward passes (`train::wide`); both against libtorch's autograd.
    let d = synthetic_tiny();
    for (width, depth, slope) in [
        (10usize, 6usize, 0.0),
        (3, 1, 0.2),
        (16, 3, 0.0),
        (24, 3, 0.0),
        (20, 2, 0.2),
        (40, 0, 0.0),
    ] {
        let a = arch(d.features(), width, depth, slope);
        let net = build(&Initializer::He(WeightDist::Normal), &a, 0, 4, None);
        assert_eq!(initlab::train::narrow_path(&net), width <= 16 && depth > 0);
        let mut opts = initlab::train::TrainOptions::adam(30, 12, vec![1e-2, 3e-3, 1e-3, 3e-2]);
        opts.eval_at = vec![15];
        let kernel =
            initlab::train::train(&net, &d, member_streams(2, &Key::new("s"), 0, 4), &opts)
                .unwrap();
        opts.force_autograd = true;
        let autograd =
            initlab::train::train(&net, &d, member_streams(2, &Key::new("s"), 0, 4), &opts)
                .unwrap();
        for (x, y) in kernel.iter().zip(&autograd) {
            for (p, q) in x.train_loss.iter().zip(&y.train_loss) {
                assert!(
                    (p - q).abs() <= 2e-4 * q.abs().max(1.0),
                    "width {width}, depth {depth}: loss {p} vs {q}"
                );
            }
            for (e, f) in x.evals.iter().zip(&y.evals) {
                assert!(
                    (e.test_loss - f.test_loss).abs() <= 1e-3 * f.test_loss.max(1.0),
                    "test loss {} vs {}",
                    e.test_loss,
                    f.test_loss
                );
            }
        }
    }
}

#[test]
fn the_hand_written_metainit_step_matches_third_order_autograd() {
    tch::manual_seed(11);
    // Shapes: ReLU and leaky ReLU, depth 0 (one Linear), a wide first layer, a wide
    // network (the kernel runs MetaInit up to width 256).
    for (input, width, depth, slope, eps, batch) in [
        (12, 6, 4, 0.0, 1e-5, 32),
        (20, 8, 7, 0.2, 1e-5, 32),
        (9, 5, 0, 0.0, 1e-5, 32),
        (40, 3, 3, 0.1, 1e-5, 64),
        // Wider than a tile's rows and a row block of the transposed product, odd.
        // With some 60,000 parameters, a few have a gradient so small that ε = 1e-5
        // leaves their quotient at the mercy of f32 rounding (kernel and autograd sum
        // in different orders); a larger ε keeps the comparison well conditioned.
        (300, 131, 2, 0.0, EPS_WIDE, 32),
        // Products through MKL (64 units and more), two lane groups, leaky ReLU.
        (70, 66, 4, 0.1, EPS_WIDE, 64),
        // Two lane groups wide enough for the products with g to go through the
        // Gram matrices of both groups (the first layer's not: 64 · 230 > 80 · 150).
        (80, 150, 3, 0.1, EPS_WIDE, 64),
    ] {
        let a = arch(input, width, depth, slope);
        let k = 3;
        let mut net = build(&Initializer::He(WeightDist::Normal), &a, 0, k, None);
        // Uneven norms, as after some MetaInit steps.
        net.weights = net
            .weights
            .iter()
            .enumerate()
            .map(|(l, w)| w * (0.7 + 0.15 * l as f64))
            .collect();
        let x = Tensor::randn(
            [k as i64, batch, input as i64],
            (Kind::Float, tch::Device::Cpu),
        );
        let y = Tensor::randint(10, [k as i64, batch], (Kind::Int64, tch::Device::Cpu));
        let case = format!("width {width}, depth {depth}, slope {slope}");
        assert_meta_gradients_agree(&net, (&x, &y, eps), (1e-3, 2e-3), &case);
    }
}

/// Asserts that MetaInit's hand-written step and libtorch's third-order autograd
/// give `net`'s members, on inputs `x` and labels `y`, the same GQ (within `gq_tol`
/// of it) and ⟨∂GQ/∂W_l, W_l⟩ (within `dot_tol` of the largest).
fn assert_meta_gradients_agree(
    net: &Ensemble,
    (x, y, eps): (&Tensor, &Tensor, f64),
    (gq_tol, dot_tol): (f64, f64),
    case: &str,
) {
    use initlab::init::metainit::{meta_gradient_autograd, meta_gradient_kernel};
    let ours = meta_gradient_kernel(net, x, y, eps);
    let theirs = meta_gradient_autograd(net, x, y, eps);
    for (m, ((gq1, d1), (gq2, d2))) in ours.iter().zip(&theirs).enumerate() {
        assert!(
            (gq1 - gq2).abs() <= gq_tol * gq2.abs(),
            "GQ of member {m} ({case}): kernel {gq1} vs autograd {gq2}"
        );
        let scale = d2.iter().fold(0f64, |s, v| s.max(v.abs()));
        for (l, (a1, a2)) in d1.iter().zip(d2).enumerate() {
            assert!(
                (a1 - a2).abs() <= dot_tol * scale,
                "<dGQ/dW, W> of member {m}, layer {l} ({case}): kernel {a1} vs autograd {a2}"
            );
        }
    }
}

#[test]
fn metainit_batches_go_between_rows_and_lanes_both_ways() {
    use initlab::kernels::metainit::{LANES, lanes_to_rows, rows_to_lanes};
    let (batch, n) = (2 * LANES, 37);
    let rows: Vec<f32> = (0..batch * n).map(|i| i as f32).collect();
    let lanes = rows_to_lanes(&rows, batch, n);
    // Sample s, feature f sits in group s / LANES, lane s % LANES of feature f.
    for s in [0, 1, LANES - 1, LANES, batch - 1] {
        for f in [0, 16, n - 1] {
            let at = (s / LANES) * n * LANES + f * LANES + s % LANES;
            assert_eq!(lanes[at], rows[s * n + f], "sample {s}, feature {f}");
        }
    }
    assert_eq!(lanes_to_rows(&lanes, batch, n), rows);
}

/// ε of the wide case of the kernel-versus-autograd test (see there).
const EPS_WIDE: f64 = 1e-3;

#[test]
fn the_hand_written_metainit_step_matches_autograd_at_depth_100() {
    use rand::Rng;
    // The paper's width 10 at its deepest, ReLU and leaky ReLU, He starts.
    let eps = 1e-5;
    for (input, width, slope) in [(20, 10, 0.0), (16, 12, 0.2)] {
        let a = arch(input, width, 100, slope);
        let (k, batch) = (3, 32);
        let net = build(&Initializer::He(WeightDist::Normal), &a, 0, k, None);
        // The batch from a stream of its own: tch's global generator is shared with
        // the tests running beside this one, which would make the inputs vary.
        let mut rng = initlab::seed::stream(13, &["depth-100", &width.to_string()]);
        let x: Vec<f32> = (0..k * batch * input)
            .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
            .collect();
        let y: Vec<i64> = (0..k * batch).map(|_| rng.random_range(0..10)).collect();
        let (ki, bi) = (k as i64, batch as i64);
        let x = Tensor::from_slice(&x).view([ki, bi, input as i64]);
        let y = Tensor::from_slice(&y).view([ki, bi]);
        // Both sum in f32, in other orders: a product of ≤ 20 terms rounds to about
        // √20 · 2⁻²⁴ ≈ 3e-7 relative, and the step's passes carry that through 100
        // layers; the quotient then divides by g + ε·sign g, which magnifies the
        // rounding of the smallest gradient entries. Over 72 random members of these
        // shapes, and these six, GQ agreed within 6e-6 and the dots mostly within
        // 1e-5 of the largest, but now and then 1e-4 to 1e-3: hence 1e-4 for GQ and,
        // as at small depth, 2e-3 of the largest dot (a wrong product is of order one).
        let case = format!("width {width}, depth 100, slope {slope}");
        assert_meta_gradients_agree(&net, (&x, &y, eps), (1e-4, 2e-3), &case);
    }
}
