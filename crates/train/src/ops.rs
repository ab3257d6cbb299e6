//! The operations of the forward pass, each with a backward pass candle can run.
//!
//! `frozen_linear` is a custom op: candle's matmul backward always computes the weight gradient too,
//! which a frozen base weight never needs (a third of the backward work and a weight-sized buffer per
//! projection); this op only returns the input gradient.
//!
//! `attention` and `rms_norm` run candle's fused kernels (which have no backward of their own) on
//! detached inputs and attach a hand-written backward pass that recomputes what it needs. The graph
//! then holds one tensor per op instead of every intermediate of the composite: attention keeps
//! q, k, v and its output, not the `[time × time]` scores, mask sums and softmax pieces of every
//! head and layer.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, CustomOp3, D, Layout, Shape, Storage, Tensor};

use crate::error::Result;

/// `x · wᵀ` for `x` `[n, in]` and a frozen `w` `[out, in]`; gradients flow to `x` only.
///
/// # Errors
/// Shape errors.
pub fn frozen_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if x.rank() != 2 {
        let dims = x.dims().to_vec();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let y = frozen_linear(&x.reshape((rows, dims[dims.len() - 1]))?, w)?;
        let mut out = dims;
        let last = out.len() - 1;
        out[last] = w.dim(0)?;
        return Ok(y.reshape(out)?);
    }
    if !x.track_op() {
        return Ok(x.matmul(&w.t()?)?);
    }
    Ok(x.apply_op1(FrozenLinear { w: w.clone() })?)
}

/// The op behind [`frozen_linear`].
struct FrozenLinear {
    w: Tensor,
}

impl FrozenLinear {
    fn dims(&self, l: &Layout) -> candle_core::Result<(usize, usize, usize, Layout)> {
        let (n, k) = l.shape().dims2()?;
        let (o, k2) = self.w.dims2()?;
        if k != k2 {
            candle_core::bail!("frozen_linear: input width {k} but weight is [{o}, {k2}]");
        }
        let wl = self.w.layout().transpose(0, 1)?;
        Ok((n, k, o, wl))
    }
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, k, o, wl) = self.dims(l)?;
        let (ws, _) = self.w.storage_and_layout();
        let Storage::Cpu(w) = &*ws else { candle_core::bail!("frozen_linear: weight not on the cpu") };
        Ok((s.matmul(w, (1, n, o, k), l, &wl)?, Shape::from((n, o))))
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let (n, k, o, wl) = self.dims(l)?;
        let (ws, _) = self.w.storage_and_layout();
        let Storage::Cuda(w) = &*ws else { candle_core::bail!("frozen_linear: weight not on the gpu") };
        Ok((s.matmul(w, (1, n, o, k), l, &wl)?, Shape::from((n, o))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.w)?))
    }
}

/// The forward methods of a custom op whose output was computed outside the graph (`self.out`).
macro_rules! precomputed_forward {
    (1) => {
        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
            emit_cpu(&self.out)
        }
        fn cuda_fwd(&self, _: &CudaStorage, _: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
            emit_cuda(&self.out)
        }
    };
    (2) => {
        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
            emit_cpu(&self.out)
        }
        fn cuda_fwd(&self, _: &CudaStorage, _: &Layout, _: &CudaStorage, _: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
            emit_cuda(&self.out)
        }
    };
    (3) => {
        #[rustfmt::skip]
        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout)
            -> candle_core::Result<(CpuStorage, Shape)> {
            emit_cpu(&self.out)
        }
        #[rustfmt::skip]
        fn cuda_fwd(&self, _: &CudaStorage, _: &Layout, _: &CudaStorage, _: &Layout, _: &CudaStorage, _: &Layout)
            -> candle_core::Result<(CudaStorage, Shape)> {
            emit_cuda(&self.out)
        }
    };
}

/// A copy of a tensor computed outside the graph, as the forward result of a custom op.
fn emit_cpu(out: &Tensor) -> candle_core::Result<(CpuStorage, Shape)> {
    let (s, l) = out.storage_and_layout();
    match &*s {
        Storage::Cpu(c) if l.is_contiguous() && l.start_offset() == 0 => Ok((c.try_clone(l)?, l.shape().clone())),
        _ => candle_core::bail!("precomputed output must be a contiguous cpu tensor"),
    }
}

fn emit_cuda(out: &Tensor) -> candle_core::Result<(CudaStorage, Shape)> {
    let (s, l) = out.storage_and_layout();
    match &*s {
        Storage::Cuda(c) if l.is_contiguous() && l.start_offset() == 0 => Ok((c.try_clone(l)?, l.shape().clone())),
        _ => candle_core::bail!("precomputed output must be a contiguous gpu tensor"),
    }
}

fn rms_inv(x: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()
}

