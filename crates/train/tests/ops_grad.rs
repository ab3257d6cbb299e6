//! Every custom op of `docraft_train::ops` against central finite differences in f64: the
//! hand-written backward pass (run by candle's autograd) must give the gradient of the op's
//! plain forward, for every entry of every differentiable input. Each check takes the loss
//! `sum(op(inputs) ⊙ R)` with a fixed random `R`, so every output entry weighs differently.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use candle_core::{Device, Tensor, Var};
use common::FiniteDiff;
use docraft_train::ops;

/// Central differences in f64 are good to about 1e-9 here; a wrong backward is off by O(1).
const FD: FiniteDiff = FiniteDiff { eps: 1e-6, rel: 1e-6, abs: 1e-9 };

/// Deterministic values in [-1, 1) (splitmix64), so a failure reproduces.
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

fn rand(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(values(n, seed), shape, &Device::Cpu).unwrap()
}

/// A variable of values in [-scale, scale).
fn var(shape: &[usize], seed: u64, scale: f64) -> Var {
    Var::from_tensor(&(rand(shape, seed) * scale).unwrap()).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
}

/// Checks `op` over the named `inputs`: its tracked output equals its plain (untracked) output,
/// and the gradient of every entry of every input matches finite differences. Returns the
/// number of entries checked.
fn check_op(name: &str, inputs: &[(&str, &Var)], op: impl Fn(&[Tensor]) -> Tensor) -> usize {
    let tracked: Vec<Tensor> = inputs.iter().map(|(_, v)| v.as_tensor().clone()).collect();
    let plain = || -> Vec<Tensor> { inputs.iter().map(|(_, v)| v.as_tensor().detach()).collect() };
    let out = op(&tracked);
    let reference = op(&plain());
    assert_eq!(out.shape(), reference.shape(), "{name}");
    assert!(max_diff(&out, &reference) < 1e-12, "{name}: the custom op's forward differs from the plain one");
    let weights = rand(out.dims(), 99);
    let grads = (&out * &weights).unwrap().sum_all().unwrap().backward().unwrap();
    let loss = || (op(&plain()) * &weights).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
    let mut checked = 0;
    for (input, v) in inputs {
        let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("{name}: no gradient for {input}"));
        let n = v.as_tensor().elem_count();
        checked += FD.check(&format!("{name} d/d{input}"), v, g, 0..n, loss).unwrap();
    }
    checked
}

#[test]
fn the_checker_catches_a_wrong_gradient() {
    // Guards the tests below: a backward pass off by a factor, or with one wrong entry, fails.
    let x = var(&[2, 3], 1, 1.0);
    let loss = || x.as_tensor().detach().sqr().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
    let right = (x.as_tensor() * 2.0).unwrap();
    assert_eq!(FD.check("x²", &x, &right, 0..6, loss), Ok(6));
    let doubled = (&right * 2.0).unwrap();
    assert!(FD.check("x²", &x, &doubled, 0..6, loss).is_err());
    let mut one_off: Vec<f64> = right.flatten_all().unwrap().to_vec1().unwrap();
    one_off[4] += 1e-4;
    let one_off = Tensor::from_vec(one_off, (2, 3), &Device::Cpu).unwrap();
    let err = FD.check("x²", &x, &one_off, 0..6, loss).unwrap_err();
    assert!(err.starts_with("x²[4]"), "{err}");
}

#[test]
fn frozen_linear_gradient_of_the_input_and_none_for_the_weight() {
    let w = var(&[5, 4], 2, 1.0);
    for (shape, seed) in [(&[3, 4][..], 3), (&[2, 3, 4][..], 4)] {
        let x = var(shape, seed, 1.0);
        let n = check_op("frozen_linear", &[("x", &x)], |t| ops::frozen_linear(&t[0], w.as_tensor()).unwrap());
        assert_eq!(n, x.as_tensor().elem_count());
        // The weight is frozen: even as a variable it gets no gradient.
        let y = ops::frozen_linear(x.as_tensor(), w.as_tensor()).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(w.as_tensor()).is_none(), "frozen weight got a gradient");
        assert!(grads.get(x.as_tensor()).is_some());
    }
}

