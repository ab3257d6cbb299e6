//! AdamW over the adapter's variables, with state that checkpoints can save, and the learning-rate
//! schedule.

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// How the learning rate moves after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Half a cosine from the peak down to zero.
    #[default]
    Cosine,
    /// A straight line down to zero.
    Linear,
    /// The peak until the end.
    Constant,
}

impl Schedule {
    /// The learning rate of 0-based optimizer step `step` out of `total`, after `warmup` linear steps.
    #[must_use]
    pub fn lr(self, peak: f64, warmup: usize, total: usize, step: usize) -> f64 {
        if step < warmup {
            return peak * (step + 1) as f64 / warmup as f64;
        }
        let span = total.saturating_sub(warmup).max(1) as f64;
        let progress = ((step - warmup) as f64 / span).min(1.0);
        match self {
            Self::Cosine => peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            Self::Linear => peak * (1.0 - progress),
            Self::Constant => peak,
        }
    }
}

/// AdamW (decoupled weight decay), as PyTorch's `torch.optim.AdamW` computes it.
#[derive(Debug)]
pub struct AdamW {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    step: usize,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl AdamW {
    /// Zero moments for `vars`.
    ///
    /// # Errors
    /// Tensor errors.
    pub fn new(vars: &[&Var], beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Result<Self> {
        let zeros = |v: &&Var| v.as_tensor().zeros_like();
        Ok(Self {
            beta1,
            beta2,
            eps,
            weight_decay,
            step: 0,
            m: vars.iter().map(zeros).collect::<candle_core::Result<_>>()?,
            v: vars.iter().map(zeros).collect::<candle_core::Result<_>>()?,
        })
    }

    /// Steps taken.
    #[must_use]
    pub fn steps(&self) -> usize {
        self.step
    }

    /// One update of every var with its gradient at learning rate `lr` (vars without a gradient keep
    /// their value but still decay, as PyTorch skips them entirely: we skip them too).
    ///
    /// # Errors
    /// Tensor errors.
    pub fn step(&mut self, vars: &[&Var], grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        for (i, (var, grad)) in vars.iter().zip(grads).enumerate() {
            let Some(g) = grad else { continue };
            let m = ((&self.m[i] * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            let v = ((&self.v[i] * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let denom = ((&v / bc2)?.sqrt()? + self.eps)?;
            let update = ((&m / bc1)? / denom)?;
            let decayed = (var.as_tensor() * (1.0 - lr * self.weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Moments under `m.NAME` / `v.NAME`, for a checkpoint.
    #[must_use]
    pub fn state(&self, names: &[String]) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, n) in names.iter().enumerate() {
            out.insert(format!("m.{n}"), self.m[i].clone());
            out.insert(format!("v.{n}"), self.v[i].clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state`] and the step count.
    ///
    /// # Errors
    /// [`TrainError::Checkpoint`] when a moment is missing.
    pub fn restore(&mut self, names: &[String], state: &HashMap<String, Tensor>, step: usize) -> Result<()> {
        for (i, n) in names.iter().enumerate() {
            let get = |k: String| {
                state.get(&k).cloned().ok_or_else(|| TrainError::Checkpoint {
                    path: "optimizer.safetensors".into(),
                    message: format!("missing `{k}`"),
                })
            };
            self.m[i] = get(format!("m.{n}"))?.to_dtype(self.m[i].dtype())?;
            self.v[i] = get(format!("v.{n}"))?.to_dtype(self.v[i].dtype())?;
        }
        self.step = step;
        Ok(())
    }
}

/// Scales `grads` so their global L2 norm is at most `max_norm` (no-op when `max_norm` <= 0);
/// returns the norm before clipping.
///
/// # Errors
/// Tensor errors.
pub fn clip_grad_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let mut sq = 0.0f64;
    for g in grads.iter().flatten() {
        sq += f64::from(g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?);
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let s = max_norm / (norm + 1e-6);
        for g in grads.iter_mut().flatten() {
            *g = (&*g * s)?;
        }
    }
    Ok(norm)
}