/// RMS norm over the last dimension: `x / sqrt(mean(x²) + eps) · w` (`w` frozen).
///
/// # Errors
/// Shape errors.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let plain = |x: &Tensor| -> candle_core::Result<Tensor> {
        if x.is_contiguous() && x.dtype() != candle_core::DType::F64 {
            candle_nn::ops::rms_norm(x, w, eps as f32)
        } else {
            x.broadcast_mul(&rms_inv(x, eps)?)?.broadcast_mul(w)
        }
    };
    if !x.track_op() {
        return Ok(plain(x)?);
    }
    let out = plain(&x.detach())?.contiguous()?;
    Ok(x.apply_op1(RmsNormOp { out, w: w.clone(), eps })?)
}

struct RmsNormOp {
    out: Tensor,
    w: Tensor,
    eps: f64,
}

impl CustomOp1 for RmsNormOp {
    fn name(&self) -> &'static str {
        "rms-norm"
    }
    precomputed_forward!(1);
    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // y = x·r·w with r = (mean(x²)+eps)^-1/2:  dx = r·(g·w) − x·r³·mean((g·w)·x).
        let x = x.detach();
        let r = rms_inv(&x, self.eps)?;
        let gw = g.broadcast_mul(&self.w)?;
        let m = (&gw * &x)?.mean_keepdim(D::Minus1)?;
        let dx = (gw.broadcast_mul(&r)? - x.broadcast_mul(&(r.powf(3.0)? * m)?)?)?;
        Ok(Some(dx))
    }
}

/// Attention probabilities for grouped queries: `q` `[b, kv, rep·t, d]`, `k` `[b, kv, s, d]`,
/// additive `mask` `[b, 1, 1, t, s]`.
fn attention_probs(q: &Tensor, k: &Tensor, mask: &Tensor, rep: usize, scale: f64) -> candle_core::Result<Tensor> {
    let (b, kv, rt, _) = q.dims4()?;
    let s = k.dim(2)?;
    let scores = (q.matmul(&k.t()?)? * scale)?.reshape((b, kv, rep, rt / rep, s))?.broadcast_add(mask)?;
    candle_nn::ops::softmax_last_dim(&scores)?.reshape((b, kv, rt, s))
}

/// `softmax(q·kᵀ·scale + mask)·v` for grouped queries: `q` `[b, kv, rep·t, d]`, `k` and `v`
/// `[b, kv, s, d]`, additive `mask` `[b, 1, 1, t, s]`. The backward pass recomputes the
/// probabilities instead of keeping them.
///
/// # Errors
/// Shape errors.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, rep: usize, scale: f64) -> Result<Tensor> {
    let plain = |q: &Tensor, k: &Tensor, v: &Tensor| attention_probs(q, k, mask, rep, scale)?.matmul(v);
    if !(q.track_op() || k.track_op() || v.track_op()) {
        return Ok(plain(q, k, v)?);
    }
    let out = plain(&q.detach(), &k.detach(), &v.detach())?.contiguous()?;
    Ok(q.apply_op3(k, v, AttentionOp { out, mask: mask.clone(), rep, scale })?)
}

struct AttentionOp {
    out: Tensor,
    mask: Tensor,
    rep: usize,
    scale: f64,
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "attention"
    }
    precomputed_forward!(3);
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (q, k, v) = (q.detach(), k.detach(), v.detach());
        let p = attention_probs(&q, &k, &self.mask, self.rep, self.scale)?;
        let dv = p.t()?.matmul(g)?;
        let dp = g.matmul(&v.t()?)?;
        let ds = (&p * dp.broadcast_sub(&(&dp * &p)?.sum_keepdim(D::Minus1)?)?)?;
        let dq = (ds.matmul(&k)? * self.scale)?;
        let dk = (ds.t()?.matmul(&q)? * self.scale)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// Rotate-half RoPE on `x` `[b, t, heads, d]` with `cos`/`sin` `[b, t, 1, d/2]`; the backward pass
/// rotates the gradient back.
///
/// # Errors
/// Shape errors.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if !x.track_op() {
        return Ok(rope_plain(x, cos, sin)?);
    }
    let out = rope_plain(&x.detach(), cos, sin)?.contiguous()?;
    Ok(x.apply_op1(RopeOp { out, cos: cos.clone(), sin: sin.clone() })?)
}

fn rope_plain(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let a = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let b = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Tensor::cat(&[a, b], D::Minus1)
}

struct RopeOp {
    out: Tensor,
    cos: Tensor,
    sin: Tensor,
}

impl CustomOp1 for RopeOp {
    fn name(&self) -> &'static str {
        "rope"
    }
    precomputed_forward!(1);
    fn bwd(&self, _x: &Tensor, _res: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // A rotation: its gradient is the rotation by the opposite angle.
        Ok(Some(rope_plain(g, &self.cos, &self.sin.neg()?)?))
    }
}