#[test]
fn rms_norm_gradient() {
    let x = var(&[2, 3, 6], 5, 1.0);
    let w = rand(&[6], 6);
    let n = check_op("rms_norm", &[("x", &x)], |t| ops::rms_norm(&t[0], &w, 1e-5).unwrap());
    assert_eq!(n, 36);
}

#[test]
fn attention_gradients_with_grouped_queries_and_a_causal_mask() {
    // b = 1, 2 key/value heads, each shared by 2 query heads (rep), t = s = 4, d = 3.
    let (b, kv, rep, t, d) = (1, 2, 2, 4, 3);
    let q = var(&[b, kv, rep * t, d], 7, 1.0);
    let k = var(&[b, kv, t, d], 8, 1.0);
    let v = var(&[b, kv, t, d], 9, 1.0);
    let mask: Vec<f64> = (0..t * t).map(|i| if i % t > i / t { f64::NEG_INFINITY } else { 0.0 }).collect();
    let mask = Tensor::from_vec(mask, (b, 1, 1, t, t), &Device::Cpu).unwrap();
    for scale in [1.0 / (d as f64).sqrt(), 1.7] {
        let n = check_op("attention", &[("q", &q), ("k", &k), ("v", &v)], |x| {
            ops::attention(&x[0], &x[1], &x[2], &mask, rep, scale).unwrap()
        });
        assert_eq!(n, 48 + 24 + 24);
    }
}

#[test]
fn rope_gradient() {
    // x [b, t, heads, d], angles [b, t, 1, d/2].
    let x = var(&[2, 3, 2, 4], 10, 1.0);
    let angles = (rand(&[2, 3, 1, 2], 11) * 3.0).unwrap();
    let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
    let n = check_op("rope", &[("x", &x)], |t| ops::rope(&t[0], &cos, &sin).unwrap());
    assert_eq!(n, 48);
}

#[test]
fn swiglu_gradients() {
    let gate = var(&[3, 5], 12, 3.0);
    let up = var(&[3, 5], 13, 1.0);
    let n = check_op("swiglu", &[("gate", &gate), ("up", &up)], |t| ops::swiglu(&t[0], &t[1]).unwrap());
    assert_eq!(n, 30);
}

#[test]
fn cross_entropy_gradient() {
    let logits = var(&[4, 7], 14, 4.0);
    let targets = Tensor::new(&[3u32, 0, 6, 3], &Device::Cpu).unwrap();
    let n = check_op("cross_entropy", &[("logits", &logits)], |t| ops::cross_entropy(&t[0], &targets).unwrap());
    assert_eq!(n, 28);
    // The forward is the textbook value.
    let l: Vec<f64> = ops::cross_entropy(logits.as_tensor(), &targets).unwrap().to_vec1().unwrap();
    let rows: Vec<Vec<f64>> = logits.as_tensor().to_vec2().unwrap();
    for ((row, &target), got) in rows.iter().zip(&[3usize, 0, 6, 3]).zip(&l) {
        let lse = row.iter().map(|x| x.exp()).sum::<f64>().ln();
        assert!((lse - row[target] - got).abs() < 1e-12, "{got} vs {}", lse - row[target]);
    }
}

#[test]
fn lora_linear_gradients_with_and_without_bias_and_dropout() {
    let (n, inp, out, r) = (3, 4, 5, 2);
    let x = var(&[n, inp], 15, 1.0);
    let a = var(&[r, inp], 16, 1.0);
    let b = var(&[out, r], 17, 1.0);
    let w = rand(&[out, inp], 18);
    let bias = rand(&[out], 19);
    // A dropout mask as the trainer makes it: 0 or 1/(1−p), here p = 0.5.
    let keep: Vec<f64> = values(n * inp, 20).iter().map(|v| if *v > 0.0 { 2.0 } else { 0.0 }).collect();
    let mask = Tensor::from_vec(keep, (n, inp), &Device::Cpu).unwrap();
    for (bias, mask) in [(None, None), (Some(&bias), Some(mask))] {
        let inputs = [("x", &x), ("a", &a), ("b", &b)];
        let checked = check_op("lora_linear", &inputs, |t| {
            ops::lora_linear(&t[0], &w, bias, &t[1], &t[2], 1.5, mask.clone()).unwrap()
        });
        assert_eq!(checked, n * inp + r * inp + out * r);
    }
}
