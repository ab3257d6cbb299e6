//! The operations of the forward pass, each with a backward pass candle can run.
//!
//! `frozen_linear` is a custom op: candle's matmul backward always computes the weight gradient too,
//! which a frozen base weight never needs (a third of the backward work and a weight-sized buffer per
//! projection); this op only returns the input gradient.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, D, Layout, Shape, Storage, Tensor};

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

/// RMS norm over the last dimension: `x / sqrt(mean(x²) + eps) · w`.
///
/// # Errors
/// Shape errors.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (ms + eps)?.sqrt()?.recip()?;
    Ok(x.broadcast_mul(&inv)?.broadcast_mul(w)?)
}

/// Rotate-half RoPE on `x` `[b, t, heads, d]` with `cos`/`sin` `[b, t, 1, d/2]`.
///
/// # Errors
/// Shape errors.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let a = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let b = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Ok(Tensor::cat(&[a, b], D::Minus1)?)
}

/// Softmax over the last dimension.
///
/// # Errors
/// Shape errors.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::softmax(x, D::Minus1)?)
}