/// `silu(gate) · up`, the SwiGLU activation, with a fused backward pass.
///
/// # Errors
/// Shape errors.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if !(gate.track_op() || up.track_op()) {
        return Ok((gate.silu()? * up)?);
    }
    let out = (gate.detach().silu()? * up.detach())?.contiguous()?;
    Ok(gate.apply_op2(up, SwigluOp { out })?)
}

struct SwigluOp {
    out: Tensor,
}

impl candle_core::CustomOp2 for SwigluOp {
    fn name(&self) -> &'static str {
        "swiglu"
    }
    precomputed_forward!(2);
    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (gate, up) = (gate.detach(), up.detach());
        let s = candle_nn::ops::sigmoid(&gate)?;
        let silu = (&gate * &s)?;
        let d_up = (g * &silu)?;
        // d silu / dx = s · (1 + x · (1 − s)) = s + silu · (1 − s)
        let dsilu = (&s + (&silu * (1.0 - &s)?)?)?;
        let d_gate = ((g * &up)? * dsilu)?;
        Ok((Some(d_gate), Some(d_up)))
    }
}

/// Per-row cross-entropy `logsumexp(logits) − logits[target]` of `logits` `[rows, vocab]`, with a
/// fused backward (`softmax − one-hot`).
///
/// # Errors
/// Shape errors.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let plain = |x: &Tensor| -> candle_core::Result<Tensor> {
        let max = x.max_keepdim(D::Minus1)?;
        let lse = (x.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()? + max)?;
        let picked = x.gather(&targets.unsqueeze(1)?, 1)?;
        (lse - picked)?.squeeze(1)
    };
    if !logits.track_op() {
        return Ok(plain(logits)?);
    }
    let out = plain(&logits.detach())?.contiguous()?;
    Ok(logits.apply_op1(CrossEntropyOp { out, targets: targets.clone() })?)
}

struct CrossEntropyOp {
    out: Tensor,
    targets: Tensor,
}

impl CustomOp1 for CrossEntropyOp {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }
    precomputed_forward!(1);
    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let x = x.detach();
        let p = if x.dtype() == candle_core::DType::F64 {
            candle_nn::ops::softmax(&x, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&x.contiguous()?)?
        };
        let g = g.unsqueeze(1)?;
        let scaled = p.broadcast_mul(&g)?;
        Ok(Some(scaled.scatter_add(&self.targets.unsqueeze(1)?, &g.neg()?, 1)?))
    }
}

/// `x·wᵀ (+ bias) + scale · ((x ⊙ mask)·aᵀ)·bᵀ`: a frozen projection with its LoRA pair, as one op
/// whose backward pass returns the gradients of `x`, `a` and `b` (never of `w`). `mask` is the
/// dropout mask of the LoRA path (values 0 or 1/(1−p)), if any.
///
/// # Errors
/// Shape errors.
pub fn lora_linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
    mask: Option<Tensor>,
) -> Result<Tensor> {
    let forward = |x: &Tensor, a: &Tensor, b: &Tensor| -> candle_core::Result<Tensor> {
        let mut y = x.matmul(&w.t()?)?;
        if let Some(bias) = bias {
            y = y.broadcast_add(bias)?;
        }
        let xl = match &mask {
            Some(m) => (x * m)?,
            None => x.clone(),
        };
        y + (xl.matmul(&a.t()?)?.matmul(&b.t()?)? * scale)?
    };
    if !(x.track_op() || a.track_op() || b.track_op()) {
        return Ok(forward(x, a, b)?);
    }
    let out = forward(&x.detach(), &a.detach(), &b.detach())?.contiguous()?;
    Ok(x.apply_op3(a, b, LoraLinearOp { out, w: w.clone(), mask, scale })?)
}

struct LoraLinearOp {
    out: Tensor,
    w: Tensor,
    mask: Option<Tensor>,
    scale: f64,
}

impl CustomOp3 for LoraLinearOp {
    fn name(&self) -> &'static str {
        "lora-linear"
    }
    precomputed_forward!(3);
    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (x, a, b) = (x.detach(), a.detach(), b.detach());
        let xl = match &self.mask {
            Some(m) => (&x * m)?,
            None => x,
        };
        let h = xl.matmul(&a.t()?)?; // [n, r]
        let db = (g.t()?.matmul(&h)? * self.scale)?; // [out, r]
        let dh = (g.matmul(&b)? * self.scale)?; // [n, r]
        let da = dh.t()?.matmul(&xl)?; // [r, in]
        let mut dxl = dh.matmul(&a)?; // [n, in]
        if let Some(m) = &self.mask {
            dxl = (dxl * m)?;
        }
        let dx = (g.matmul(&self.w)? + dxl)?;
        Ok((Some(dx), Some(da), Some(db)))
    }
}
